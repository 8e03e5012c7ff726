"""Message bus contract: Pub/Sub's delivery semantics, for every adapter."""
from __future__ import annotations

import multiprocessing
import time
import uuid

import pytest

from imageflow.bus import BusError, SubscriptionConfig


def names():
    suffix = uuid.uuid4().hex[:8]
    return f"t-{suffix}", f"s-{suffix}", f"dlq-{suffix}"


def min_deadline(bus) -> int:
    """Pub/Sub's shortest ack deadline is 10 s; the local bus takes any (3 s: a stall of a
    loaded machine must not outlast a lease the test expects to hold)."""
    return getattr(bus, "MIN_ACK_DEADLINE", 3)


def pull_until(bus, sub, want, timeout=30.0, max_messages=10):
    got = []
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        got.extend(bus.pull(sub, max_messages=max_messages, timeout=1.0))
    return got


def make(bus, **kwargs):
    topic, sub, dlq = names()
    bus.ensure_topic(topic)
    bus.ensure_topic(dlq)
    config = SubscriptionConfig(sub, topic, ack_deadline_seconds=kwargs.pop("deadline", min_deadline(bus)), **kwargs)
    bus.ensure_subscription(config)
    return topic, sub, dlq


def test_published_message_is_delivered_with_data_and_attributes(bus):
    topic, sub, _ = make(bus)
    bus.publish(topic, b'{"x": 1}', {"job_id": "abc"})
    [message] = pull_until(bus, sub, 1)
    assert message.data == b'{"x": 1}'
    assert message.attributes.get("job_id") == "abc"
    assert message.delivery_attempt == 1
    message.ack()
    assert pull_until(bus, sub, 1, timeout=2) == []


def test_setup_is_idempotent(bus):
    topic, sub, dlq = make(bus)
    bus.ensure_topic(topic)
    bus.ensure_subscription(SubscriptionConfig(sub, topic, ack_deadline_seconds=min_deadline(bus)))
    bus.publish(topic, b"once")
    assert [m.data for m in pull_until(bus, sub, 1)] == [b"once"]


def test_publish_to_unknown_topic_fails(bus):
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BusError, match=missing):
        bus.publish(missing, b"x")


def test_unknown_subscription_fails(bus):
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BusError, match=missing):
        bus.pull(missing, max_messages=1)


def test_every_subscription_of_a_topic_gets_its_own_copy(bus):
    topic, sub, _ = make(bus)
    other = sub + "-b"
    bus.ensure_subscription(SubscriptionConfig(other, topic, ack_deadline_seconds=min_deadline(bus)))
    bus.publish(topic, b"fan-out")
    [a] = pull_until(bus, sub, 1)
    [b] = pull_until(bus, other, 1)
    assert a.data == b.data == b"fan-out"
    a.ack()
    b.ack()


def test_unacked_message_is_redelivered_after_the_deadline_counting_attempts(bus):
    deadline = min_deadline(bus)
    topic, sub, dlq = make(bus, deadline=deadline)
    # Pub/Sub counts deliveries on subscriptions with a dead-letter policy (see ReceivedMessage)
    bus.ensure_subscription(SubscriptionConfig(sub, topic, ack_deadline_seconds=deadline, dead_letter_topic=dlq,
                                               max_delivery_attempts=5))
    bus.publish(topic, b"again")
    [first] = pull_until(bus, sub, 1)
    assert bus.pull(sub, max_messages=10, timeout=0) == []  # leased: nobody else gets it
    time.sleep(deadline + 0.5)
    [second] = pull_until(bus, sub, 1, timeout=deadline + 20)
    assert second.data == b"again"
    assert second.message_id == first.message_id
    assert (first.delivery_attempt, second.delivery_attempt) == (1, 2)
    second.ack()


def test_nack_redelivers_at_once(bus):
    topic, sub, _ = make(bus, deadline=max(min_deadline(bus), 30))
    bus.publish(topic, b"retry me")
    [first] = pull_until(bus, sub, 1)
    first.nack()
    [second] = pull_until(bus, sub, 1, timeout=15)
    assert second.data == b"retry me"
    second.ack()


def test_a_nacked_message_waits_out_the_retry_backoff(bus):
    """No redelivery loop: a handler that fails at once gets the message back only after the backoff."""
    if type(bus).__name__ == "PubSubBus":
        pytest.skip("the Pub/Sub emulator ignores retry policies (Pub/Sub applies them); "
                    "tests/integration/gcp/test_pubsub_bus.py checks every subscription carries one")
    topic, sub, _ = make(bus, deadline=max(min_deadline(bus), 30), min_backoff_seconds=4, max_backoff_seconds=8)
    bus.publish(topic, b"failing handler")
    [first] = pull_until(bus, sub, 1)
    first.nack()
    started = time.monotonic()
    assert bus.pull(sub, max_messages=10, timeout=2.0) == [], "redelivered before the backoff"
    [second] = pull_until(bus, sub, 1, timeout=30)
    assert second.data == b"failing handler" and time.monotonic() - started >= 3.5
    second.ack()


def test_extend_keeps_the_lease(bus):
    deadline = min_deadline(bus)
    topic, sub, _ = make(bus, deadline=deadline)
    bus.publish(topic, b"long task")
    [message] = pull_until(bus, sub, 1)
    for _ in range(3):
        time.sleep(deadline * 0.5)
        message.extend(deadline)
    assert bus.pull(sub, max_messages=10, timeout=0.5) == []
    message.ack()


def test_stale_ack_does_not_remove_a_redelivered_message(bus):
    deadline = min_deadline(bus)
    topic, sub, _ = make(bus, deadline=deadline)
    bus.publish(topic, b"slow consumer")
    [stale] = pull_until(bus, sub, 1)
    time.sleep(deadline + 0.5)
    [fresh] = pull_until(bus, sub, 1, timeout=deadline + 20)
    stale.ack()  # too late: the lease moved on
    fresh.nack()
    [again] = pull_until(bus, sub, 1, timeout=15)
    assert again.data == b"slow consumer"
    again.ack()


def test_dead_letter_after_max_attempts(bus):
    topic, sub, dlq = make(bus, deadline=max(min_deadline(bus), 30), dead_letter_topic=None)
    dlq_sub = sub + "-dlq"
    bus.ensure_subscription(SubscriptionConfig(dlq_sub, dlq, ack_deadline_seconds=min_deadline(bus)))
    bus.ensure_subscription(SubscriptionConfig(sub, topic, ack_deadline_seconds=max(min_deadline(bus), 30),
                                               dead_letter_topic=dlq, max_delivery_attempts=5,
                                               min_backoff_seconds=0.1, max_backoff_seconds=0.5))
    bus.publish(topic, b"poison", {"job_id": "j1"})
    attempts = []
    end = time.monotonic() + 120
    while time.monotonic() < end:
        for message in bus.pull(sub, max_messages=10, timeout=1.0):
            attempts.append(message.delivery_attempt)
            message.nack()
        dead = bus.pull(dlq_sub, max_messages=10, timeout=0.2)
        if dead:
            break
    else:
        pytest.fail(f"never dead-lettered; attempts seen: {attempts}")
    [letter] = dead
    assert letter.data == b"poison"
    assert letter.attributes.get("job_id") == "j1"
    assert attempts == [1, 2, 3, 4, 5]
    assert letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    letter.ack()


def test_backlog_counts_what_is_not_acked_yet(bus):
    topic, sub, _ = make(bus)
    if bus.__class__.__name__ == "PubSubBus":  # the emulator has no backlog metric (ARCHITECTURE.md)
        with pytest.raises(BusError, match="emulator keeps no backlog"):
            bus.backlog(sub)
        return
    assert bus.backlog(sub) == 0
    for n in range(3):
        bus.publish(topic, f"m{n}".encode())
    assert bus.backlog(sub) == 3
    leased = pull_until(bus, sub, 2, max_messages=2)
    assert bus.backlog(sub) == 3          # leased is not acked
    leased[0].ack()
    assert bus.backlog(sub) == 2
    with pytest.raises(BusError):
        bus.backlog(f"missing-{uuid.uuid4().hex[:8]}")


def test_subscription_on_unknown_topic_fails(bus):
    with pytest.raises((BusError, Exception)):
        bus.ensure_subscription(SubscriptionConfig(f"s-{uuid.uuid4().hex[:8]}", f"nope-{uuid.uuid4().hex[:8]}"))


def _consume(spec, sub, out, stop_after, ready):
    cls, args = spec
    bus = cls(*args)
    ready.wait(60)  # both open before either pulls: one process must not drain it all alone
    seen = []
    end = time.monotonic() + stop_after
    while time.monotonic() < end:
        messages = bus.pull(sub, max_messages=5, timeout=0.5)
        for message in messages:
            seen.append(message.data.decode())
            time.sleep(0.01)
            message.ack()
        if not messages and len(seen) and time.monotonic() > end - stop_after / 2:
            break
    out.put(seen)


def test_two_consumer_processes_never_hold_the_same_lease(bus):
    topic, sub, _ = make(bus, deadline=max(min_deadline(bus), 30))
    count = 200
    for i in range(count):
        bus.publish(topic, str(i).encode())
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Barrier(2)
    workers = [ctx.Process(target=_consume, args=(bus.reopen_spec, sub, out, 40, ready)) for _ in range(2)]
    for w in workers:
        w.start()
    results = [out.get(timeout=90) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    everything = results[0] + results[1]
    assert sorted(everything, key=int) == [str(i) for i in range(count)], "each message once, none lost"
    assert not set(results[0]) & set(results[1])
    assert results[0] and results[1], "both processes took part"
