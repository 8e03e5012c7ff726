"""Logging for every ImageFlow process, set up once.

``LOG_FORMAT=json`` (the k8s ConfigMap) writes one JSON object per line in the shape
Cloud Logging reads from a container's output: ``severity``, ``message``, the time, the
service, and ``job_id`` / ``image_id`` and the trace (``logging.googleapis.com/trace``)
when known, so one job's lines group together. The default, ``text``, stays readable by
eye for ./scripts.sh up and docker-compose.

Context comes from a record's ``extra={"job_id": ...}`` or, for everything logged while a
message is handled, from :func:`log_context`, which the bus subscribers open around each
callback with the message's ``job_id``; the trace is that of the span being worked in
(:mod:`imageflow.tracing`: a request's, a message's, a render's), the same id the spans are
exported with.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
from datetime import datetime, timezone
from typing import Iterator

from . import tracing

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("imageflow_log_context", default={})
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
CONTEXT_FIELDS = ("job_id", "image_id")


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, span id) of a W3C ``traceparent``, or None if absent or malformed."""
    match = _TRACEPARENT.match((value or "").strip().lower())
    return (match.group(1), match.group(2)) if match else None


@contextlib.contextmanager
def log_context(*, traceparent: str | None = None, **fields: str | None) -> Iterator[None]:
    """Attach ``job_id`` / ``image_id`` to every record logged inside, and make the trace of
    ``traceparent`` (if given) the current one: lines carry the trace id of the span being
    worked in (:mod:`imageflow.tracing`), so logs and traces agree."""
    context = {**_CONTEXT.get(), **{k: str(v) for k, v in fields.items() if v}}
    token = _CONTEXT.set(context)
    try:
        if traceparent and parse_traceparent(traceparent):
            with tracing.attached(tracing.extract({"traceparent": traceparent})):
                yield
        else:
            yield
    finally:
        _CONTEXT.reset(token)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span being worked in (a request's or message's), if any."""
    return tracing.inject().get("traceparent")


def with_trace(attributes: dict[str, str] | None) -> dict[str, str]:
    """Message attributes carrying on the current trace, so one job's lines share a trace id
    across the services (the bus adapters publish through :func:`imageflow.tracing.publishing`)."""
    return tracing.inject(attributes)


def _cloud_trace_to_traceparent(value: str | None) -> str | None:
    """``X-Cloud-Trace-Context: TRACE/SPAN;o=1`` (Google's load balancer) as a traceparent."""
    match = re.match(r"^([0-9a-f]{32})/(\d+)", (value or "").strip().lower())
    if not match:
        return None
    return f"00-{match.group(1)}-{int(match.group(2)) % 2**64:016x}-01"


def install_request_context(app) -> None:
    """Every line logged while a Flask request is served carries its trace and the ``job_id`` /
    ``image_id`` of its URL; messages it publishes carry the trace on. With tracing on, the
    trace is the request's server span (:func:`imageflow.tracing.instrument_flask`, which
    continues a ``traceparent`` header); with it off, the caller's ``traceparent`` or the load
    balancer's ``X-Cloud-Trace-Context`` is passed on as it came."""
    from flask import g, request

    @app.before_request
    def _open_log_context():
        args = request.view_args or {}
        traceparent = None
        if not tracing.enabled():
            traceparent = request.headers.get("traceparent") or \
                _cloud_trace_to_traceparent(request.headers.get("X-Cloud-Trace-Context"))
        g.imageflow_log_context = log_context(job_id=args.get("job_id"), image_id=args.get("image_id"),
                                              traceparent=traceparent)
        g.imageflow_log_context.__enter__()

    @app.teardown_request
    def _close_log_context(_exc):
        context = g.pop("imageflow_log_context", None)
        if context is not None:
            context.__exit__(None, None, None)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        ids = tracing.trace_ids()  # the span's own ids, the same that are exported
        if ids and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id, record.trace_sampled = ids
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with Cloud Logging's special fields."""

    def __init__(self, service: str, project: str = ""):
        super().__init__()
        self.service = service
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry = {
            "severity": "WARNING" if record.levelname == "WARN" else record.levelname,
            "message": message,
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
            "serviceContext": {"service": self.service},
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            entry["logging.googleapis.com/trace"] = (
                f"projects/{self.project}/traces/{trace_id}" if self.project else trace_id)
            entry["logging.googleapis.com/spanId"] = getattr(record, "span_id", "")
            # sampled: Cloud Logging links the line to its span in Cloud Trace
            entry["logging.googleapis.com/trace_sampled"] = bool(getattr(record, "trace_sampled", False))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The readable local format, with the job and image when known."""

    def __init__(self, service: str):
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if getattr(record, key, None))
        return f"{line} [{tags}]" if tags else line


def configure(service: str, level: int = logging.INFO, env: dict | None = None) -> None:
    """Route the root logger to stderr in LOG_FORMAT (json or text) for ``service``."""
    env = os.environ if env is None else env
    fmt = (env.get("LOG_FORMAT") or "text").strip().lower()
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service, env.get("GCP_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or ""))
    else:
        handler.setFormatter(TextFormatter(service))
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_imageflow", False)]:
        root.removeHandler(old)
    handler._imageflow = True  # (replaced, not stacked, if configured twice)
    if not root.handlers or all(getattr(h, "_imageflow", False) for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(level)
