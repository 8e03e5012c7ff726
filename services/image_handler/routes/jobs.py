"""Jobs: create one (multipart files, a CSV or JSON list of URLs, an open job, or only an
estimate), list the caller's, read one and its pages of images, rename and delete one; the
caller's stats. Every route sees only the caller's jobs (services.image_handler.auth)."""
from __future__ import annotations

import json
import logging

from flask import Response, g, jsonify, request

from imageflow import domain
from imageflow.engine import Limits
from imageflow.jobstore import page_jobs
from imageflow.metrics import JOBS_CREATED
from imageflow.safe_http import FetchError

from ..bodies import json_body
from ..errors import ClientError, Refused, RefusalCode
from ..estimate import estimate
from ..intake import check_overlays
from ..openapi import JsonJob, MultipartJob, RenameRequest
from ..url_lists import MAX_CSV_BYTES, TooManyUrls, check_entries, entries_from_csv, entries_from_json
from ..views import DEFAULT_IMAGE_PAGE, MAX_IMAGE_PAGE, decode_cursor, decode_image_cursor, encode_cursor
from .context import (api_blueprint, base_url, count_created, ctx, form_uploads, intake, job_or_404, job_request,
                      multipart_files, views)

log = logging.getLogger(__name__)

jobs = api_blueprint("jobs", __name__)

MAX_PAGE = 100   # jobs per page of GET /jobs
MAX_NAME = 200
TRUE = {"1", "true", "yes", "on"}


@jobs.post("/jobs")
def create():
    """Create a job: a multipart batch of ``files`` (or one ``csv`` file of image URLs), a
    JSON body ``{"urls": [...]}``, or an open job ``{"open": true}`` filled by later requests (as
    multipart ``open=true`` it may carry the ``overlay`` files its operations name);
    ``operations`` (JSON) or ``preset``, optional ``email``, ``webhook_url``, ``webhook_secret``
    and ``name``. With ``estimate=true`` nothing is created: the answer is an estimate (issue 16).
    A field none of these is refused (400 unknown_field), as is the whole request."""
    if request.is_json:
        body = json_body(JsonJob, example='{"urls": [...]} or {"open": true}')
        if wants_estimate(body):
            raise Refused(RefusalCode.ESTIMATE_NEEDS_FILES, "an estimate is made from uploaded files (multipart "
                          "'files'); the URLs of a URL job are fetched only when the job runs")
        if body.get("open") is True:
            return _opened(intake().open_job(job_request(body, body.get("operations"))))
        if "urls" not in body:
            raise Refused(RefusalCode.MALFORMED_REQUEST, "a JSON body must be an object with a 'urls' list "
                                                         "or \"open\": true; send image files as multipart/form-data")
        request_ = job_request(body, body.get("operations"))
        good, bad = _url_entries(entries_from_json, body["urls"])
        return _accepted(intake().create_url_job(good, bad, request_))
    form, uploads = multipart_files(MultipartJob, "or a JSON body with a 'urls' list")
    if wants_estimate(form):  # the same body, and nothing is created
        return estimate_answer(form, uploads)
    csv_file = request.files.get("csv")
    request_ = job_request(form, _form_operations(form.get("operations")))
    # The overlay files its overlay operations name come with any multipart job: of files, of a
    # CSV of URLs, or an open job (form field open=true, no files: they follow on /files).
    overlays = form_uploads("overlay")
    if str(form.get("open", "")).lower() in TRUE:
        if uploads or csv_file is not None:
            raise Refused(RefusalCode.MALFORMED_REQUEST, "an open job takes its files later, at links.files: "
                                                         "send only the options and the 'overlay' files here")
        return _opened(intake().open_job(request_, overlays))
    if csv_file is not None:
        if uploads:
            raise Refused(RefusalCode.MALFORMED_REQUEST, "send image files or one CSV of URLs, not both")
        good, bad = _url_entries(entries_from_csv, csv_file.stream.read(MAX_CSV_BYTES + 1))
        return _accepted(intake().create_url_job(good, bad, request_, overlays))
    return _accepted(intake().create_job(uploads, request_, overlays))


def _form_operations(raw: str | None):
    if raw is None or raw.strip() == "":
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Refused(RefusalCode.MALFORMED_OPERATIONS, f"operations is not valid JSON: {exc.msg} at position {exc.pos}")
    except RecursionError:  # json.loads gives up on very deep nesting with RecursionError, not a ValueError
        raise Refused(RefusalCode.MALFORMED_OPERATIONS, "operations is nested too deeply to be a list of operations")


def _url_entries(parse, data):
    try:
        return check_entries(parse(data, max_rows=ctx().settings.max_urls_per_job))
    except TooManyUrls as exc:
        raise Refused(RefusalCode.TOO_MANY_URLS, exc.reason)
    except FetchError as exc:
        raise ClientError(400, exc.code, exc.reason)


# -- estimates (issue 16): the answer POST /jobs gives with "estimate": true --------------------
def wants_estimate(fields) -> bool:
    """``"estimate": true`` in the JSON body or the form ``fields`` (or ``?estimate=true``)."""
    if str(request.args.get("estimate", "")).lower() in TRUE:
        return True
    value = fields.get("estimate")
    return value is True if request.is_json else str(value or "").lower() in TRUE


def estimate_answer(form, uploads):
    """200: what the job would do (services.image_handler.estimate); nothing is stored. 503 when
    the process makes as many estimates as it may at once, 429 when this key does."""
    with ctx().estimator.admitted(g.caller.owner if g.caller.enforced else None):
        return _estimate_answer(form, uploads)


def _estimate_answer(form, uploads):
    if request.files.get("csv") is not None:
        raise Refused(RefusalCode.ESTIMATE_NEEDS_FILES, "an estimate is made from uploaded files, not a CSV of URLs")
    request_ = job_request(form, _form_operations(form.get("operations")))
    c = ctx()
    assets = {name: data for name, (data, _mime) in
              check_overlays(request_.operations, form_uploads("overlay"), c.settings,
                             Limits.from_settings(c.settings)).items()}
    return jsonify(estimate(c.settings, c.backends.jobs, uploads, request_.operations,
                            admit=lambda n: c.auth.check_quota(c.backends.jobs, g.caller, n),  # read-only
                            owner=g.caller.owner, assets=assets, estimator=c.estimator))


def _opened(job: domain.Job):
    """The 201 answer for a new open job: where to send its files and how to close it."""
    JOBS_CREATED.inc()
    body = {"job_id": job.job_id, "status": job.status, "total": 0, "links": views().links(job.job_id)}
    return _created(body, job, 201)


def _accepted(created):
    """The 202 answer for a new job."""
    JOBS_CREATED.inc()
    count_created(created)
    body = {"job_id": created.job.job_id, "status": created.job.status, "total": created.job.total,
            "images": [{"image_id": i.image_id, "filename": i.filename,
                        **({"source_url": i.source_url} if i.source_url else {})} for i in created.images],
            "rejected": [r.to_dict() for r in created.rejected], "links": views().links(created.job.job_id)}
    return _created(body, created.job, 202)


def _created(body: dict, job: domain.Job, status: int):
    """A new job's answer, at its own address; a webhook's secret is shown this once."""
    if job.webhook_url:  # the key to verify the webhook's signature
        body["webhook_secret"] = job.webhook_secret
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = body["links"]["self"]
    return response


@jobs.get("/jobs")
def list_jobs():
    """The caller's jobs, newest first: ``?status=``, ``?limit=`` (1-100, default 20), ``?cursor=``."""
    status_filter = _status_arg(domain.JOB_STATUSES)
    limit = _limit_arg(20, MAX_PAGE)
    cursor = decode_cursor(request.args["cursor"]) if request.args.get("cursor") else None
    page, next_cursor = page_jobs(ctx().backends.jobs, owner=_owner_filter(), status=status_filter, limit=limit,
                                  cursor=cursor)
    body = {"jobs": [views().job(job) for job in page], "next_cursor": None, "links": {"next": None}}
    if next_cursor:
        token = encode_cursor(page[-1])
        body["next_cursor"] = token
        query = f"limit={limit}&cursor={token}" + (f"&status={status_filter}" if status_filter else "")
        body["links"]["next"] = f"{base_url()}/api/v1/jobs?{query}"
    return jsonify(body)


@jobs.get("/jobs/<job_id>")
def status(job_id: str):
    """The job, its counts and the first page of its images (``links.next`` for the rest)."""
    job, read = job_or_404(job_id), views()
    return jsonify(read.job(job, page=read.image_page(job, limit=DEFAULT_IMAGE_PAGE)))


@jobs.get("/jobs/<job_id>/images")
def images(job_id: str):
    """A page of the job's images in upload order: ``?status=``, ``?cursor=``, ``?limit=`` (1-1000)."""
    job = job_or_404(job_id)
    status_filter = _status_arg(domain.IMAGE_STATUSES)
    limit = _limit_arg(DEFAULT_IMAGE_PAGE, MAX_IMAGE_PAGE)
    after = decode_image_cursor(request.args["cursor"]) if request.args.get("cursor") else None
    page = views().image_page(job, status=status_filter, after=after, limit=limit)
    return jsonify({"job_id": job.job_id, "images": page.images, "links": {"next": page.next}})


def _status_arg(statuses) -> str | None:
    value = request.args.get("status") or None
    if value is not None and value not in statuses:
        raise Refused(RefusalCode.INVALID_STATUS, f"status must be one of {', '.join(statuses)}")
    return value


def _limit_arg(default: int, most: int) -> int:
    try:
        limit = int(request.args.get("limit", str(default)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise Refused(RefusalCode.INVALID_LIMIT, f"limit must be a whole number from 1 to {most}")
    return limit


@jobs.patch("/jobs/<job_id>")
def rename(job_id: str):
    """Rename a job: ``{"name": "..."}`` (null or "" clears it)."""
    job = job_or_404(job_id)
    body = json_body(RenameRequest, example='{"name": "new name"}')
    if "name" not in body or not isinstance(body["name"], (str, type(None))):
        raise Refused(RefusalCode.MALFORMED_REQUEST, 'send a JSON object {"name": "new name"}')
    name = "".join(ch for ch in (body["name"] or "") if ch.isprintable()).strip()
    if len(name) > MAX_NAME:
        raise Refused(RefusalCode.INVALID_NAME, f"name is longer than {MAX_NAME} characters")
    job = ctx().backends.jobs.update_job(job.job_id, name=name or None)
    return jsonify(views().job(job))


@jobs.delete("/jobs/<job_id>")
def delete(job_id: str):
    """Delete a finished job: its files first, then its documents."""
    job = job_or_404(job_id)
    if not job.is_terminal:
        raise Refused(RefusalCode.JOB_ACTIVE, f"job {job.job_id} is {job.status}; it can be deleted once it has finished")
    removed = ctx().backends.blobs.delete_prefix(f"{job.job_id}/")
    ctx().backends.jobs.delete_job(job.job_id)
    # a reservation whose job is gone counts as a job still being created (for a while): drop it
    ctx().auth.release_quota(ctx().backends.jobs, g.caller, job.job_id)
    log.info("job %s deleted by %s: %d files", job.job_id, g.caller.owner or "anonymous", removed)
    return Response(status=204)


@jobs.get("/stats")
def stats():
    """The caller's totals: jobs (by status), images, failures and bytes stored."""
    return jsonify(views().stats(_owner_filter()))


def _owner_filter() -> str | None:
    return g.caller.owner if g.caller.enforced else None
