"""Structured logs: what Cloud Logging reads on GKE (LOG_FORMAT=json), readable text locally,
and the job of the message being handled on every line logged meanwhile."""
from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from imageflow import logging_setup
from imageflow.bus import PollingSubscriber, SubscriptionConfig
from imageflow.bus.sqlite import SqliteBus

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def output():
    """The root logger configured as a service does it, writing into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    stream = io.StringIO()

    def configure(env):
        root.handlers = []
        logging_setup.configure("image-processor", env=env)
        for handler in root.handlers:
            handler.setStream(stream)
        return stream
    yield configure
    root.handlers, root.level = saved


def test_json_lines_carry_severity_job_and_trace(output):
    stream = output({"LOG_FORMAT": "json", "GCP_PROJECT": "acme-images"})
    log = logging.getLogger("services.image_processor.processing")
    with logging_setup.log_context(job_id="job-1", traceparent=TRACEPARENT):
        log.warning("image %s failed", "img-9", extra={"image_id": "img-9"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["severity"] == "WARNING" and first["message"] == "image img-9 failed"
    assert (first["job_id"], first["image_id"]) == ("job-1", "img-9")
    assert first["logging.googleapis.com/trace"] == f"projects/acme-images/traces/{TRACE}"
    assert first["serviceContext"] == {"service": "image-processor"}
    assert second["severity"] == "ERROR" and "ValueError: boom" in second["message"]
    assert "job_id" not in second, "the context ends with the block"


def test_local_text_is_readable(output):
    stream = output({})
    with logging_setup.log_context(job_id="job-2"):
        logging.getLogger("x").info("hello")
    line = stream.getvalue().strip()
    assert " image-processor INFO x: hello [job_id=job-2]" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_malformed_traceparent_is_ignored():
    assert logging_setup.parse_traceparent("garbage") is None
    assert logging_setup.parse_traceparent(TRACEPARENT) == (TRACE, "00f067aa0ba902b7")


def test_lines_logged_while_handling_a_message_name_its_job(output, tmp_path):
    """The subscribers open the context from the message's attributes: handlers need no code."""
    stream = output({"LOG_FORMAT": "json"})
    bus = SqliteBus(tmp_path / "bus.db")
    bus.ensure_topic("t")
    bus.ensure_subscription(SubscriptionConfig("s", "t", ack_deadline_seconds=10))
    bus.publish("t", b"{}", {"job_id": "job-42", "traceparent": TRACEPARENT})
    done = threading.Event()

    def handle(message):
        logging.getLogger("handler").info("working")
        message.ack()
        done.set()

    subscriber = PollingSubscriber(bus, "s", handle, max_messages=1, ack_deadline_seconds=10)
    try:
        assert done.wait(10)
    finally:
        subscriber.stop(timeout=5)
        bus.close()
    [line] = [json.loads(l) for l in stream.getvalue().splitlines() if '"working"' in l]
    assert line["job_id"] == "job-42" and line["logging.googleapis.com/trace"] == TRACE


def test_a_request_names_its_trace_and_job_and_passes_the_trace_on(output, tmp_path):
    """Behind Google's load balancer each request has X-Cloud-Trace-Context: the API's lines
    for it carry that trace and the job of the URL, and what it publishes carries it on."""
    from pathlib import Path

    from services.image_handler.app import create_app

    stream = output({"LOG_FORMAT": "json"})
    app = create_app({"data_dir": Path(tmp_path)})
    logging_setup.configure("image-handler", env={"LOG_FORMAT": "json"})
    for handler in logging.getLogger().handlers:
        handler.setStream(stream)

    @app.get("/api/v1/jobs/<job_id>/probe")
    def probe(job_id):
        logging.getLogger("probe").info("looking")
        return {"attributes": logging_setup.with_trace({"job_id": job_id})}

    response = app.test_client().get("/api/v1/jobs/j-7/probe", headers={"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"})
    assert response.json["attributes"]["traceparent"] == f"00-{TRACE}-0000000000000001-01"
    [line] = [json.loads(l) for l in stream.getvalue().splitlines() if '"looking"' in l]
    assert line["job_id"] == "j-7" and line["logging.googleapis.com/trace"] == TRACE
    assert logging_setup.current_traceparent() is None, "the context ends with the request"
