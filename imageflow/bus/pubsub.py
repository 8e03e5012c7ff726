"""Pub/Sub message bus; honours ``PUBSUB_EMULATOR_HOST``.

- ``subscribe`` is the client library's streaming pull: flow control holds at most
  ``max_messages`` outstanding messages (the worker's concurrency), the library extends
  their leases while the callback runs, and the callback acks only once its work is done.
  (On the emulator it polls instead by default: see ``PubSubBus.__init__``.)
- ``pull`` is the unary pull, polled, for tools and tests (``return_immediately``: the
  emulator would otherwise block on an empty subscription, and a cancelled long pull can
  strand the messages it was about to return until their deadline).
- ``ensure_topic`` / ``ensure_subscription`` create or update topics and subscriptions
  (ack deadline, dead-letter policy, retry policy, push endpoint), idempotently; the
  ``imageflow-setup`` command calls them for the whole topology.

On real GCP, dead-lettering also needs the Pub/Sub service agent
(``service-<project number>@gcp-sa-pubsub.iam.gserviceaccount.com``) to hold
``roles/pubsub.publisher`` on the dead-letter topic and ``roles/pubsub.subscriber`` on the
source subscription: the deployment grants those (the emulator needs nothing).
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler
from google.protobuf import duration_pb2, field_mask_pb2
from google.pubsub_v1 import types as pubsub_types

from .. import tracing
from ..settings import Settings
from . import BusError, MessageBus, ReceivedMessage, Subscriber, SubscriptionConfig, handling

log = logging.getLogger(__name__)

MIN_DEADLINE, MAX_DEADLINE = 10, 600            # Pub/Sub's bounds for ack deadlines
MIN_ATTEMPTS, MAX_ATTEMPTS = 5, 100             # ... and for max_delivery_attempts
MAX_BACKOFF = 600                               # Pub/Sub's bound for the retry policy's backoffs (seconds)
MAX_LEASE_SECONDS = 2 * 60 * 60                 # give up extending a stuck callback after this
PUBLISH_TIMEOUT = 60.0
RPC_TIMEOUT = 30.0
POLL_INTERVAL = 0.1
RELEASE_PAUSE = 0.2                             # lets the library process a drop before we nack

# Deprecated, yet the only way to poll the emulator without blocking (see module docstring).
warnings.filterwarnings("ignore", message="The return_immediately flag is deprecated", category=DeprecationWarning)


def _duration(seconds: float) -> duration_pb2.Duration:
    seconds = min(MAX_BACKOFF, max(0.0, seconds))
    return duration_pb2.Duration(seconds=int(seconds), nanos=int(round((seconds % 1) * 1e9)))


def _deadline(seconds: int | float) -> int:
    return int(min(MAX_DEADLINE, max(MIN_DEADLINE, seconds)))


class PulledMessage(ReceivedMessage):
    """A message leased by a unary pull; settles through the subscriber API."""

    def __init__(self, bus: "PubSubBus", subscription: str, path: str, received):
        self._bus = bus
        self._path = path
        self._ack_id = received.ack_id
        message = received.message
        self.subscription = subscription
        self.message_id = message.message_id
        self.data = bytes(message.data)
        self.attributes = dict(message.attributes)
        self.delivery_attempt = received.delivery_attempt or 1  # 0: not counted (no dead-letter policy)
        self.publish_time = message.publish_time.timestamp()

    def ack(self) -> None:
        self._settle("ack", lambda api: api.acknowledge(
            request={"subscription": self._path, "ack_ids": [self._ack_id]}, timeout=RPC_TIMEOUT))

    def nack(self) -> None:
        self._modify(0)

    def extend(self, seconds: int) -> None:
        self._modify(min(MAX_DEADLINE, max(0, math.ceil(seconds))))  # whole seconds, never sooner

    def _modify(self, seconds: int) -> None:
        self._settle("modify_ack_deadline", lambda api: api.modify_ack_deadline(
            request={"subscription": self._path, "ack_ids": [self._ack_id], "ack_deadline_seconds": seconds},
            timeout=RPC_TIMEOUT))

    def _settle(self, what: str, call) -> None:
        # A lost ack only means a redelivery, which every handler tolerates; an expired
        # ack id is rejected by some servers and silently ignored by others.
        try:
            call(self._bus.subscriber)
        except gexc.GoogleAPICallError as exc:
            log.warning("%s of %s on %s failed: %s", what, self.message_id, self.subscription, exc)


class StreamedMessage(ReceivedMessage):
    """A message delivered by streaming pull; the client library keeps its lease."""

    def __init__(self, bus: "PubSubBus", subscription: str, message):
        self._bus = bus
        self._message = message
        self.subscription = subscription
        self.message_id = message.message_id
        self.data = message.data
        self.attributes = dict(message.attributes)
        self.delivery_attempt = message.delivery_attempt or 1  # 0/None: not counted (no dead-letter policy)
        self.publish_time = message.publish_time.timestamp()
        self.settled = False
        self.released = False

    def ack(self) -> None:
        if not self.released:  # after release() the message belongs to someone else
            self.settled = True
            self._message.ack()

    def nack(self) -> None:
        if not self.released:
            self.settled = True
            self._message.nack()

    def extend(self, seconds: int) -> None:
        if not self.released:
            self._message.modify_ack_deadline(min(MAX_DEADLINE, max(0, math.ceil(seconds))))  # whole seconds, never sooner

    def drop(self) -> None:
        """Stop leasing without settling: Pub/Sub redelivers after the ack deadline."""
        self.settled = True
        self._message.drop()

    def release(self) -> None:
        """Hand the message back at once, directly through the API (used once the stream is
        shut down, when the library no longer sends anything); later ack/nack are ignored."""
        self.released = self.settled = True
        self._message.drop()  # first stop the library's lease keeper from extending it again
        time.sleep(RELEASE_PAUSE)
        try:
            self._bus.subscriber.modify_ack_deadline(
                request={"subscription": self._bus.subscription_path(self.subscription),
                         "ack_ids": [self._message.ack_id], "ack_deadline_seconds": 0}, timeout=RPC_TIMEOUT)
        except gexc.GoogleAPICallError as exc:
            log.warning("could not release %s (it comes back after its deadline): %s", self.message_id, exc)


class StreamingSubscriber(Subscriber):
    """MessageBus.subscribe on Pub/Sub's streaming pull.

    Flow control allows ``max_messages`` outstanding messages, which a pool of as many
    threads runs; the library extends each lease by ``ack_deadline_seconds`` until the
    callback settles the message (an exception nacks it; returning without settling drops
    the lease, so the message comes back after its deadline).
    """

    def __init__(self, bus: "PubSubBus", subscription: str, callback: Callable[[ReceivedMessage], None], *,
                 max_messages: int, ack_deadline_seconds: int):
        self._bus = bus
        self._subscription = subscription
        self._callback = callback
        self._lock = threading.Lock()
        self._in_flight: dict[int, StreamedMessage] = {}
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        workers = max(1, max_messages)
        lease = _deadline(ack_deadline_seconds)
        flow = pubsub_v1.types.FlowControl(
            max_messages=workers, max_lease_duration=MAX_LEASE_SECONDS,
            # Fixed lease extensions: a consumer that dies is replaced after at most `lease` s.
            min_duration_per_lease_extension=lease, max_duration_per_lease_extension=lease)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sub-{subscription}")
        self._future = bus.subscriber.subscribe(
            bus.subscription_path(subscription), callback=self._on_message, flow_control=flow,
            scheduler=ThreadScheduler(self._executor), await_callbacks_on_shutdown=True)
        self._future.add_done_callback(self._on_stream_done)

    def _on_message(self, message) -> None:
        wrapped = StreamedMessage(self._bus, self._subscription, message)
        if self._stopping.is_set():
            wrapped.nack()
            return
        with self._lock:
            self._in_flight[id(wrapped)] = wrapped
        try:
            with handling(wrapped, self._subscription):
                self._callback(wrapped)
        except Exception:
            log.exception("handler failed for message %s on %s; nacking", wrapped.message_id, self._subscription)
            if not wrapped.settled:
                wrapped.nack()
        finally:
            if not wrapped.settled:
                wrapped.drop()
            with self._lock:
                self._in_flight.pop(id(wrapped), None)

    def _on_stream_done(self, future) -> None:
        if not self._stopping.is_set():
            try:
                future.result()
            except Exception as exc:  # e.g. the subscription was deleted
                log.error("streaming pull on %s ended: %s", self._subscription, exc)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def is_alive(self) -> bool:
        return not self._future.done() and not self._stopping.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        """Close the stream (undelivered messages are nacked by the library), wait up to
        ``timeout`` s for running callbacks, then nack what is still running."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        # cancel() closes the stream and starts the shutdown, which waits for the running
        # callbacks (their acks still go out); result() waits for that shutdown.
        self._future.cancel()
        try:
            self._future.result(timeout=timeout)
        except FutureTimeout:
            with self._lock:
                leftovers = list(self._in_flight.values())
            for message in leftovers:
                log.warning("message %s still running at stop; releasing it", message.message_id)
                message.release()
        except Exception:  # the stream had already failed; nothing left to drain
            pass
        self._bus._forget(self)


class PubSubBus(MessageBus):
    """Topics and subscriptions in ``GCP_PROJECT``."""

    MIN_ACK_DEADLINE = MIN_DEADLINE

    def __init__(self, settings: Settings, *, streaming: bool | None = None):
        """``streaming``: subscribe() with streaming pull (True) or by polling unary pulls
        (False). By default streaming, except on the emulator: it never forgets a closed
        streaming-pull stream, so after a subscriber restarts it keeps handing messages to
        the dead stream, each lost until its ack deadline, again and again."""
        if not settings.gcp_project:
            raise BusError("GCP_PROJECT is not set")
        self._settings = settings
        self.streaming = not os.environ.get("PUBSUB_EMULATOR_HOST") if streaming is None else streaming
        self.project = settings.gcp_project
        self._lock = threading.Lock()
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._subscribers: list[StreamingSubscriber] = []

    # -- clients (created on first use; nothing connects at import or construction) -----------

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        with self._lock:
            if self._publisher is None:
                # We wait for every publish, so batching only delays: flush at once.
                batching = pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.001)
                self._publisher = pubsub_v1.PublisherClient(batch_settings=batching)
            return self._publisher

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        with self._lock:
            if self._subscriber is None:
                self._subscriber = pubsub_v1.SubscriberClient()
            return self._subscriber

    def topic_path(self, name: str) -> str:
        return name if name.startswith("projects/") else f"projects/{self.project}/topics/{name}"

    def subscription_path(self, name: str) -> str:
        return name if name.startswith("projects/") else f"projects/{self.project}/subscriptions/{name}"

    # -- topology --------------------------------------------------------------------------

    def ensure_topic(self, name: str) -> None:
        try:
            self.publisher.create_topic(request={"name": self.topic_path(name)}, timeout=RPC_TIMEOUT)
        except gexc.AlreadyExists:
            pass
        except gexc.GoogleAPICallError as exc:
            raise BusError(f"cannot create topic {name}: {exc}") from exc

    def subscription_spec(self, config: SubscriptionConfig) -> pubsub_types.Subscription:
        """The Subscription resource ImageFlow wants for ``config``."""
        spec = pubsub_types.Subscription(
            name=self.subscription_path(config.name),
            topic=self.topic_path(config.topic),
            ack_deadline_seconds=_deadline(config.ack_deadline_seconds),
            retain_acked_messages=config.retain_acked,
            retry_policy=pubsub_types.RetryPolicy(
                minimum_backoff=_duration(config.min_backoff_seconds),
                maximum_backoff=_duration(max(config.min_backoff_seconds, config.max_backoff_seconds))),
            # An empty ttl: never expire. Pub/Sub's default deletes a subscription after 31
            # days without a pull, and processors scaled to zero for a month would lose tasks.
            expiration_policy=pubsub_types.ExpirationPolicy(),
        )
        if config.dead_letter_topic:
            spec.dead_letter_policy = pubsub_types.DeadLetterPolicy(
                dead_letter_topic=self.topic_path(config.dead_letter_topic),
                max_delivery_attempts=min(MAX_ATTEMPTS, max(MIN_ATTEMPTS, config.max_delivery_attempts)))
        if config.push_endpoint:
            spec.push_config = pubsub_types.PushConfig(push_endpoint=config.push_endpoint)
        return spec

    def ensure_subscription(self, config: SubscriptionConfig) -> None:
        """Create the subscription, or bring an existing one in line with ``config``."""
        spec = self.subscription_spec(config)
        try:
            self.subscriber.create_subscription(request=spec, timeout=RPC_TIMEOUT)
            return
        except gexc.AlreadyExists:
            pass
        except gexc.NotFound as exc:
            raise BusError(f"cannot create subscription {config.name}: topic {config.topic} not found") from exc
        except gexc.GoogleAPICallError as exc:
            raise BusError(f"cannot create subscription {config.name}: {exc}") from exc
        self._update_subscription(config, spec)

    def _update_subscription(self, config: SubscriptionConfig, spec: pubsub_types.Subscription) -> None:
        try:
            current = self.subscriber.get_subscription(request={"subscription": spec.name}, timeout=RPC_TIMEOUT)
        except gexc.GoogleAPICallError as exc:
            raise BusError(f"cannot read subscription {config.name}: {exc}") from exc
        if current.topic != spec.topic:
            raise BusError(f"subscription {config.name} exists on topic {current.topic}, not {spec.topic}: "
                           "delete it first (a subscription cannot change topic)")
        fields = ("ack_deadline_seconds", "retain_acked_messages", "retry_policy",
                  "dead_letter_policy", "push_config", "expiration_policy")
        changed = [f for f in fields if getattr(current, f) != getattr(spec, f)]
        if not changed:
            return
        try:
            self.subscriber.update_subscription(
                request={"subscription": spec, "update_mask": field_mask_pb2.FieldMask(paths=changed)},
                timeout=RPC_TIMEOUT)
        except gexc.GoogleAPICallError as exc:
            raise BusError(f"cannot update subscription {config.name} ({', '.join(changed)}): {exc}") from exc
        log.info("updated subscription %s: %s", config.name, ", ".join(changed))

    def delete_subscription(self, name: str) -> None:
        try:
            self.subscriber.delete_subscription(request={"subscription": self.subscription_path(name)},
                                                timeout=RPC_TIMEOUT)
        except gexc.NotFound:
            pass

    def delete_topic(self, name: str) -> None:
        try:
            self.publisher.delete_topic(request={"topic": self.topic_path(name)}, timeout=RPC_TIMEOUT)
        except gexc.NotFound:
            pass

    # -- messages --------------------------------------------------------------------------

    def publish(self, topic: str, data: bytes, attributes: dict[str, str] | None = None) -> str:
        with tracing.publishing(topic, attributes) as attributes:  # the trace rides in the attributes
            future = self.publisher.publish(self.topic_path(topic), data, **attributes)
            try:
                return future.result(timeout=PUBLISH_TIMEOUT)
            except gexc.NotFound as exc:
                raise BusError(f"topic {topic} does not exist") from exc
            except Exception as exc:
                raise BusError(f"publish to {topic} failed: {exc}") from exc

    def pull(self, subscription: str, max_messages: int = 10, timeout: float = 0.0) -> list[ReceivedMessage]:
        path = self.subscription_path(subscription)
        end = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                response = self.subscriber.pull(
                    request={"subscription": path, "max_messages": min(1000, max(1, max_messages)),
                             "return_immediately": True},
                    timeout=RPC_TIMEOUT)
            except gexc.NotFound as exc:
                raise BusError(f"subscription {subscription} does not exist") from exc
            except gexc.GoogleAPICallError as exc:
                raise BusError(f"pull from {subscription} failed: {exc}") from exc
            if response.received_messages or time.monotonic() >= end:
                return [PulledMessage(self, subscription, path, r) for r in response.received_messages]
            time.sleep(min(POLL_INTERVAL, max(0.0, end - time.monotonic())))

    def subscribe(self, subscription: str, callback: Callable[[ReceivedMessage], None], *,
                  max_messages: int = 1, ack_deadline_seconds: int = 60) -> Subscriber:
        """Streaming pull with flow control (see StreamingSubscriber); polling unary pulls
        when ``streaming`` is off (see __init__)."""
        if not self.streaming:
            return super().subscribe(subscription, callback, max_messages=max_messages,
                                     ack_deadline_seconds=ack_deadline_seconds)
        sub = StreamingSubscriber(self, subscription, callback, max_messages=max_messages,
                                  ack_deadline_seconds=ack_deadline_seconds)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def _forget(self, sub: StreamingSubscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def backlog(self, subscription: str) -> int:
        """Cloud Monitoring's ``num_undelivered_messages`` of the subscription: the figure KEDA's
        gcp-pubsub scaler reads, 1-2 minutes late (needs ``roles/monitoring.viewer``)."""
        if os.environ.get("PUBSUB_EMULATOR_HOST"):
            raise BusError("the Pub/Sub emulator keeps no backlog metric (Cloud Monitoring's "
                           "num_undelivered_messages exists only on GCP)")
        try:
            self.subscriber.get_subscription(request={"subscription": self.subscription_path(subscription)},
                                             timeout=RPC_TIMEOUT)
        except gexc.NotFound as exc:
            raise BusError(f"subscription {subscription} does not exist") from exc
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/monitoring.read"])
        now = time.time()
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        response = AuthorizedSession(credentials).get(
            f"https://monitoring.googleapis.com/v3/projects/{self.project}/timeSeries", timeout=RPC_TIMEOUT,
            params={"filter": 'metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages" '
                              f'AND resource.labels.subscription_id="{subscription}"',
                    "interval.startTime": stamp(now - 600), "interval.endTime": stamp(now)})
        if response.status_code != 200:
            raise BusError(f"Cloud Monitoring answered {response.status_code} for the backlog of {subscription}")
        series = response.json().get("timeSeries") or []
        points = series[0].get("points") if series else None
        return int(points[0]["value"].get("int64Value", 0)) if points else 0  # newest point first

    def check(self) -> None:
        topic = self.topic_path(self._settings.topics.jobs)
        try:
            self.publisher.get_topic(request={"topic": topic}, timeout=5)
        except gexc.NotFound as exc:
            raise BusError(f"topic {topic} does not exist (run imageflow-setup)") from exc
        except Exception as exc:
            raise BusError(f"Pub/Sub unreachable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), []
        for sub in subscribers:
            sub.stop(timeout=10)
        with self._lock:
            publisher, self._publisher = self._publisher, None
            subscriber, self._subscriber = self._subscriber, None
        if publisher is not None:
            publisher.stop()  # flushes anything still batched
            publisher.transport.close()
        if subscriber is not None:
            subscriber.close()
