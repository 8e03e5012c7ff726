"""The trace rides in the message attributes (W3C ``traceparent``) through every bus adapter:
the local SQLite bus and Pub/Sub (on the emulator), publish and subscribe."""
from __future__ import annotations

import threading
import time

from imageflow import tracing
from imageflow.bus import SubscriptionConfig
from tests.integration.contract.test_bus_contract import make, min_deadline, pull_until
from tests.tracing_support import hex_ids, parent_id, recorded_spans, tracing_off  # noqa: F401 (fixtures)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE}-00f067aa0ba902b7-01"


def carried(attributes) -> tuple[str, str, bool]:
    """(trace id, parent span id, sampled) of a message's ``traceparent``."""
    version, trace_id, span_id, flags = attributes["traceparent"].split("-")
    return trace_id, span_id, bool(int(flags, 16) & 1)


def consume_one(bus, sub, work, timeout=30.0):
    """Run ``work(message)`` in a subscriber callback (the adapter's own subscriber) and ack."""
    seen = {}
    done = threading.Event()

    def callback(message):
        seen["result"] = work(message)
        message.ack()
        done.set()

    subscriber = bus.subscribe(sub, callback, max_messages=1, ack_deadline_seconds=min_deadline(bus))
    try:
        assert done.wait(timeout), "the message was not delivered"
    finally:
        subscriber.stop(timeout=5)
    return seen["result"]


def test_a_trace_goes_from_publish_to_the_handler_and_on(bus, recorded_spans):
    topic, sub, _ = make(bus)
    next_topic, next_sub, _ = make(bus)
    with tracing.tracer().start_as_current_span("request"):
        bus.publish(topic, b"{}", {"job_id": "job-1"})

    def handle(message):
        bus.publish(next_topic, b"{}", {"job_id": "job-1"})  # the next hop, from inside the handler
        return tracing.trace_ids(), dict(message.attributes)

    (trace_id, handler_span, sampled), attributes = consume_one(bus, sub, handle)
    [forwarded] = pull_until(bus, next_sub, 1)
    forwarded.ack()

    spans = {s.name: s for s in recorded_spans.get_finished_spans()}
    request, publish, process = spans["request"], spans[f"publish {topic}"], spans[f"process {sub}"]
    second = spans[f"publish {next_topic}"]
    assert {hex_ids(s)[0] for s in (request, publish, process, second)} == {trace_id}
    assert carried(attributes) == (trace_id, hex_ids(publish)[1], True)
    assert (parent_id(publish), parent_id(process), parent_id(second)) == (
        hex_ids(request)[1], hex_ids(publish)[1], hex_ids(process)[1])
    assert handler_span == hex_ids(process)[1] and sampled, "the handler works (and logs) in the consumer span"
    assert carried(forwarded.attributes) == (trace_id, hex_ids(second)[1], True)
    assert publish.kind.name == "PRODUCER" and process.kind.name == "CONSUMER"
    assert process.attributes["imageflow.job_id"] == "job-1"
    assert process.attributes["messaging.destination.subscription.name"] == sub
    assert publish.attributes["messaging.destination.name"] == topic


def test_with_tracing_off_the_callers_trace_passes_through_and_nothing_is_recorded(bus, tracing_off):
    topic, sub, _ = make(bus)
    next_topic, next_sub, _ = make(bus)
    bus.publish(topic, b"{}", {"job_id": "job-2", "traceparent": CALLER})

    def handle(message):
        bus.publish(next_topic, b"{}", {"job_id": "job-2"})
        return tracing.trace_ids()

    assert consume_one(bus, sub, handle) == (TRACE, "00f067aa0ba902b7", False)
    [forwarded] = pull_until(bus, next_sub, 1)
    forwarded.ack()
    assert forwarded.attributes["traceparent"] == CALLER
    assert tracing_off.get_finished_spans() == ()


def test_a_publish_outside_a_trace_starts_one_and_a_given_traceparent_is_kept(bus, recorded_spans):
    topic, sub, _ = make(bus)
    bus.publish(topic, b"{}", {"job_id": "job-3"})  # outside any span (a sweep): its own trace
    with tracing.tracer().start_as_current_span("request"):
        bus.publish(topic, b"{}", {"traceparent": CALLER})
    messages = pull_until(bus, sub, 2)
    for message in messages:
        message.ack()
    by_job = {m.attributes.get("job_id"): m.attributes for m in messages}
    assert "traceparent" in by_job["job-3"] and by_job["job-3"]["traceparent"].split("-")[1] != TRACE
    assert by_job[None]["traceparent"] == CALLER
