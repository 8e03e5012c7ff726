"""What every long-running service shares: logging, the health/metrics HTTP app, running
until SIGTERM. Written once here so services stay thin."""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable

from flask import Flask, Response, jsonify
from werkzeug.serving import make_server

from .metrics import render_latest

log = logging.getLogger(__name__)


def configure_logging(service: str, level: int = logging.INFO) -> None:
    from .logging_setup import configure  # JSON for Cloud Logging, or the readable text format
    configure(service, level)


def readiness(checks: dict[str, Callable[[], None]]) -> tuple[dict, int]:
    """Run each backend check; the JSON body and 200, or 503 naming what failed."""
    failed = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # any failure means not ready; say which
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
    if failed:
        return {"status": "unavailable", "failed": failed}, 503
    return {"status": "ready", "checks": sorted(checks)}, 200


def health_app(name: str, checks: dict[str, Callable[[], None]], alive: Callable[[], bool] = lambda: True) -> Flask:
    """A Flask app with only the health routes (the worker services' HTTP side)."""
    return register_health(Flask(name), name, checks, alive)


def register_health(app: Flask, name: str, checks: dict[str, Callable[[], None]],
                    alive: Callable[[], bool] = lambda: True) -> Flask:
    """/healthz (process alive and its consumers running), /readyz (backends reachable) and
    /metrics on ``app``: the same three routes on every service."""

    @app.get("/healthz")
    def healthz():
        if not alive():
            return jsonify(status="unhealthy", service=name), 503
        return jsonify(status="ok", service=name)

    @app.get("/readyz")
    def readyz():
        body, status = readiness(checks)
        return jsonify(service=name, **body), status

    @app.get("/metrics")
    def metrics():
        body, content_type = render_latest()
        return Response(body, content_type=content_type)

    return app


class HttpServer:
    """A threaded WSGI server on its own thread (health and metrics beside a worker loop)."""

    def __init__(self, app: Flask, host: str, port: int):
        self._server = make_server(host, port, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> "HttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()


def wait_for_signal(stop: threading.Event | None = None, tick: Callable[[], None] | None = None,
                    tick_seconds: float = 30.0) -> str:
    """Block until SIGTERM or SIGINT (or ``stop`` is set); run ``tick`` periodically meanwhile."""
    stop = stop or threading.Event()
    received = {"name": "stop"}

    def handler(signum, _frame):
        received["name"] = signal.Signals(signum).name
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    next_tick = time.monotonic() + tick_seconds
    while not stop.wait(0.5):
        if tick and time.monotonic() >= next_tick:
            try:
                tick()
            except Exception:
                log.exception("periodic task failed")
            next_tick = time.monotonic() + tick_seconds
    return received["name"]
