"""OpenTelemetry traces of a job across the services, off unless asked for.

One job is one trace: the API request that created it, each message published and handled
on the bus (the W3C ``traceparent`` rides in the message attributes), each render, and
the email function. Chosen with the standard variables:

- ``OTEL_TRACES_EXPORTER``: ``none`` (the default here: no SDK is set up, no span is made,
  nothing is exported; a request's or message's ``traceparent`` is still passed on, so log
  lines keep their trace), ``console`` (spans as JSON on stdout), ``otlp`` (OTLP/HTTP
  protobuf to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``: a
  collector, Jaeger) or ``gcp_trace`` (Cloud Trace, project ``GCP_PROJECT``; the gke
  overlay sets it). Cloud Trace is reached as Google recommends since its own exporter was
  deprecated: OTLP/HTTP to ``telemetry.googleapis.com`` with the pod's credentials
  (Workload Identity; the role ``roles/cloudtrace.agent``), the project in the
  ``gcp.project_id`` resource attribute.
- ``OTEL_SERVICE_NAME`` (default: the deployable's name), ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*``, ``OTEL_SDK_DISABLED``:
  read by the SDK as documented upstream.

Every service calls :func:`configure` once at start; the bus adapters wrap their publishes
in :func:`publishing` and their subscriber callbacks in :func:`consuming`.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from typing import Iterable, Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

log = logging.getLogger(__name__)

EXPORTERS = ("none", "console", "otlp", "gcp_trace")
TRACER_NAME = "imageflow"
MESSAGING_SYSTEM = "gcp_pubsub"  # the local bus has Pub/Sub's semantics; the names are the same
_state = {"enabled": False}
# job_id -> the context of the message of that job a batch handler is working on (see batch())
_JOB_PARENTS: contextvars.ContextVar[dict[str, otel_context.Context]] = contextvars.ContextVar(
    "imageflow_job_parents", default={})


def exporter_name(env: Mapping[str, str] | None = None) -> str:
    """The exporter ``OTEL_TRACES_EXPORTER`` asks for (``none`` when unset); ValueError names a
    value this project does not know."""
    env = os.environ if env is None else env
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return "none"
    name = (env.get("OTEL_TRACES_EXPORTER") or "none").strip().lower()
    name = {"gcp": "gcp_trace"}.get(name, name)
    if name not in EXPORTERS:
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not one of {', '.join(EXPORTERS)}")
    return name


def enabled() -> bool:
    """Whether this process records spans (an exporter was configured)."""
    return _state["enabled"]


def configure(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Set up tracing for ``service`` (``image-handler``, ...) from the environment, once per
    process; returns whether spans are recorded. With no exporter it does nothing at all."""
    env = os.environ if env is None else env
    name = exporter_name(env)
    if _state["enabled"] or name == "none":
        return _state["enabled"]
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter, project = exporter_for(name, env)
    resource = make_resource(service, env, project)
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER (parent-based by default)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # flushed at exit (the provider's atexit hook)
    _state["enabled"] = True
    log.info("tracing on: %s exporter, service.name=%s", name, resource.attributes.get("service.name"))
    return True


def make_resource(service: str, env: Mapping[str, str], project: str | None = None):
    """service.name (OTEL_SERVICE_NAME, or the deployable's name), service.namespace, what
    OTEL_RESOURCE_ATTRIBUTES adds, and the project Cloud Trace files the spans under."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, Resource
    attributes = {SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service, SERVICE_NAMESPACE: "imageflow"}
    if project:
        attributes["gcp.project_id"] = project
    return Resource.create(attributes)


CLOUD_TRACE_ENDPOINT = "https://telemetry.googleapis.com/v1/traces"


def exporter_for(name: str, env: Mapping[str, str]):
    """(span exporter, GCP project or None) for an exporter name other than ``none``."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter(), None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    if name == "otlp":  # endpoint, headers and timeout from the standard OTEL_EXPORTER_OTLP_* variables
        return OTLPSpanExporter(), None
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, default_project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    project = env.get("GCP_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or default_project
    if not project:
        raise ValueError("OTEL_TRACES_EXPORTER=gcp_trace needs GCP_PROJECT (the project Cloud Trace files spans in)")
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or CLOUD_TRACE_ENDPOINT
    return OTLPSpanExporter(endpoint=endpoint, session=AuthorizedSession(credentials)), project


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def instrument_flask(app) -> None:
    """A server span per HTTP request of ``app`` (its route as the name), continuing the
    caller's ``traceparent``; the probes and /metrics make none."""
    if not enabled():
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    FlaskInstrumentor.instrument_app(app, excluded_urls=os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS")
                                     or "/healthz,/readyz,/metrics,/assets/")


# -- the context in messages ------------------------------------------------------------------
def inject(attributes: Mapping[str, str] | None = None) -> dict[str, str]:
    """``attributes`` plus the current trace (W3C ``traceparent``, and ``tracestate`` if any);
    a ``traceparent`` already there is kept."""
    attributes = dict(attributes or {})
    if "traceparent" not in attributes:
        propagate.inject(attributes)
    return attributes


def extract(attributes: Mapping[str, str] | None) -> otel_context.Context:
    """The context a message's (or request's) ``traceparent`` carries (empty if none)."""
    return propagate.extract(dict(attributes or {}))


def trace_ids() -> tuple[str, str, bool] | None:
    """(trace id, span id in hex, exported) of the span being worked in (a remote one when
    tracing is off), or None: what the log lines carry."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return (trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id),
            context.trace_flags.sampled and enabled())


@contextlib.contextmanager
def attached(context: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def _job_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    return {f"imageflow.{key}": attributes[key] for key in ("job_id", "image_id") if attributes.get(key)}


@contextlib.contextmanager
def publishing(topic: str, attributes: Mapping[str, str] | None) -> Iterator[dict[str, str]]:
    """A producer span for one publish to ``topic``; yields the attributes to publish, which
    carry it. The publish of a job handled in a :func:`batch` joins that job's trace."""
    attributes = dict(attributes or {})
    if not enabled():
        yield inject(attributes)
        return
    parent, links = None, []
    job_parent = _JOB_PARENTS.get().get(attributes.get("job_id", ""))
    if job_parent is not None:
        here = trace.get_current_span().get_span_context()
        if trace.get_current_span(job_parent).get_span_context().trace_id != here.trace_id:
            parent, links = job_parent, [trace.Link(here)] if here.is_valid else []
    with tracer().start_as_current_span(
            f"publish {topic}", context=parent, kind=trace.SpanKind.PRODUCER, links=links,
            attributes={"messaging.system": MESSAGING_SYSTEM, "messaging.operation.name": "publish",
                        "messaging.destination.name": topic, **_job_attributes(attributes)}):
        yield inject(attributes)


@contextlib.contextmanager
def consuming(subscription: str, attributes: Mapping[str, str] | None, message_id: str = "",
              delivery_attempt: int = 1) -> Iterator[None]:
    """A consumer span for handling one message of ``subscription``, a child of the publish
    that sent it; with tracing off, the message's trace is only made current (for the logs
    and the next publish)."""
    attributes = dict(attributes or {})
    with attached(extract(attributes)):
        if not enabled():
            yield
            return
        with tracer().start_as_current_span(
                f"process {subscription}", kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": MESSAGING_SYSTEM, "messaging.operation.name": "process",
                            "messaging.destination.subscription.name": subscription,
                            "messaging.message.id": message_id,
                            "messaging.gcp_pubsub.message.delivery_attempt": delivery_attempt,
                            **_job_attributes(attributes)}):
            yield


def annotate(**fields) -> None:
    """Name the job or image (``job_id=``, ``image_id=``) on the span being worked in, once a
    handler has decoded its message."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({f"imageflow.{k}": str(v) for k, v in fields.items() if v})


@contextlib.contextmanager
def span(name: str, **fields) -> Iterator[None]:
    """An internal span (e.g. ``render``) with the job and image named; nothing when off."""
    if not enabled():
        yield
        return
    with tracer().start_as_current_span(name, attributes={f"imageflow.{k}": str(v) for k, v in fields.items() if v}):
        yield


@contextlib.contextmanager
def batch(name: str, messages: Iterable) -> Iterator[None]:
    """One span for work done once for many messages (the results folded in one write): a
    child of the last message's publish, linked to the others; what it publishes for a job
    joins that job's trace (see :func:`publishing`)."""
    messages = list(messages)
    contexts = [(m.attributes or {}, extract(m.attributes)) for m in messages]
    parents = {attrs["job_id"]: ctx for attrs, ctx in contexts if attrs.get("job_id")}
    token = _JOB_PARENTS.set(parents)
    try:
        if not contexts:
            yield
            return
        last = contexts[-1][1]
        if not enabled():
            with attached(last):
                yield
            return
        seen, links = set(), []
        for _, ctx in contexts[:-1]:
            linked = trace.get_current_span(ctx).get_span_context()
            if linked.is_valid and (linked.trace_id, linked.span_id) not in seen:
                seen.add((linked.trace_id, linked.span_id))
                links.append(trace.Link(linked))
        with tracer().start_as_current_span(name, context=last, links=links,
                                            attributes={"imageflow.messages": len(messages)}):
            yield
    finally:
        _JOB_PARENTS.reset(token)
