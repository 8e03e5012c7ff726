"""imageflow/tracing.py and the email function's spans: off by default, the exporters the
environment names, the API's server spans, logs that name the span they were logged in, and a
batch's publishes joining each job's trace."""
from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent
from opentelemetry import trace

from imageflow import logging_setup, tracing
from tests.otlp_collector import Collector
from tests.tracing_support import hex_ids, parent_id, recorded_spans, tracing_off  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{TRACE}-{CALLER_SPAN}-01"


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    """A fresh process, as a service starts (the SDK takes one tracer provider per process)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_tracing_is_off_unless_an_exporter_is_named():
    assert tracing.exporter_name({}) == "none"
    assert tracing.exporter_name({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) == "none"
    assert tracing.exporter_name({"OTEL_TRACES_EXPORTER": "gcp"}) == "gcp_trace"
    with pytest.raises(ValueError, match="'jaeger' is not one of none, console, otlp, gcp_trace"):
        tracing.exporter_name({"OTEL_TRACES_EXPORTER": "jaeger"})
    probe = run_python("from opentelemetry import trace\nfrom imageflow import tracing\n"
                       "print(tracing.configure('image-processor'), type(trace.get_tracer_provider()).__name__)\n"
                       "with tracing.span('render', job_id='j'):\n    print(tracing.trace_ids())", {})
    assert probe.stdout.split() == ["False", "ProxyTracerProvider", "None"], probe.stderr


def test_the_console_exporter_prints_each_span_with_its_service():
    code = ("from imageflow import tracing\nassert tracing.configure('image-processor')\n"
            "with tracing.span('render', job_id='job-9', image_id='img-1'):\n    pass\n")
    out = run_python(code, {"OTEL_TRACES_EXPORTER": "console"})
    assert out.returncode == 0, out.stderr
    span = json.loads(out.stdout)
    assert span["name"] == "render" and span["attributes"] == {"imageflow.job_id": "job-9", "imageflow.image_id": "img-1"}
    assert span["resource"]["attributes"]["service.name"] == "image-processor"
    assert span["resource"]["attributes"]["service.namespace"] == "imageflow"
    renamed = run_python(code, {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "processor-canary"})
    assert json.loads(renamed.stdout)["resource"]["attributes"]["service.name"] == "processor-canary"


def test_cloud_trace_gets_otlp_with_the_pods_credentials_and_the_project(monkeypatch):
    """What the gke overlay selects (gcp_trace): OTLP/HTTP to telemetry.googleapis.com, each
    request authorized with the credentials google.auth finds (Workload Identity on GKE; a
    token here), the spans filed under GCP_PROJECT. The endpoint is pointed at a local
    collector to see what would be sent."""
    import google.auth
    from google.oauth2.credentials import Credentials
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (Credentials(token="t0k3n"), "adc-project"))
    exporter, project = tracing.exporter_for("gcp_trace", {"GCP_PROJECT": "acme-images"})
    assert (exporter._endpoint, project) == (tracing.CLOUD_TRACE_ENDPOINT, "acme-images")
    with Collector() as collector:
        env = {"GCP_PROJECT": "acme-images", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint}
        exporter, project = tracing.exporter_for("gcp_trace", env)
        provider = TracerProvider(resource=tracing.make_resource("image-processor", env, project))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("test").start_as_current_span("render"):
            pass
        provider.shutdown()
        [span] = collector.snapshot()
    assert collector.authorizations == ["Bearer t0k3n"]
    assert span.name == "render" and span.resource["gcp.project_id"] == "acme-images"
    assert span.resource["service.name"] == "image-processor"
    with pytest.raises(ValueError, match="GCP_PROJECT"):
        monkeypatch.setattr(google.auth, "default", lambda scopes=None: (Credentials(token="t"), None))
        tracing.exporter_for("gcp_trace", {})


@pytest.fixture
def log_output():
    """JSON logs into a buffer, as on GKE (call it once the app has configured its logging)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()

    def configure():
        root.handlers = []
        logging_setup.configure("image-handler", env={"LOG_FORMAT": "json"})
        for handler in root.handlers:
            handler.setStream(stream)
        return stream
    yield configure
    root.handlers, root.level = saved


def json_lines(stream, text: str) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if text in line]


def test_requests_are_server_spans_continuing_the_callers_trace_and_logs_name_them(recorded_spans, log_output, tmp_path):
    from services.image_handler.app import create_app

    app = create_app({"data_dir": Path(tmp_path)})
    log_output = log_output()

    @app.get("/api/v1/jobs/<job_id>/probe")
    def probe(job_id):
        logging.getLogger("probe").info("looking at %s", job_id)
        return {"traceparent": logging_setup.current_traceparent()}

    client = app.test_client()
    answer = client.get("/api/v1/jobs/j-7/probe", headers={"traceparent": CALLER})
    assert client.get("/api/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/healthz").status_code == 200
    spans = {s.name: s for s in recorded_spans.get_finished_spans()}
    assert set(spans) == {"GET /api/v1/jobs/<job_id>/probe", "GET /api/v1/jobs/<job_id>"}, "no span for probes"
    server = spans["GET /api/v1/jobs/<job_id>/probe"]
    trace_id, span_id = hex_ids(server)
    assert (server.kind.name, trace_id, parent_id(server)) == ("SERVER", TRACE, CALLER_SPAN)
    assert answer.json["traceparent"].split("-")[1:3] == [TRACE, span_id], "what it publishes carries its span"
    [line] = json_lines(log_output, "looking at j-7")
    assert (line["logging.googleapis.com/trace"], line["logging.googleapis.com/spanId"]) == (TRACE, span_id)
    assert line["logging.googleapis.com/trace_sampled"] is True and line["job_id"] == "j-7"
    missing = spans["GET /api/v1/jobs/<job_id>"].attributes
    assert missing.get("http.response.status_code", missing.get("http.status_code")) == 404


class Delivered:
    def __init__(self, attributes):
        self.attributes = attributes


def test_a_batch_publishes_each_jobs_completion_in_that_jobs_trace(recorded_spans):
    """Results of two jobs folded together: one fold span (linked to both), and each
    job.completed a descendant of its own job's trace."""
    other_trace = "a" * 32
    first = Delivered({"job_id": "job-a", "traceparent": CALLER})
    second = Delivered({"job_id": "job-b", "traceparent": f"00-{other_trace}-{'b' * 16}-01"})
    with tracing.batch("fold results", [first, second]):
        for job in ("job-a", "job-b"):
            with tracing.publishing("imageflow-notifications", {"job_id": job}) as attributes:
                assert attributes["traceparent"]
    spans = recorded_spans.get_finished_spans()
    [fold] = [s for s in spans if s.name == "fold results"]
    publishes = {s.attributes["imageflow.job_id"]: s for s in spans if s.name.startswith("publish")}
    assert hex_ids(fold)[0] == other_trace and parent_id(fold) == "b" * 16, "a child of the last message"
    assert [trace.format_trace_id(link.context.trace_id) for link in fold.links] == [TRACE]
    assert hex_ids(publishes["job-b"])[0] == other_trace and parent_id(publishes["job-b"]) == hex_ids(fold)[1]
    assert (hex_ids(publishes["job-a"])[0], parent_id(publishes["job-a"])) == (TRACE, CALLER_SPAN)
    assert [trace.format_span_id(link.context.span_id) for link in publishes["job-a"].links] == [hex_ids(fold)[1]]


def test_with_tracing_off_a_batch_keeps_the_last_messages_trace(tracing_off):
    with tracing.batch("fold results", [Delivered({"job_id": "job-a", "traceparent": CALLER})]):
        assert tracing.inject({})["traceparent"] == CALLER
    assert tracing_off.get_finished_spans() == ()


def test_the_email_functions_span_continues_the_completion_publish(recorded_spans, tmp_path, monkeypatch):
    from functions.email_notifier import main as fn
    from functions.email_notifier import tracing as fn_tracing

    monkeypatch.setitem(fn_tracing._configured, "enabled", True)  # as OTEL_TRACES_EXPORTER would
    monkeypatch.setenv("IMAGEFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("IMAGEFLOW_BACKEND", raising=False)
    job = "ab" * 16
    payload = {"v": 1, "job_id": job, "status": "completed", "total": 1, "succeeded": 1, "failed": 0,
               "email": "user@example.com", "results_url": f"https://imageflow.example/jobs/{job}"}
    fn.notify(CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished",
                          "source": "//pubsub.googleapis.com/projects/p/topics/imageflow-notifications"},
                         {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(),
                                      "messageId": "7", "attributes": {"job_id": job, "traceparent": CALLER}}}))
    [span] = recorded_spans.get_finished_spans()
    assert (span.name, span.kind.name, hex_ids(span)[0], parent_id(span)) == (
        "notify job.completed", "CONSUMER", TRACE, CALLER_SPAN)
    assert span.attributes["imageflow.job_id"] == job and span.attributes["imageflow.email.outcome"] == "sent"
    assert span.attributes["messaging.destination.name"] == "imageflow-notifications"
    assert (tmp_path / "outbox" / f"{job}.eml").exists()
