"""The one error a request can end in: a ``ClientError`` is answered with its status and the
contract's JSON body ``{"error": {"code", "message", "details"}}`` by the app-level handler."""
from __future__ import annotations

from flask import jsonify


class ClientError(Exception):
    """What the caller sent cannot be done: ``status`` is the HTTP status (4xx, or 503 when a
    backend refused and nothing was kept), ``code`` a stable name clients can branch on."""

    def __init__(self, status: int, code: str, message: str, details=None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


MAX_DETAILS = 20


def error_response(status: int, code: str, message: str, details=None):
    """The error body; a list of ``details`` is cut to its first MAX_DETAILS entries and the number left
    out is given in ``details_omitted`` (an answer stays small whatever the request held)."""
    error = {"code": code, "message": message, "details": details}
    if isinstance(details, list) and len(details) > MAX_DETAILS:
        error.update(details=details[:MAX_DETAILS], details_omitted=len(details) - MAX_DETAILS)
    return jsonify({"error": error}), status


def client_error_response(exc: ClientError):
    response, status = error_response(exc.status, exc.code, exc.message, exc.details)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="imageflow"'
    elif status in (429, 503) and isinstance(exc.details, dict) and exc.details.get("retry_after_seconds"):
        response.headers["Retry-After"] = str(exc.details["retry_after_seconds"])
    elif status == 429 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = "30"
    return response, status
