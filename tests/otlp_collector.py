"""A tiny OTLP/HTTP trace collector on 127.0.0.1 for the tests: what a real collector (or
Jaeger) receives from the services' exporters, decoded from the protobuf the SDK sends."""
from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class Span:
    resource: dict = field(hash=False)
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict = field(hash=False)
    links: tuple = ()  # (trace id, span id)


def _value(any_value):
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


class Collector:
    """``endpoint`` for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; ``spans`` as they arrive."""

    def __init__(self):
        self.spans: list[Span] = []
        self.requests = 0
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                collector._add(request, self.headers.get("Authorization"))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}/v1/traces"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _add(self, request: ExportTraceServiceRequest, authorization: str | None) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    found.append(Span(
                        resource=resource, service=resource.get("service.name", ""), name=s.name, kind=KINDS.get(s.kind, str(s.kind)),
                        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links)))
        with self._lock:
            self.requests += 1
            self.authorizations.append(authorization)
            self.spans.extend(found)

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, predicate, timeout: float = 30.0) -> list[Span]:
        """The spans once ``predicate(spans)`` holds; AssertionError after ``timeout`` s."""
        end = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if predicate(spans):
                return spans
            if time.monotonic() > end:
                raise AssertionError(f"collector: condition not met after {timeout}s; got "
                                     f"{sorted({(s.service, s.name) for s in spans})}")
            time.sleep(0.2)

    def __enter__(self) -> "Collector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
