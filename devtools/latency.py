"""Far-away storage and bus, simulated: every call to the wrapped blob store or message bus
waits a fixed round trip first, in the calling thread, as a call to Cloud Storage or Pub/Sub
over the network would (tens of milliseconds each on GCP).

Set from the outside with ``IMAGEFLOW_FAULTS=storage_latency_seconds=0.05,bus_latency_seconds=0.05``
(devtools.faults): ``python -m devtools.faulty_processor`` wraps the image processor's blob store
and bus with these, and the local stack starts that for a processor whose environment sets
``IMAGEFLOW_FAULTS``. The pipeline benchmark (bench/pipeline.py) uses it to show that the
processor keeps its cores busy when every storage and bus call is slow. Production code never
imports this module.
"""
from __future__ import annotations

from time import sleep  # one name, so a test can stand in for this module's waits alone
from typing import BinaryIO, Callable

from imageflow.blobstore import BlobStore
from imageflow.bus import MessageBus, PollingSubscriber, ReceivedMessage, SubscriptionConfig, Subscriber


class LatentBlobStore(BlobStore):
    """The wrapped blob store, with ``seconds`` of round trip before each call that would reach it
    (``signed_url`` is computed locally and ``close`` releases a client: neither waits)."""

    def __init__(self, inner: BlobStore, seconds: float):
        self.inner = inner
        self.seconds = seconds

    def _wait(self) -> None:
        sleep(self.seconds)

    def put(self, path: str, data: bytes, content_type: str, **options) -> None:
        self._wait()
        self.inner.put(path, data, content_type, **options)  # cache_control, metadata, if_absent

    def put_stream(self, path: str, chunks, content_type: str, **options) -> int:
        self._wait()
        return self.inner.put_stream(path, chunks, content_type, **options)

    def get(self, path: str) -> bytes:
        self._wait()
        return self.inner.get(path)

    def transition(self, path, change, content_type) -> bool:
        self._wait()
        return self.inner.transition(path, change, content_type)

    def open(self, path: str) -> BinaryIO:
        self._wait()
        return self.inner.open(path)

    def exists(self, path: str) -> bool:
        self._wait()
        return self.inner.exists(path)

    def list(self, prefix: str) -> list[str]:
        self._wait()
        return self.inner.list(prefix)

    def delete_prefix(self, prefix: str) -> int:
        self._wait()
        return self.inner.delete_prefix(prefix)

    def signed_url(self, path: str, expires_seconds: int) -> str | None:
        return self.inner.signed_url(path, expires_seconds)

    def check(self) -> None:
        self._wait()
        self.inner.check()

    def close(self) -> None:
        self.inner.close()


class LatentMessage(ReceivedMessage):
    """A leased message whose ack, nack and lease extension each take the bus's round trip."""

    def __init__(self, inner: ReceivedMessage, seconds: float):
        self.inner = inner
        self.seconds = seconds
        self.message_id, self.data, self.attributes = inner.message_id, inner.data, inner.attributes
        self.delivery_attempt, self.publish_time = inner.delivery_attempt, inner.publish_time

    def ack(self) -> None:
        sleep(self.seconds)
        self.inner.ack()

    def nack(self) -> None:
        sleep(self.seconds)
        self.inner.nack()

    def extend(self, seconds: int) -> None:
        sleep(self.seconds)
        self.inner.extend(seconds)


class LatentBus(MessageBus):
    """The wrapped bus, with ``seconds`` of round trip before each publish, pull, ack, nack and lease
    extension. Subscriptions are served by the polling subscriber over the slow ``pull`` (also on
    Pub/Sub, whose own streaming subscriber would bypass the wrapper); adapter-specific methods
    pass through unchanged."""

    def __init__(self, inner: MessageBus, seconds: float):
        self.inner = inner
        self.seconds = seconds

    def __getattr__(self, name: str):  # adapter-specific extras (backlog queries and the like)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def ensure_topic(self, name: str) -> None:
        sleep(self.seconds)
        self.inner.ensure_topic(name)

    def ensure_subscription(self, config: SubscriptionConfig) -> None:
        sleep(self.seconds)
        self.inner.ensure_subscription(config)

    def publish(self, topic: str, data: bytes, attributes: dict[str, str] | None = None) -> str:
        sleep(self.seconds)
        return self.inner.publish(topic, data, attributes)

    def pull(self, subscription: str, max_messages: int = 10, timeout: float = 0.0) -> list[ReceivedMessage]:
        sleep(self.seconds)
        return [LatentMessage(m, self.seconds) for m in self.inner.pull(subscription, max_messages, timeout)]

    def subscribe(self, subscription: str, callback: Callable[[ReceivedMessage], None], *,
                  max_messages: int = 1, ack_deadline_seconds: int = 60) -> Subscriber:
        return PollingSubscriber(self, subscription, callback, max_messages=max_messages,
                                 ack_deadline_seconds=ack_deadline_seconds)

    def backlog(self, subscription: str) -> int:
        sleep(self.seconds)
        return self.inner.backlog(subscription)

    def check(self) -> None:
        sleep(self.seconds)
        self.inner.check()

    def close(self) -> None:
        self.inner.close()
