"""Pub/Sub adapter specifics, on the emulator: the topology command, streaming pull with
flow control and lease extension, nack on errors, dead-lettering, push delivery."""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imageflow import topology
from imageflow.settings import Settings
from imageflow.bus import SubscriptionConfig
from imageflow.bus.pubsub import PubSubBus

pytestmark = pytest.mark.emulators


@pytest.fixture
def streaming_bus(pubsub_bus, gcp_settings):
    """subscribe() on streaming pull, as on GCP (the emulator's default is polling)."""
    bus = PubSubBus(gcp_settings, streaming=True)
    yield bus
    bus.close()


@pytest.fixture(params=["streaming", "polling"])
def subscribing_bus(request, pubsub_bus, gcp_settings):
    bus = PubSubBus(gcp_settings, streaming=request.param == "streaming")
    yield bus
    bus.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make(bus, deadline=10, **kwargs):
    topic, sub = unique("topic"), unique("sub")
    bus.ensure_topic(topic)
    bus.ensure_subscription(SubscriptionConfig(sub, topic, ack_deadline_seconds=deadline, **kwargs))
    return topic, sub


def wait_until(predicate, timeout: float, message: str):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(message)
        time.sleep(0.05)


def test_setup_command_creates_the_whole_topology_idempotently(pubsub_bus, gcp_settings):
    settings = gcp_settings.with_overrides(max_delivery_attempts=7)
    topology.ensure(pubsub_bus, settings, push_endpoint="http://127.0.0.1:9/")
    topology.ensure(pubsub_bus, settings, push_endpoint="http://127.0.0.1:9/")  # again: no error
    api = pubsub_bus.subscriber
    t = settings.topics
    tasks = api.get_subscription(request={"subscription": pubsub_bus.subscription_path(t.tasks_sub)})
    assert tasks.topic == pubsub_bus.topic_path(t.tasks)
    assert tasks.ack_deadline_seconds == settings.ack_deadline_seconds
    assert tasks.dead_letter_policy.dead_letter_topic == pubsub_bus.topic_path(t.tasks_dlq)
    assert tasks.dead_letter_policy.max_delivery_attempts == 7
    assert tasks.retry_policy.minimum_backoff.total_seconds() == Settings.retry_min_backoff_seconds
    assert tasks.retry_policy.maximum_backoff.total_seconds() == Settings.retry_max_backoff_seconds
    # Never deleted for inactivity (Pub/Sub's default is 31 days without a pull).
    assert "expiration_policy" in tasks and not tasks.expiration_policy.ttl
    email = api.get_subscription(request={"subscription": pubsub_bus.subscription_path(t.notifications_sub)})
    assert email.push_config.push_endpoint == "http://127.0.0.1:9/"
    dead_letter_topics = {t.tasks_dlq, t.jobs_dlq, t.results_dlq, t.notifications_dlq, t.uploads_dlq, t.webhooks_dlq}
    for config in topology.subscriptions(settings):  # no redelivery loop anywhere
        current = api.get_subscription(request={"subscription": pubsub_bus.subscription_path(config.name)})
        assert current.retry_policy.minimum_backoff.total_seconds() == settings.retry_min_backoff_seconds
        assert current.retry_policy.maximum_backoff.total_seconds() == settings.retry_max_backoff_seconds
        if config.topic not in dead_letter_topics:
            assert config.dead_letter_topic, f"{config.name} has no dead-letter topic"
            assert current.dead_letter_policy.dead_letter_topic == pubsub_bus.topic_path(config.dead_letter_topic), \
                config.name
    for name in topology.topics(settings):
        pubsub_bus.publisher.get_topic(request={"topic": pubsub_bus.topic_path(name)})


def test_setup_leaves_the_email_subscription_to_eventarc(pubsub_bus, gcp_settings):
    topology.ensure(pubsub_bus, gcp_settings, email_subscription=False)
    names = {s.name for s in topology.subscriptions(gcp_settings, email_subscription=False)}
    assert gcp_settings.topics.notifications_sub not in names
    from google.api_core import exceptions as gexc
    with pytest.raises(gexc.NotFound):
        pubsub_bus.subscriber.get_subscription(
            request={"subscription": pubsub_bus.subscription_path(gcp_settings.topics.notifications_sub)})


def test_setup_updates_an_existing_subscription(pubsub_bus):
    topic, sub = make(pubsub_bus, deadline=10)
    dlq = unique("dlq")
    pubsub_bus.ensure_topic(dlq)
    pubsub_bus.ensure_subscription(SubscriptionConfig(sub, topic, ack_deadline_seconds=45, dead_letter_topic=dlq,
                                                      max_delivery_attempts=6))
    current = pubsub_bus.subscriber.get_subscription(request={"subscription": pubsub_bus.subscription_path(sub)})
    assert current.ack_deadline_seconds == 45
    assert current.dead_letter_policy.max_delivery_attempts == 6


def test_subscribe_respects_flow_control_and_processes_each_message_once(subscribing_bus):
    pubsub_bus = subscribing_bus
    topic, sub = make(pubsub_bus)
    for i in range(12):
        pubsub_bus.publish(topic, str(i).encode())
    lock = threading.Lock()
    running, peak, seen = [0], [0], []

    def handle(message):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
            seen.append(message.data.decode())
        message.ack()

    subscriber = pubsub_bus.subscribe(sub, handle, max_messages=3, ack_deadline_seconds=10)
    try:
        wait_until(lambda: len(seen) >= 12, 30, f"only {len(seen)} of 12 handled")
        time.sleep(0.5)
    finally:
        subscriber.stop(timeout=5)
    assert sorted(seen, key=int) == [str(i) for i in range(12)], "each message exactly once"
    # (the emulator may hand out one message per pull, so overlap is likely but not certain)
    assert 1 <= peak[0] <= 3, f"concurrency {peak[0]}, flow control allows 3"


def test_leases_are_extended_while_a_long_task_runs(streaming_bus):
    pubsub_bus = streaming_bus
    topic, sub = make(pubsub_bus, deadline=10)
    pubsub_bus.publish(topic, b"long task")
    calls = []

    def handle(message):
        calls.append(message.message_id)
        time.sleep(14)  # longer than the 10 s ack deadline
        message.ack()

    subscriber = pubsub_bus.subscribe(sub, handle, max_messages=1, ack_deadline_seconds=10)
    try:
        wait_until(lambda: calls, 10, "never delivered")
        time.sleep(11)  # past the original deadline: the message must still be ours
        assert pubsub_bus.pull(sub, max_messages=10, timeout=0.5) == []
        wait_until(lambda: subscriber.in_flight() == 0, 10, "task never finished")
    finally:
        subscriber.stop(timeout=5)
    assert len(calls) == 1
    assert pubsub_bus.pull(sub, max_messages=10, timeout=1) == []


def test_a_failing_handler_nacks_and_the_message_dead_letters(streaming_bus):
    pubsub_bus = streaming_bus
    dlq, dlq_sub = unique("dlq"), unique("dlq-sub")
    pubsub_bus.ensure_topic(dlq)
    pubsub_bus.ensure_subscription(SubscriptionConfig(dlq_sub, dlq, ack_deadline_seconds=10))
    topic, sub = make(pubsub_bus, deadline=30, dead_letter_topic=dlq, max_delivery_attempts=5)
    pubsub_bus.publish(topic, b"poison", {"job_id": "j1"})
    attempts = []

    def handle(message):
        attempts.append(message.delivery_attempt)
        raise RuntimeError("cannot process this")

    subscriber = pubsub_bus.subscribe(sub, handle, max_messages=1, ack_deadline_seconds=30)
    try:
        dead = []
        end = time.monotonic() + 60
        while not dead and time.monotonic() < end:
            dead = pubsub_bus.pull(dlq_sub, timeout=1)
    finally:
        subscriber.stop(timeout=5)
    assert dead, f"never dead-lettered; attempts {attempts}"
    [letter] = dead
    assert letter.data == b"poison" and letter.attributes["job_id"] == "j1"
    # Each nack redelivered at once (long before the 30 s deadline), counting up to the limit.
    assert attempts[:5] == [1, 2, 3, 4, 5]
    letter.ack()


def test_stop_waits_for_running_callbacks_then_releases_the_rest(subscribing_bus):
    pubsub_bus = subscribing_bus
    deadline = 20
    topic, sub = make(pubsub_bus, deadline=deadline)
    pubsub_bus.publish(topic, b"quick")
    pubsub_bus.publish(topic, b"stuck")
    started, finished = [], []
    release = threading.Event()

    def handle(message):
        started.append(message.data)
        if message.data == b"stuck":
            release.wait(40)
        else:
            time.sleep(0.5)
        finished.append(message.data)
        message.ack()

    subscriber = pubsub_bus.subscribe(sub, handle, max_messages=2, ack_deadline_seconds=deadline)
    wait_until(lambda: len(started) == 2, 15, "both messages should be running")
    began = time.monotonic()
    subscriber.stop(timeout=2)
    assert time.monotonic() - began < 10
    assert finished == [b"quick"], (started, finished)
    release.set()
    if pubsub_bus.streaming:
        # The emulator may hand the released message straight back to the closed stream,
        # which it never forgets (see PubSubBus.__init__): its return cannot be observed here.
        return
    [again] = pubsub_bus.pull(sub, timeout=deadline)
    assert again.data == b"stuck"
    assert time.monotonic() - began < deadline / 2, "released at once, not after its lease"
    again.ack()


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_emulator_subscribers_poll_and_gcp_ones_stream(gcp_settings, monkeypatch):
    assert PubSubBus(gcp_settings).streaming is False  # PUBSUB_EMULATOR_HOST is set
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
    assert PubSubBus(gcp_settings).streaming is True


def test_push_subscription_posts_the_pubsub_envelope(pubsub_bus):
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        topic, sub = make(pubsub_bus, push_endpoint=f"http://127.0.0.1:{server.server_port}/")
        message_id = pubsub_bus.publish(topic, b'{"v":1}', {"job_id": "abc"})
        wait_until(lambda: _Receiver.received, 30, "nothing pushed")
    finally:
        server.shutdown()
    [envelope] = _Receiver.received[:1]
    assert envelope["subscription"].endswith(f"/subscriptions/{sub}")
    assert envelope["message"]["messageId"] == message_id
    assert base64.b64decode(envelope["message"]["data"]) == b'{"v":1}'
    assert envelope["message"]["attributes"] == {"job_id": "abc"}
