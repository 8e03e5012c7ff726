"""One job is one trace across the real processes (./scripts.sh up's stack), exported over
OTLP/HTTP to a collector on 127.0.0.1; with tracing off (the default) nothing is exported."""
from __future__ import annotations

import json
import time

import pytest
import requests

from devtools.stack import Stack
from imageflow.settings import Settings
from tests.e2e.conftest import make_image, wait_for_job
from tests.otlp_collector import Collector

TOPICS = Settings().topics
# Which topic feeds each subscription whose handling makes a span.
FEEDS = {TOPICS.jobs_sub: TOPICS.jobs, TOPICS.tasks_sub: TOPICS.tasks, TOPICS.results_sub: TOPICS.results,
         TOPICS.webhooks_sub: TOPICS.notifications}
SERVICES = {"image-handler", "interaction-manager", "image-processor", "email-function"}
QUICK = {"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2",
         "LOG_FORMAT": "json", "OTEL_BSP_SCHEDULE_DELAY": "200"}


@pytest.fixture(scope="module")
def collector():
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def stack_options(collector):
    return {"env": {**QUICK, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint}}


def submit(base_url: str, count: int, headers: dict | None = None) -> str:
    files = [("files", (f"p{i}.png", make_image("PNG", (320 + 40 * i, 240)), "image/png")) for i in range(count)]
    response = requests.post(f"{base_url}/api/v1/jobs", files=files, headers=headers or {}, timeout=60, data={
        "operations": json.dumps([{"op": "resize", "width": 100}]), "email": "someone@example.com"})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def wait_for_email(data_dir, job_id: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not (data_dir / "outbox" / f"{job_id}.eml").exists():
        assert time.monotonic() < end, "no email"
        time.sleep(0.2)


def log_lines(stack, service: str, job_id: str) -> list[dict]:
    lines = []
    for raw in (stack.log_dir / f"{service}.log").read_text(errors="replace").splitlines():
        if raw.startswith("{") and job_id in raw:
            lines.append(json.loads(raw))
    return lines


def _exported_whole(spans, job_id: str) -> bool:
    """The job's email span is in, and every span that ends later (the processors' task spans,
    the webhook sender's) too: exports from several processes arrive in any order."""
    mail = [s for s in spans if s.service == "email-function" and s.attributes.get("imageflow.job_id") == job_id]
    if not mail:
        return False
    ours = [s for s in spans if s.trace_id == mail[0].trace_id]
    names = {s.name for s in ours}
    ids = {s.span_id for s in ours}
    return {f"process {sub}" for sub in FEEDS} <= names and all(s.parent_id in ids or not s.parent_id for s in ours) \
        and len([s for s in ours if s.name == f"process {TOPICS.tasks_sub}"]) >= 2


def test_a_job_is_one_trace_across_the_services(stack, collector):
    job_id = submit(stack.base_url, 2)
    assert wait_for_job(stack.base_url, job_id)["status"] == "completed"
    wait_for_email(stack.data_dir, job_id)
    spans = collector.wait_for(lambda spans: _exported_whole(spans, job_id))

    [root] = [s for s in spans if s.service == "image-handler" and s.name == "POST /api/v1/jobs"]
    assert root.kind == "SERVER" and root.parent_id == ""
    ours = [s for s in spans if s.trace_id == root.trace_id]
    mentioning = [s for s in spans if s.attributes.get("imageflow.job_id") == job_id]
    assert {s.trace_id for s in mentioning} == {root.trace_id}, "every span of the job is in its one trace"
    assert {s.service for s in ours} == SERVICES
    by_id = {s.span_id: s for s in ours}
    assert [s for s in ours if s.parent_id == ""] == [root], "one root: the request that created the job"
    assert all(s.parent_id in by_id for s in ours if s is not root), "no span hangs off a parent not exported"

    # Each message handled is a consumer span, the child of the producer span that published it.
    consumers = [s for s in ours if s.kind == "CONSUMER" and s.service != "email-function"]
    assert {s.name for s in consumers} == {f"process {sub}" for sub in FEEDS}
    for span in consumers:
        parent = by_id[span.parent_id]
        topic = FEEDS[span.attributes["messaging.destination.subscription.name"]]
        assert (parent.kind, parent.name) == ("PRODUCER", f"publish {topic}"), (span, parent)
    tasks = [s for s in consumers if s.name == f"process {TOPICS.tasks_sub}"]
    assert len(tasks) == 2 and {s.service for s in tasks} == {"image-processor"}
    assert len({s.attributes["imageflow.image_id"] for s in tasks}) == 2, "each task names its image"
    # The render (in a worker process) is timed in a span under its task's handling.
    renders = [s for s in ours if s.name == "render"]
    assert sorted(by_id[s.parent_id].span_id for s in renders) == sorted(s.span_id for s in tasks)
    assert {s.attributes["imageflow.image_id"] for s in renders} == {s.attributes["imageflow.image_id"] for s in tasks}
    # The results are folded in batches; the completion it publishes belongs to the job's trace.
    [completion] = [s for s in ours if s.name == f"publish {TOPICS.notifications}"]
    fold = by_id[completion.parent_id]
    assert (fold.service, fold.name) == ("interaction-manager", "fold results")
    assert by_id[fold.parent_id].name == f"publish {TOPICS.results}"
    [mail] = [s for s in ours if s.service == "email-function"]
    assert (mail.kind, mail.name, mail.parent_id) == ("CONSUMER", "notify job.completed", completion.span_id)
    assert mail.attributes["imageflow.email.outcome"] == "sent"
    # the job.submitted published by the request, under its server span
    [submitted] = [s for s in ours if s.name == f"publish {TOPICS.jobs}"]
    assert submitted.service == "image-handler" and submitted.parent_id == root.span_id

    # Logs and traces agree: every JSON line logged for the job names the trace (and a span) of it.
    for service in ("image-handler", "interaction-manager"):
        lines = log_lines(stack, service, job_id)
        assert lines, f"{service} logged nothing for the job"
        assert {line.get("logging.googleapis.com/trace") for line in lines} == {root.trace_id}, service
        assert all(line["logging.googleapis.com/spanId"] in by_id for line in lines)
        assert all(line["logging.googleapis.com/trace_sampled"] is True for line in lines)


def test_with_tracing_off_nothing_is_exported_and_logs_keep_the_callers_trace(tmp_path):
    """The default: no exporter even with an endpoint configured; a caller's traceparent still
    reaches every service's log lines for the job."""
    trace_id = "5af7183fb1d4cf5f0123456789abcdef"
    with Collector() as collector:
        stack = Stack.on_free_ports(tmp_path / "data", env={
            **QUICK, "OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint})
        stack.start(timeout=60)
        try:
            job_id = submit(stack.base_url, 1, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
            assert wait_for_job(stack.base_url, job_id)["status"] == "completed"
            wait_for_email(stack.data_dir, job_id)
            time.sleep(1.5)  # several of the exporters' 200 ms schedules, had there been any
            for service in ("image-handler", "interaction-manager"):
                lines = log_lines(stack, service, job_id)
                assert lines and {line.get("logging.googleapis.com/trace") for line in lines} == {trace_id}, service
                assert not any(line.get("logging.googleapis.com/trace_sampled") for line in lines)
        finally:
            stack.stop()
        assert (collector.requests, collector.spans) == (0, [])
