"""Job management API: list, rename and delete jobs, the caller's stats and a job's CSV report.

Every route sees only the caller's jobs (services.image_handler.auth); the answers share the job and
image views of ``api.py``.
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import logging

from flask import Blueprint, Response, g, jsonify, request

from imageflow import domain
from imageflow.jobstore import iter_jobs, page_jobs
from services.image_handler.auth import AuthError
from services.image_handler.intake import IntakeError

from .api import (
    ApiError,
    _api_error,
    _job_or_404,
    ctx,
    identify_caller,
    image_view,
    job_view,
)

log = logging.getLogger(__name__)

job_routes = Blueprint("job_routes", __name__, url_prefix="/api/v1")
job_routes.before_request(identify_caller)
for _error in (ApiError, IntakeError, AuthError):
    job_routes.register_error_handler(_error, _api_error)

MAX_PAGE = 100
MAX_NAME = 200
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


# -- paging --------------------------------------------------------------------------------
def _encode_cursor(job: domain.Job) -> str:
    return base64.urlsafe_b64encode(json.dumps([job.created_at, job.job_id]).encode()).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[str, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(created_at, str) or not domain.is_valid_id(job_id):
            raise ValueError
        return created_at, job_id
    except (ValueError, TypeError, binascii.Error):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


def _owner_filter() -> str | None:
    return g.caller.owner if g.caller.enforced else None


# -- routes --------------------------------------------------------------------------------
@job_routes.get("/jobs")
def list_jobs():
    """The caller's jobs, newest first: ``?status=``, ``?limit=`` (1-100, default 20), ``?cursor=``."""
    status = request.args.get("status") or None
    if status is not None and status not in domain.JOB_STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of {', '.join(domain.JOB_STATUSES)}")
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_PAGE}")
    cursor = _decode_cursor(request.args["cursor"]) if request.args.get("cursor") else None
    page, next_cursor = page_jobs(ctx().backends.jobs, owner=_owner_filter(), status=status, limit=limit,
                                  cursor=cursor)
    body = {"jobs": [job_view(job) for job in page], "next_cursor": None, "links": {"next": None}}
    if next_cursor:
        token = _encode_cursor(page[-1])
        body["next_cursor"] = token
        query = f"limit={limit}&cursor={token}" + (f"&status={status}" if status else "")
        body["links"]["next"] = f"{request.host_url.rstrip('/')}/api/v1/jobs?{query}"
    return jsonify(body)


@job_routes.patch("/jobs/<job_id>")
def rename(job_id: str):
    """Rename a job: ``{"name": "..."}`` (null or "" clears it)."""
    job = _job_or_404(job_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "name" not in body or not isinstance(body["name"], (str, type(None))):
        raise ApiError(400, "malformed_request", 'send a JSON object {"name": "new name"}')
    name = "".join(ch for ch in (body["name"] or "") if ch.isprintable()).strip()
    if len(name) > MAX_NAME:
        raise ApiError(400, "invalid_name", f"name is longer than {MAX_NAME} characters")
    job = ctx().backends.jobs.update_job(job.job_id, name=name or None)
    return jsonify(job_view(job))


@job_routes.delete("/jobs/<job_id>")
def delete(job_id: str):
    """Delete a finished job: its files first, then its documents."""
    job = _job_or_404(job_id)
    if not job.is_terminal:
        raise ApiError(409, "job_active", f"job {job.job_id} is {job.status}; it can be deleted once it has finished")
    removed = ctx().backends.blobs.delete_prefix(f"{job.job_id}/")
    ctx().backends.jobs.delete_job(job.job_id)
    log.info("job %s deleted by %s: %d files", job.job_id, g.caller.owner or "anonymous", removed)
    return Response(status=204)


@job_routes.get("/stats")
def stats():
    """The caller's totals: jobs (by status), images, failures and bytes stored."""
    jobs = images = succeeded = failed = input_bytes = output_bytes = 0
    by_status = {status: 0 for status in domain.JOB_STATUSES}
    store = ctx().backends.jobs
    for job in iter_jobs(ctx().backends.jobs, owner=_owner_filter()):
        jobs += 1
        by_status[job.status] = by_status.get(job.status, 0) + 1
        images += job.total
        succeeded += job.succeeded
        failed += job.failed
        for image in store.list_images(job.job_id):
            input_bytes += image.input_bytes or 0
            output_bytes += sum(o.get("bytes") or 0 for o in image.outputs or []) or (image.bytes or 0)
    return jsonify(jobs=jobs, jobs_by_status=by_status, images=images, succeeded=succeeded, failed=failed,
                   pending=images - succeeded - failed,
                   bytes={"input": input_bytes, "output": output_bytes, "total": input_bytes + output_bytes})


def neutralise(value):
    """A CSV cell that no spreadsheet will run as a formula: text starting with = + - @ or a
    control character gets a leading apostrophe. Numbers and None pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


@job_routes.get("/jobs/<job_id>/report.csv")
def report(job_id: str):
    """One row per image: its CSV columns, source, input and output URLs, status and error."""
    job = _job_or_404(job_id)
    images = ctx().backends.jobs.list_images(job.job_id)
    meta_keys = list(dict.fromkeys(key for image in images for key in (image.meta or {})))
    columns = ["row", "image_id", "filename", *meta_keys, "source_url", "input_url", "output_url", "status",
               "error", "width", "height", "bytes", "content_type"]
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow(columns)
    for number, image in enumerate(images, start=1):
        view = image_view(image)
        fetched = not image.source_url or image.status == domain.IMAGE_SUCCEEDED
        row = [number, image.image_id, image.filename, *[(image.meta or {}).get(k, "") for k in meta_keys],
               image.source_url or "", view["input_url"] if fetched else "", view["output_url"] or "",
               image.status, image.error or "", image.width or "", image.height or "", image.bytes or "",
               image.content_type or ""]
        writer.writerow([neutralise(cell) for cell in row])
    name = f"imageflow-{job.job_id[:8]}-report.csv"
    return Response(out.getvalue().encode("utf-8-sig"), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
