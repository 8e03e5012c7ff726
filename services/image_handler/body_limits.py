"""Every request body on every route is bounded before a byte of it is read.

A multipart upload may carry up to MAX_REQUEST_BYTES, a direct upload's PUT (one file, whose link
names its size) up to MAX_UPLOAD_BYTES, any other body (JSON, PATCH, ...) up to MAX_JSON_BYTES. The limit is enforced on the WSGI input stream itself, so a chunked body (no
Content-Length) is refused with 413 as soon as it passes the limit; Werkzeug's own
``max_content_length`` would instead hand the view a body silently cut at the limit. A body
that declares more than the limit is refused before it is read. Encoded bodies
(Content-Encoding) are refused rather than decompressed: a small gzip body can expand without
bound.
"""
from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from imageflow.settings import Settings

from .errors import Refused, RefusalCode

READ_CHUNK = 64 * 1024
LIMIT_KEY = "imageflow.body_limit"


class TooLarge(RequestEntityTooLarge):
    """413 carrying the limit that was passed (for the error message)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit


class BoundedInput:
    """A WSGI input stream that raises TooLarge once more than ``limit`` bytes have been read.
    A read without a size is done in bounded pieces (the server's stream would read it all)."""

    def __init__(self, stream, limit: int):
        self._stream, self.limit, self.read_bytes = stream, limit, 0

    def _count(self, data: bytes) -> bytes:
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise TooLarge(self.limit)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._count(self._stream.read(min(size, self.limit + 1 - self.read_bytes)) if size else b"")
        parts = []
        while chunk := self.read(READ_CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        room = self.limit + 1 - self.read_bytes
        return self._count(self._stream.readline(room if size is None or size < 0 else min(size, room)))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close:
            close()


# Routes whose body is one file rather than a form or JSON: the local direct upload's PUT (the view
# then reads exactly the size its signed link names).
FILE_BODY_ENDPOINTS = {"uploads.direct_upload"}


def body_limit(settings: Settings, content_type: str, endpoint: str | None = None) -> int:
    if endpoint in FILE_BODY_ENDPOINTS:
        return settings.max_upload_bytes
    return settings.max_request_bytes if content_type.lower().startswith("multipart/") else settings.max_json_bytes


def _endpoint(app: Flask, environ) -> str | None:
    try:
        return app.url_map.bind_to_environ(environ).match()[0]
    except HTTPException:  # no such route (404/405, a redirect): the view never reads the body
        return None


def install(app: Flask, settings: Settings) -> None:
    """Bound every request's body (see the module docstring)."""
    app.config["MAX_CONTENT_LENGTH"] = None  # the bound is BoundedInput's (Werkzeug's would truncate silently)
    inner = app.wsgi_app

    def bounded(environ, start_response):
        limit = body_limit(settings, environ.get("CONTENT_TYPE", ""), _endpoint(app, environ))
        environ[LIMIT_KEY] = limit
        environ["wsgi.input"] = BoundedInput(environ["wsgi.input"], limit)
        return inner(environ, start_response)

    app.wsgi_app = bounded

    @app.before_request
    def refuse_before_reading():
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise Refused(RefusalCode.UNSUPPORTED_CONTENT_ENCODING,
                          f"request bodies are not accepted with Content-Encoding {encoding[:40]!r}; send them "
                          "uncompressed")
        limit = request.environ.get(LIMIT_KEY)
        if limit is not None and (request.content_length or 0) > limit:
            raise TooLarge(limit)


def describe_limit(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{max(1, limit // 1024)} KB"
