"""image-handler service: ``create_app()`` served by gunicorn.

    gunicorn 'services.image_handler.app:create_app()' -b 127.0.0.1:8080
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Request, Response, g, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from imageflow import tracing
from imageflow.bootstrap import Backends, make_backends
from imageflow.logging_setup import install_request_context
from imageflow.metrics import HTTP_LATENCY, HTTP_REQUESTS
from imageflow.runtime import configure_logging, register_health
from imageflow.safe_http import FetchError, FetchPolicy
from imageflow.settings import Settings
from services.image_handler.auth import Auth
from services.image_handler.estimate import Estimator
from services.image_handler.ratelimit import RateLimiter, client_address

from . import body_limits, routes
from .errors import ClientError, Refused, RefusalCode, client_error_response, error_response, refusal_response

log = logging.getLogger("image_handler")

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class HandlerContext:
    settings: Settings
    backends: Backends
    auth: Auth | None = None
    estimator: Estimator | None = None   # estimates: their bound and render workers

    def __post_init__(self):
        self.auth = self.auth or Auth.from_settings(self.settings)
        self.estimator = self.estimator or Estimator(self.settings)
        # the address rules of webhook delivery (services.interaction_manager.webhooks), incl. its allowances
        self.webhook_policy = FetchPolicy.from_settings(self.settings)

    def validate_webhook(self, url: str) -> str:
        """A webhook must be an absolute http(s) URL, and not name an address its delivery would
        refuse (private, loopback, link-local, metadata): refused now rather than at every
        delivery. A host name is checked again (resolved) at each delivery."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
            raise Refused(RefusalCode.INVALID_WEBHOOK_URL, "webhook_url must be an absolute http(s) URL")
        try:
            self.webhook_policy.check_without_lookup(url.strip())
        except FetchError as exc:
            raise Refused(RefusalCode.INVALID_WEBHOOK_URL, f"webhook_url: {exc.reason}; webhooks are delivered to "
                          "public addresses only", [{"field": "webhook_url"}]) from None
        return url.strip()


class _Request(Request):
    """Counts the file parts as werkzeug parses them, so a 413 can name the limit it hit."""

    file_parts = 0

    def _get_file_stream(self, *args, **kwargs):
        self.file_parts += 1
        return super()._get_file_stream(*args, **kwargs)


class _JSONProvider(DefaultJSONProvider):
    """Deeply nested JSON makes json.loads raise RecursionError; make it the ValueError that
    request.get_json() turns into a 400 like any other malformed body."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


def create_app(test_config: dict | None = None, backends: Backends | None = None) -> Flask:
    """Build the app: settings from the environment (``test_config`` overrides fields)."""
    configure_logging("image-handler")
    tracing.configure("image-handler")  # off unless OTEL_TRACES_EXPORTER names an exporter
    settings = Settings.from_env()
    if test_config:
        settings = settings.with_overrides(**test_config)
    backends = backends or make_backends(settings)
    app = Flask(__name__, static_folder=None)
    app.request_class = _Request
    if settings.forwarded_proto_hops:  # behind a TLS-terminating proxy: links keep https://
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=settings.forwarded_proto_hops, x_host=0)
    tracing.instrument_flask(app)  # a span per request, first, so every hook runs inside it
    install_request_context(app)  # log lines name the request's trace and job
    app.json = _JSONProvider(app)
    app.config["MAX_FORM_MEMORY_SIZE"] = 1024 * 1024
    app.config["MAX_FORM_PARTS"] = settings.max_files_per_job + 50
    app.json.sort_keys = False
    app.extensions["imageflow"] = HandlerContext(settings, backends)
    if not app.extensions["imageflow"].auth.enabled and settings.backend == "gcp":
        log.warning("API_KEYS is empty: the API is open to anyone who can reach it")
    routes.register(app)
    register_health(app, "image-handler", backends.checks())
    body_limits.install(app, settings)
    _register_errors(app, settings)
    _register_metrics(app)
    _register_rate_limit(app, settings)
    _register_frontend(app, settings)
    _register_security_headers(app)
    return app


PICTURES = ("/input", "/output", "/input/preview", "/output/preview")  # an image's bytes, not the API


def _register_rate_limit(app: Flask, settings: Settings) -> None:
    """429 for a client past RATE_LIMIT_PER_SECOND (bursts of RATE_LIMIT_BURST) on the API; the
    image downloads and previews are exempt (a results page loads hundreds at once, more as it
    is scrolled; on GCS they are redirects)."""
    if settings.rate_limit_per_second <= 0:
        return
    limiter = RateLimiter(settings.rate_limit_per_second, max(1, settings.rate_limit_burst))

    @app.before_request
    def rate_limit():
        if not request.path.startswith("/api/") or (request.method == "GET" and request.path.endswith(PICTURES)):
            return None
        wait = limiter.acquire(client_address(request.remote_addr, request.headers, settings.rate_limit_proxy_hops))
        if not wait:
            return None
        retry = max(1, math.ceil(wait))
        response, status = refusal_response(RefusalCode.RATE_LIMITED, f"too many requests: at most "
                                            f"{settings.rate_limit_per_second:g} per second (bursts of "
                                            f"{settings.rate_limit_burst}); retry in {retry} s",
                                            {"retry_after_seconds": retry})
        response.headers["Retry-After"] = str(retry)
        return response, status


def _register_errors(app: Flask, settings: Settings) -> None:
    app.register_error_handler(ClientError, client_error_response)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        """Werkzeug raises the same error for each of its limits: name the one this request hit."""
        limit = getattr(exc, "limit", None) or request.environ.get(body_limits.LIMIT_KEY)
        length = request.content_length
        if (limit and limit != settings.max_request_bytes) and (length is None or length > limit):
            return refusal_response(RefusalCode.REQUEST_TOO_LARGE, f"the request is larger than the "
                                    f"{body_limits.describe_limit(limit)} limit of this kind of request")
        if length is None or length > settings.max_request_bytes:
            return refusal_response(RefusalCode.REQUEST_TOO_LARGE, f"the request is larger than the "
                                    f"{settings.max_request_bytes // (1024 * 1024)} MB limit (MAX_REQUEST_BYTES): "
                                    "send the files in several requests into an open job")
        if getattr(request, "file_parts", 0) > settings.max_files_per_job:
            return refusal_response(RefusalCode.TOO_MANY_FILES, f"too many files in one request: at most "
                                    f"{settings.max_files_per_job} (MAX_FILES_PER_JOB)")
        return refusal_response(RefusalCode.FORM_TOO_LARGE, f"a form field is larger than "
                                f"{app.config['MAX_FORM_MEMORY_SIZE'] // 1024} KB, or the form has more than "
                                f"{app.config['MAX_FORM_PARTS']} parts")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return refusal_response(RefusalCode.INTERNAL_ERROR, "something went wrong on our side; the request was not applied")


def _register_metrics(app: Flask) -> None:
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def record(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        if "started" in g:
            HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - g.started)
        return response


# The page's policy: the same as frontend/nginx/security-headers.conf (a test keeps them equal).
# img-src allows https: for signed Cloud Storage URLs of the pictures.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https:; "
            "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
# Everything else (JSON, an uploaded original, an output): nothing in it runs, even opened directly.
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


def _register_security_headers(app: Flask) -> None:
    """On every response, whichever path reached the image-handler (on GKE /api/ bypasses
    nginx): a served file is never sniffed into HTML, and nothing is framed."""
    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Content-Security-Policy", PAGE_CSP if response.mimetype == "text/html" else API_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        return response


def _register_frontend(app: Flask, settings: Settings) -> None:
    """Serve the built React app at / and its client-side routes (/jobs/<id>)."""
    dist = settings.frontend_dir or REPO_ROOT / "frontend" / "dist"

    def index():
        if not (dist / "index.html").is_file():
            return Response("<!doctype html><title>ImageFlow</title><h1>ImageFlow</h1><p>The web page is not "
                            "built (run <code>./scripts.sh up</code>). The API is at <a href='/api/v1/operations'>"
                            "/api/v1/operations</a>.</p>", mimetype="text/html")
        response = send_from_directory(dist, "index.html", max_age=0)
        response.headers["Cache-Control"] = "no-cache"
        return response

    app.add_url_rule("/", "index", index)
    app.add_url_rule("/jobs/<job_id>", "job_page", lambda job_id: index())
    app.add_url_rule("/jobs", "jobs_page", index)  # "Your jobs"

    @app.get("/assets/<path:name>")
    def assets(name: str):
        return send_from_directory(dist / "assets", name, max_age=31536000)

    @app.get("/<name>")
    def top_level_file(name: str):
        if "." not in name or not (dist / name).is_file():
            return refusal_response(RefusalCode.NOT_FOUND, f"no such page: /{name[:64]}")
        return send_from_directory(dist, name, max_age=3600)
