"""Message bus port, with Pub/Sub's semantics.

At-least-once delivery; a pulled message is leased to one consumer until it is acked,
nacked or its ack deadline passes, after which it is delivered again with a higher
``delivery_attempt``; after ``max_delivery_attempts`` it goes to the dead-letter topic.
A nacked message waits out the subscription's retry backoff first (exponential, from
``min_backoff_seconds`` to ``max_backoff_seconds``, Pub/Sub's retry policy), so a handler
that keeps failing retries a few times a minute, not in a hot loop.

Adapters: ``sqlite`` (durable local queue shared by several processes) and ``pubsub``.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def handling(message: "ReceivedMessage", subscription: str) -> Iterator[None]:
    """Around each subscriber callback: a consumer span continuing the trace of the message's
    ``traceparent`` attribute, and every line logged meanwhile names its job and that trace."""
    from .. import tracing  # here: `imageflow.setup env` (deploy.sh) reads the names without the dependencies
    from ..logging_setup import log_context
    attributes = message.attributes or {}
    with tracing.consuming(subscription, attributes, message.message_id, message.delivery_attempt), \
            log_context(job_id=attributes.get("job_id")):
        yield


class BusError(RuntimeError):
    """The bus failed, or a topic/subscription does not exist."""


@dataclass(frozen=True)
class SubscriptionConfig:
    name: str
    topic: str
    ack_deadline_seconds: int = 60
    dead_letter_topic: str | None = None
    max_delivery_attempts: int = 5
    push_endpoint: str | None = None
    retain_acked: bool = False
    # Redelivery backoff after a nack (Pub/Sub's retry policy; the local bus applies it too).
    min_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0

    def backoff(self, delivery_attempt: int) -> float:
        """Seconds a message nacked on its ``delivery_attempt``-th delivery waits before the next one."""
        return min(self.max_backoff_seconds, self.min_backoff_seconds * 2 ** max(0, min(delivery_attempt - 1, 30)))


class ReceivedMessage(ABC):
    """A leased message. Exactly one of ack()/nack() should be called; neither means
    redelivery after the ack deadline."""

    message_id: str
    data: bytes
    attributes: dict[str, str]
    # How many times the message has been delivered on this subscription, this delivery
    # included: 1 the first time, then one more per redelivery. Pub/Sub counts only on
    # subscriptions with a dead-letter policy (every one whose handlers read it has one);
    # elsewhere it does not count, and its adapter says 1.
    delivery_attempt: int
    publish_time: float

    @abstractmethod
    def ack(self) -> None: ...

    @abstractmethod
    def nack(self) -> None:
        """Give the message back for redelivery after the subscription's retry backoff."""

    @abstractmethod
    def extend(self, seconds: float) -> None:
        """Push the ack deadline ``seconds`` from now (lease extension). Returning from a
        subscriber callback without settling, after this, delays the redelivery by ``seconds``
        (Pub/Sub rounds up to whole seconds, at most 600)."""


class MessageBus(ABC):
    @abstractmethod
    def ensure_topic(self, name: str) -> None:
        """Create the topic if it does not exist (idempotent)."""

    @abstractmethod
    def ensure_subscription(self, config: SubscriptionConfig) -> None:
        """Create or update the subscription (idempotent)."""

    @abstractmethod
    def publish(self, topic: str, data: bytes, attributes: dict[str, str] | None = None) -> str:
        """Publish durably; returns the message id once the bus has it."""

    @abstractmethod
    def pull(self, subscription: str, max_messages: int = 10, timeout: float = 0.0) -> list[ReceivedMessage]:
        """Lease up to ``max_messages``; waits up to ``timeout`` seconds for the first one."""

    def subscribe(self, subscription: str, callback: Callable[[ReceivedMessage], None], *,
                  max_messages: int = 1, ack_deadline_seconds: int = 60) -> "Subscriber":
        """Deliver messages to ``callback`` on worker threads, at most ``max_messages`` at a
        time (flow control), extending their leases while the callback runs. The callback
        acks or nacks; an exception nacks."""
        return PollingSubscriber(self, subscription, callback, max_messages=max_messages,
                                 ack_deadline_seconds=ack_deadline_seconds)

    @abstractmethod
    def backlog(self, subscription: str) -> int:
        """Messages not yet acked on the subscription (leased ones included). Exact on the
        local bus; on Pub/Sub, Cloud Monitoring's figure, 1-2 minutes late (the emulator has
        none: BusError). Raises BusError for an unknown subscription."""

    @abstractmethod
    def check(self) -> None:
        """Raise if the bus is unreachable (used by /readyz)."""

    def close(self) -> None:
        """Release resources."""


class Subscriber(ABC):
    @abstractmethod
    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, let in-flight callbacks finish for up to ``timeout`` seconds,
        then nack whatever is still in flight so another consumer gets it at once."""

    @abstractmethod
    def in_flight(self) -> int: ...

    def is_alive(self) -> bool:
        return True


@dataclass
class _Lease:
    message: ReceivedMessage
    started: float = field(default_factory=time.monotonic)
    settled: bool = False   # the callback returned: the keeper leaves it alone
    lock: threading.Lock = field(default_factory=threading.Lock)


class _HandedMessage(ReceivedMessage):
    """The message as the callback sees it: records the callback's own ``extend`` (and any
    settling), so a callback that returns without settling keeps the deadline it chose
    (e.g. a retry delay) instead of the lease keeper's next extension."""

    def __init__(self, inner: ReceivedMessage):
        self._inner = inner
        self.message_id, self.data, self.attributes = inner.message_id, inner.data, inner.attributes
        self.delivery_attempt, self.publish_time = inner.delivery_attempt, inner.publish_time
        self.settled = False
        self.chosen_deadline: float | None = None  # monotonic time the callback asked to be redelivered at

    def __getattr__(self, name):  # adapter extras (e.g. ``subscription``)
        return getattr(self._inner, name)

    def ack(self) -> None:
        self.settled = True
        self._inner.ack()

    def nack(self) -> None:
        self.settled = True
        self._inner.nack()

    def extend(self, seconds: float) -> None:
        self.chosen_deadline = time.monotonic() + seconds
        self._inner.extend(seconds)


class PollingSubscriber(Subscriber):
    """A streaming subscriber built from pull(): one poller thread, a pool of workers and a
    lease keeper that extends the deadline of in-flight messages (what the Pub/Sub client
    library does for streaming pull)."""

    def __init__(self, bus: MessageBus, subscription: str, callback: Callable[[ReceivedMessage], None],
                 *, max_messages: int, ack_deadline_seconds: int, poll_interval: float = 0.2):
        self._bus = bus
        self._subscription = subscription
        self._callback = callback
        self._max = max(1, max_messages)
        self._deadline = ack_deadline_seconds
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._slots = threading.Semaphore(self._max)
        self._pool = ThreadPoolExecutor(max_workers=self._max, thread_name_prefix=f"sub-{subscription}")
        self._poller = threading.Thread(target=self._poll, name=f"poll-{subscription}", daemon=True)
        self._keeper = threading.Thread(target=self._keep_leases, name=f"lease-{subscription}", daemon=True)
        self._poller.start()
        self._keeper.start()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._leases)

    def is_alive(self) -> bool:
        return self._poller.is_alive() and not self._stopping.is_set()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            free = 1
            while free < self._max and self._slots.acquire(blocking=False):
                free += 1
            try:
                messages = self._bus.pull(self._subscription, max_messages=free, timeout=self._poll_interval * 5)
            except Exception:  # the bus may be briefly unavailable: back off, keep going
                log.exception("pull from %s failed", self._subscription)
                messages = []
                self._stopping.wait(1.0)
            for _ in range(free - len(messages)):
                self._slots.release()
            for message in messages:
                if self._stopping.is_set():
                    message.nack()
                    self._slots.release()
                    continue
                with self._lock:
                    self._leases[message.message_id] = _Lease(message)
                self._pool.submit(self._run, message)

    def _run(self, message: ReceivedMessage) -> None:
        handed = _HandedMessage(message)
        try:
            with handling(message, self._subscription):
                self._callback(handed)
        except Exception:
            log.exception("handler failed for message %s on %s; nacking", message.message_id, self._subscription)
            try:
                handed.nack()
            except Exception:
                log.exception("nack failed")
        finally:
            with self._lock:
                lease = self._leases.pop(message.message_id, None)
            if lease is not None:
                with lease.lock:  # waits for an extension under way; the keeper skips it from now on
                    lease.settled = True
            if not handed.settled and handed.chosen_deadline is not None:
                # the keeper may have extended it after the callback did: the callback's choice wins
                try:
                    message.extend(max(0.0, handed.chosen_deadline - time.monotonic()))
                except Exception:
                    log.warning("could not set the redelivery time of %s", message.message_id)
            self._slots.release()

    def _keep_leases(self) -> None:
        period = max(0.5, self._deadline / 3)
        while not self._stopping.wait(period):
            with self._lock:
                leases = list(self._leases.values())
            for lease in leases:
                with lease.lock:  # a callback that finished meanwhile keeps its own deadline
                    if lease.settled:
                        continue
                    try:
                        lease.message.extend(self._deadline)
                    except Exception:
                        log.warning("could not extend lease of %s", lease.message.message_id)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._poller.join(timeout=5)
        end = time.monotonic() + timeout
        while self.in_flight() and time.monotonic() < end:
            time.sleep(0.05)
        with self._lock:
            leftovers = list(self._leases.values())
        for lease in leftovers:  # release what did not finish in time
            try:
                lease.message.nack()
            except Exception:
                log.exception("nack on stop failed")
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._keeper.join(timeout=2)
