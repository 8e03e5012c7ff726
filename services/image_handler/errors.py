"""The one error a request can end in: a ``ClientError`` is answered with its status and the
contract's JSON body ``{"error": {"code", "message", "details"}}`` by the app-level handler. A
use case's refusals (``Refused``) get their status from one table, ``REFUSALS``."""
from __future__ import annotations

from flask import jsonify


class ClientError(Exception):
    """What the caller sent cannot be done: ``status`` is the HTTP status (4xx, or 503 when a
    backend refused and nothing was kept), ``code`` a stable name clients can branch on."""

    def __init__(self, status: int, code: str, message: str, details=None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


# Every refusal the use cases (intake, lifecycle, upload_targets) raise, and its HTTP status: the
# one table. A use case names what it refuses; it does not pick a status. (Two refusals of intake
# keep a ClientError: their status says which of two things was wrong, 413 too large or 415 not
# an image: no_valid_images and invalid_overlay.)
REFUSALS = {
    "malformed_request": 400,       # the request's shape (a list, a field's type)
    "no_files": 400,
    "no_valid_urls": 400,           # none of a URL job's URLs can be imported
    "invalid_email": 400,
    "invalid_webhook_secret": 400,
    "invalid_operations": 422,      # the schema's problems, each named in the details
    "job_closed": 409,              # the job takes no more files
    "job_finished": 409,            # already finished: nothing to cancel
    "job_active": 409,              # not finished yet: nothing to retry, re-run or delete
    "nothing_to_retry": 409,        # no failed, dead-lettered or skipped image
    "nothing_to_rerun": 409,        # no image of the kind asked for
    "originals_deleted": 410,       # INPUT_RETENTION_HOURS deleted the originals a retry or re-run needs
    "too_many_files": 413,          # past MAX_FILES_PER_JOB
    "too_many_urls": 413,           # past MAX_URLS_PER_JOB
    "unavailable": 503,             # a backend refused and nothing was kept: try again
}


class Refused(ClientError):
    """A use case refuses what was asked: ``code`` is one of REFUSALS, which gives the HTTP status."""

    def __init__(self, code: str, message: str, details=None):
        super().__init__(REFUSALS[code], code, message, details)


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
