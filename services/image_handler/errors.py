"""The one error a request can end in: a ``ClientError`` is answered with its status and the
contract's JSON body ``{"error": {"code", "message", "details"}}`` by the app-level handler.
Every code is a ``RefusalCode``; a refusal (``Refused``) gets its status from one table, ``STATUS``."""
from __future__ import annotations

from enum import StrEnum

from flask import jsonify

from imageflow.domain import ErrorCode


class ClientError(Exception):
    """What the caller sent cannot be done: ``status`` is the HTTP status (4xx, or 503 when a
    backend refused and nothing was kept), ``code`` a stable name clients can branch on."""

    def __init__(self, status: int, code: str, message: str, details=None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class RefusalCode(StrEnum):
    """Every ``error.code`` of an error answer (and ``rejected[].error.code`` of a file or URL
    refused alone): the one list. A ``str``, so the JSON carries these plain strings. The codes an
    image's outcome shares (too_large, file_too_large, quota_exceeded) are domain.ErrorCode's."""

    MALFORMED_REQUEST = "malformed_request"     # the request's shape (a list, a field's type)
    MALFORMED_OPERATIONS = "malformed_operations"
    INVALID_JSON = "invalid_json"
    UNKNOWN_FIELD = "unknown_field"
    NO_FILES = "no_files"
    NO_VALID_URLS = "no_valid_urls"             # none of a URL job's URLs can be imported
    ESTIMATE_NEEDS_FILES = "estimate_needs_files"
    INVALID_EMAIL = "invalid_email"
    INVALID_WEBHOOK_SECRET = "invalid_webhook_secret"
    INVALID_WEBHOOK_URL = "invalid_webhook_url"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_LIMIT = "invalid_limit"
    INVALID_NAME = "invalid_name"
    INVALID_ONLY = "invalid_only"
    INVALID_STATUS = "invalid_status"
    INVALID_PRESET_NAME = "invalid_preset_name"
    WRONG_SIZE = "wrong_size"
    INVALID_CONTENT_RANGE = "invalid_content_range"  # a resumable upload's chunk header
    API_KEY_REQUIRED = "api_key_required"
    INVALID_API_KEY = "invalid_api_key"
    INVALID_LINK = "invalid_link"
    INVALID_UPLOAD_LINK = "invalid_upload_link"
    NOT_FOUND = "not_found"
    JOB_NOT_FOUND = "job_not_found"
    IMAGE_NOT_FOUND = "image_not_found"
    BLOB_NOT_FOUND = "blob_not_found"
    PRESET_NOT_FOUND = "preset_not_found"
    VARIANT_NOT_FOUND = "variant_not_found"
    IMAGE_FAILED = "image_failed"
    INPUT_NOT_READY = "input_not_ready"
    OUTPUT_NOT_READY = "output_not_ready"
    PREVIEW_NOT_READY = "preview_not_ready"
    NO_OUTPUTS = "no_outputs"
    JOB_EXPIRED = "job_expired"
    ORIGINALS_DELETED = "originals_deleted"     # INPUT_RETENTION_HOURS deleted the originals a retry or re-run needs
    JOB_CLOSED = "job_closed"                   # the job takes no more files
    JOB_FINISHED = "job_finished"               # already finished: nothing to cancel
    JOB_ACTIVE = "job_active"                   # not finished yet: nothing to retry, re-run or delete
    NOTHING_TO_RETRY = "nothing_to_retry"       # no failed, dead-lettered or skipped image
    NOTHING_TO_RERUN = "nothing_to_rerun"       # no image of the kind asked for
    ALREADY_UPLOADED = "already_uploaded"
    TOO_MANY_PRESETS = "too_many_presets"
    REQUEST_TIMEOUT = "request_timeout"
    REQUEST_TOO_LARGE = "request_too_large"
    FORM_TOO_LARGE = "form_too_large"
    FILE_TOO_LARGE = ErrorCode.FILE_TOO_LARGE.value
    TOO_MANY_FILES = "too_many_files"           # past MAX_FILES_PER_JOB
    TOO_MANY_URLS = "too_many_urls"             # past MAX_URLS_PER_JOB
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_CONTENT_ENCODING = "unsupported_content_encoding"
    INVALID_OPERATIONS = "invalid_operations"   # the schema's problems, each named in the details
    QUOTA_EXCEEDED = ErrorCode.QUOTA_EXCEEDED.value
    RATE_LIMITED = "rate_limited"
    TOO_MANY_ESTIMATES = "too_many_estimates"
    INTERNAL_ERROR = "internal_error"
    UNAVAILABLE = "unavailable"                 # a backend refused and nothing was kept: try again
    ESTIMATES_BUSY = "estimates_busy"
    # refused for a reason the status tells apart (413 too large, 415 not an image): see intake
    NO_VALID_IMAGES = "no_valid_images"
    INVALID_OVERLAY = "invalid_overlay"
    # a file refused alone, listed in ``rejected`` (no status of its own)
    TOO_LARGE = ErrorCode.TOO_LARGE.value
    UNSUPPORTED_IMAGE = "unsupported_image"
    EMPTY_FILE = "empty_file"


# The HTTP status of each refusal: the one table. A use case names what it refuses; it does not
# pick a status.
_BY_STATUS = {
    400: "MALFORMED_REQUEST MALFORMED_OPERATIONS INVALID_JSON UNKNOWN_FIELD NO_FILES NO_VALID_URLS ESTIMATE_NEEDS_FILES "
         "INVALID_EMAIL INVALID_WEBHOOK_SECRET INVALID_WEBHOOK_URL INVALID_CURSOR INVALID_LIMIT INVALID_NAME "
         "INVALID_ONLY INVALID_STATUS INVALID_PRESET_NAME WRONG_SIZE INVALID_CONTENT_RANGE",
    401: "API_KEY_REQUIRED INVALID_API_KEY",
    403: "INVALID_LINK INVALID_UPLOAD_LINK",
    404: "NOT_FOUND JOB_NOT_FOUND IMAGE_NOT_FOUND BLOB_NOT_FOUND PRESET_NOT_FOUND VARIANT_NOT_FOUND IMAGE_FAILED "
         "INPUT_NOT_READY OUTPUT_NOT_READY PREVIEW_NOT_READY NO_OUTPUTS",
    408: "REQUEST_TIMEOUT",
    409: "JOB_CLOSED JOB_FINISHED JOB_ACTIVE NOTHING_TO_RETRY NOTHING_TO_RERUN ALREADY_UPLOADED TOO_MANY_PRESETS",
    410: "JOB_EXPIRED ORIGINALS_DELETED",
    413: "REQUEST_TOO_LARGE FORM_TOO_LARGE FILE_TOO_LARGE TOO_MANY_FILES TOO_MANY_URLS",
    415: "UNSUPPORTED_MEDIA_TYPE UNSUPPORTED_CONTENT_ENCODING",
    422: "INVALID_OPERATIONS",
    429: "QUOTA_EXCEEDED RATE_LIMITED TOO_MANY_ESTIMATES",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE ESTIMATES_BUSY",
}
STATUS = {RefusalCode[name]: status for status, names in _BY_STATUS.items() for name in names.split()}


class Refused(ClientError):
    """What was asked is refused: ``code`` names why, and STATUS gives its HTTP status."""

    def __init__(self, code: RefusalCode, message: str, details=None):
        super().__init__(STATUS[code], code, message, details)


MAX_DETAILS = 20


def error_response(status: int, code: str, message: str, details=None):
    """The error body; a list of ``details`` is cut to its first MAX_DETAILS entries and the number left
    out is given in ``details_omitted`` (an answer stays small whatever the request held)."""
    error = {"code": code, "message": message, "details": details}
    if isinstance(details, list) and len(details) > MAX_DETAILS:
        error.update(details=details[:MAX_DETAILS], details_omitted=len(details) - MAX_DETAILS)
    return jsonify({"error": error}), status


def refusal_response(code: RefusalCode, message: str, details=None):
    """The error body of a refusal answered outside a request's handler (the app's error hooks)."""
    return error_response(STATUS[code], code, message, details)


def client_error_response(exc: ClientError):
    response, status = error_response(exc.status, exc.code, exc.message, exc.details)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="imageflow"'
    elif status in (429, 503) and isinstance(exc.details, dict) and exc.details.get("retry_after_seconds"):
        response.headers["Retry-After"] = str(exc.details["retry_after_seconds"])
    elif status == 429 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = "30"
    return response, status
