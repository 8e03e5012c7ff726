"""Traces for the email function, made as the services make theirs (imageflow/tracing.py has
the whole story; the function is deployed on its own, so it carries these few lines).

Off unless ``OTEL_TRACES_EXPORTER`` is ``console``, ``otlp`` or ``gcp_trace`` (Cloud Trace
for ``GCP_PROJECT``: OTLP/HTTP to telemetry.googleapis.com with the function's credentials);
the standard ``OTEL_*`` variables apply. Each ``job.completed`` handled is a
consumer span continuing the W3C ``traceparent`` the interaction manager put in the message's
attributes, so the email is the last span of its job's trace.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

SERVICE = "email-function"
_lock = threading.Lock()
_configured: dict[str, bool] = {}


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Set up the SDK once per process (on first use: functions-framework may fork after import)."""
    env = os.environ if env is None else env
    with _lock:
        if "enabled" in _configured:
            return _configured["enabled"]
        name = (env.get("OTEL_TRACES_EXPORTER") or "none").strip().lower()
        name = {"gcp": "gcp_trace"}.get(name, name)
        if name in ("", "none") or (env.get("OTEL_SDK_DISABLED") or "").lower() == "true":
            _configured["enabled"] = False
            return False
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or SERVICE, SERVICE_NAMESPACE: "imageflow"}
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()
        elif name == "gcp_trace":
            import google.auth
            from google.auth.transport.requests import AuthorizedSession
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            attributes["gcp.project_id"] = env.get("GCP_PROJECT") or project or ""
            exporter = OTLPSpanExporter(endpoint=env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                                        or "https://telemetry.googleapis.com/v1/traces",
                                        session=AuthorizedSession(credentials))
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not one of none, console, otlp, gcp_trace")
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _configured["enabled"] = True
        return True


def _get(cloud_event, key: str):
    try:
        return cloud_event[key]
    except (KeyError, TypeError):
        return None


@contextlib.contextmanager
def handling(cloud_event) -> Iterator[trace.Span]:
    """The span of one Pub/Sub CloudEvent, a child of the publish that sent it."""
    data = cloud_event.data if isinstance(getattr(cloud_event, "data", None), dict) else {}
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    attributes = message.get("attributes") if isinstance(message.get("attributes"), dict) else {}
    # the topic: in the event's source on GCP (//pubsub.googleapis.com/projects/P/topics/T)
    source = str(_get(cloud_event, "source") or "")
    topic = source.rsplit("/topics/", 1)[-1] if "/topics/" in source else os.environ.get("NOTIFICATIONS_TOPIC", "")
    token = otel_context.attach(propagate.extract({str(k): str(v) for k, v in attributes.items()}))
    try:
        if not configure():
            yield trace.get_current_span()
            return
        with trace.get_tracer("imageflow.email").start_as_current_span(
                "notify job.completed", kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "gcp_pubsub", "messaging.operation.name": "process",
                            "messaging.destination.name": topic or "imageflow-notifications",
                            "messaging.message.id": str(message.get("messageId") or ""),
                            "imageflow.job_id": str(attributes.get("job_id") or "")}) as span:
            yield span
    finally:
        otel_context.detach(token)
