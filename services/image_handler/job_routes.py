"""Job management API: list, rename and delete jobs, the caller's stats and a job's CSV report.

Every route sees only the caller's jobs (services.image_handler.auth); the answers share the job and
image views of ``api.py``.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from imageflow import domain
from imageflow.jobstore import page_jobs

from .api import _job_or_404, ctx, identify_caller, views
from .bodies import json_body
from .errors import ClientError
from .openapi import RenameRequest
from .views import decode_cursor, encode_cursor

log = logging.getLogger(__name__)

job_routes = Blueprint("job_routes", __name__, url_prefix="/api/v1")
job_routes.before_request(identify_caller)

MAX_PAGE = 100
MAX_NAME = 200


def _owner_filter() -> str | None:
    return g.caller.owner if g.caller.enforced else None


# -- routes --------------------------------------------------------------------------------
@job_routes.get("/jobs")
def list_jobs():
    """The caller's jobs, newest first: ``?status=``, ``?limit=`` (1-100, default 20), ``?cursor=``."""
    status = request.args.get("status") or None
    if status is not None and status not in domain.JOB_STATUSES:
        raise ClientError(400, "invalid_status", f"status must be one of {', '.join(domain.JOB_STATUSES)}")
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise ClientError(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_PAGE}")
    cursor = decode_cursor(request.args["cursor"]) if request.args.get("cursor") else None
    page, next_cursor = page_jobs(ctx().backends.jobs, owner=_owner_filter(), status=status, limit=limit,
                                  cursor=cursor)
    body = {"jobs": [views().job(job) for job in page], "next_cursor": None, "links": {"next": None}}
    if next_cursor:
        token = encode_cursor(page[-1])
        body["next_cursor"] = token
        query = f"limit={limit}&cursor={token}" + (f"&status={status}" if status else "")
        body["links"]["next"] = f"{request.host_url.rstrip('/')}/api/v1/jobs?{query}"
    return jsonify(body)


@job_routes.patch("/jobs/<job_id>")
def rename(job_id: str):
    """Rename a job: ``{"name": "..."}`` (null or "" clears it)."""
    job = _job_or_404(job_id)
    body = json_body(RenameRequest, example='{"name": "new name"}')
    if "name" not in body or not isinstance(body["name"], (str, type(None))):
        raise ClientError(400, "malformed_request", 'send a JSON object {"name": "new name"}')
    name = "".join(ch for ch in (body["name"] or "") if ch.isprintable()).strip()
    if len(name) > MAX_NAME:
        raise ClientError(400, "invalid_name", f"name is longer than {MAX_NAME} characters")
    job = ctx().backends.jobs.update_job(job.job_id, name=name or None)
    return jsonify(views().job(job))


@job_routes.delete("/jobs/<job_id>")
def delete(job_id: str):
    """Delete a finished job: its files first, then its documents."""
    job = _job_or_404(job_id)
    if not job.is_terminal:
        raise ClientError(409, "job_active", f"job {job.job_id} is {job.status}; it can be deleted once it has finished")
    removed = ctx().backends.blobs.delete_prefix(f"{job.job_id}/")
    ctx().backends.jobs.delete_job(job.job_id)
    # a reservation whose job is gone counts as a job still being created (for a while): drop it
    ctx().auth.release_quota(ctx().backends.jobs, g.caller, job.job_id)
    log.info("job %s deleted by %s: %d files", job.job_id, g.caller.owner or "anonymous", removed)
    return Response(status=204)


@job_routes.get("/stats")
def stats():
    """The caller's totals: jobs (by status), images, failures and bytes stored."""
    return jsonify(views().stats(_owner_filter()))


@job_routes.get("/jobs/<job_id>/report.csv")
def report(job_id: str):
    """One row per image: its CSV columns, source, input and output URLs, status and error."""
    job = _job_or_404(job_id)
    name = f"imageflow-{job.job_id[:8]}-report.csv"
    return Response(stream_with_context(views().report_csv(job)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
