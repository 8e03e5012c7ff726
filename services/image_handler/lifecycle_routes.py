"""The job lifecycle API (issue 16): cancel a job, retry its failures, re-run it with other
operations from its stored originals.

The image-handler only records what was asked on the job and announces it with
``job.submitted``; the interaction manager's usual fan-out and folding do the rest, and the
processors skip the tasks of a cancelled job (services.image_processor.job_gate). The
processors read no job document: a cancel reaches them as the job's cancel marker in the
blob store (domain.cancel_marker), written here before the job records the cancel and lifted
by a retry before its tasks are queued again.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace

from flask import Blueprint, g, jsonify, request
from pydantic import ValidationError

from imageflow import domain
from imageflow.messages import JobSubmitted

from .api import _intake, _job_or_404, _job_request, ctx, identify_caller, views
from .errors import ClientError
from .openapi import RerunRequest
from .openapi import document as openapi_document

log = logging.getLogger(__name__)

lifecycle_routes = Blueprint("lifecycle_routes", __name__, url_prefix="/api/v1")
lifecycle_routes.before_request(identify_caller)

RERUN_SELECTIONS = {
    "all": None,
    "failed": (domain.IMAGE_FAILED, domain.IMAGE_SKIPPED),
    "succeeded": (domain.IMAGE_SUCCEEDED,),
}
RETRYABLE = (domain.IMAGE_FAILED, domain.IMAGE_SKIPPED)


def _json_body() -> dict:
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ClientError(400, "malformed_request", "send a JSON object (or no body)")
    return body


def _accepted(body: dict):
    response = jsonify(body)
    response.status_code = 202
    return response


@lifecycle_routes.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API (services.image_handler.openapi)."""
    return jsonify(openapi_document(keys_required=ctx().auth.enabled))


@lifecycle_routes.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    """Cancel a job: its images not yet started are skipped, those being rendered finish; the
    job then ends ``cancelled`` with its counts and notifies as any finished job. Idempotent."""
    job = _job_or_404(job_id)
    if job.is_terminal:
        raise ClientError(409, "job_finished", f"job {job.job_id} has already finished ({job.status}); "
                                               "there is nothing left to cancel")
    was_open = job.is_open
    if was_open:  # the cancel closes it: the uploads already acknowledged join first (as close), then are skipped
        _intake().join_landed(job, "cancel")
    # the marker first: if it cannot be written the job is unchanged and the cancel can be sent again
    _mark_cancelled(job.job_id)
    changed = ctx().backends.jobs.transition(job.job_id, domain.request_cancel(domain.utcnow()))
    if changed is not None:
        job = changed
        log.info("job %s: cancel requested by %s", job.job_id, g.caller.owner or "anonymous")
        if was_open:  # the cancel closed it: announce it as a close does (tasks missing, or finished already)
            _announce(job.job_id)
    return _accepted(views().job(job))


@lifecycle_routes.post("/jobs/<job_id>/retry")
def retry(job_id: str):
    """Queue the job's failed images again (the dead-lettered and the skipped included) with the
    same operations; the job runs again and notifies again when it is done."""
    job = _job_or_404(job_id)
    if not job.is_terminal:
        raise ClientError(409, "job_active", f"job {job.job_id} is {job.status}; retry it once it has finished")
    store = ctx().backends.jobs
    images = store.list_images(job.job_id)
    # queued images of a finished job are those of a retry interrupted before it re-queued the job
    targets = [i for i in images if i.status in RETRYABLE or i.status == domain.IMAGE_QUEUED]
    if not targets:
        raise ClientError(409, "nothing_to_retry", f"job {job.job_id} has no failed images to retry")
    # lifted before the job runs again, so no task of this run meets a cancel of the last one
    ctx().backends.blobs.delete_prefix(domain.cancel_marker(job.job_id))
    admit = _intake().admit
    if admit:  # the job becomes active again: its retried images count against the caller's quota
        admit(job.job_id, len(targets))
    now = domain.utcnow()
    requeued = {i.image_id: replace(i, status=domain.IMAGE_QUEUED, error=None, output_path=None, outputs=[],
                                    content_type=None, width=None, height=None, bytes=None, output_bytes=None,
                                    duplicate_of=None, error_code=None, output_preview_path=None, blurhash=None,
                                    dominant_color=None, choices={}, tasked=False, updated_at=now)
                for i in targets}  # tasked=False: the fan-out publishes their tasks again
    store.update_images(job.job_id, list(requeued.values()))
    counted = domain.recount(job, [requeued.get(i.image_id, i) for i in images], now)
    retried = store.transition(job.job_id, domain.start_retry(counted))
    if retried is None:
        raise ClientError(409, "job_active", f"job {job.job_id} is already running again")
    job = retried
    _announce(job.job_id)
    log.info("job %s: run %d retries %d images", job.job_id, job.run, len(targets))
    return _accepted({**views().job(job), "retried": len(targets)})


@lifecycle_routes.post("/jobs/<job_id>/rerun")
def rerun(job_id: str):
    """A new job over this job's stored originals (no upload): ``{"operations" | "preset",
    "only": "all" | "failed" | "succeeded", "email"?, "webhook_url"?, "name"?}``; without
    operations or a preset it runs the parent's again. 202 ``{job_id, parent_job_id, ...}``."""
    parent = _job_or_404(job_id)
    body = _json_body()
    try:
        only = RerunRequest.model_validate(body).only
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = ".".join(str(part) for part in problem["loc"]) or "body"
        if name == "only":
            raise ClientError(400, "invalid_only", "only must be one of: all, failed, succeeded") from None
        raise ClientError(400, "malformed_request", f"{name}: {problem['msg']}") from None
    if not parent.is_terminal:
        raise ClientError(409, "job_active", f"job {parent.job_id} is {parent.status}; re-run it once it has finished")
    if body.get("operations") is None and not body.get("preset"):
        body = {**body, "operations": parent.operations}
    job_request = _job_request(body, body.get("operations"))
    wanted = RERUN_SELECTIONS[only]
    sources = [i for i in ctx().backends.jobs.list_images(parent.job_id) if wanted is None or i.status in wanted]
    if not sources:
        raise ClientError(409, "nothing_to_rerun", f"job {parent.job_id} has no {only} images to re-run")
    intake = _intake()
    job = replace(job_request.new_job(), parent_job_id=parent.job_id)
    images = [_rerun_image(job.job_id, source) for source in sources]
    with intake._reserved(job, len(images)):  # the caller's quota, held atomically as for any new job
        created = intake._record(job, images, [])
    ctx().backends.jobs.transition(parent.job_id, domain.add_child(job.job_id))
    log.info("job %s re-runs %d images of %s", job.job_id, len(images), parent.job_id)
    body = {"job_id": job.job_id, "parent_job_id": parent.job_id, "status": created.job.status,
            "total": created.job.total, "images": [{"image_id": i.image_id, "filename": i.filename} for i in images],
            "links": views().links(job.job_id)}
    if job.webhook_url:
        body["webhook_secret"] = job.webhook_secret
    response = _accepted(body)
    response.headers["Location"] = body["links"]["self"]
    return response


def _rerun_image(job_id: str, source: domain.Image) -> domain.Image:
    """The new job's image reads the parent's stored original. An image whose URL was never
    fetched is fetched again into the new job's own input path."""
    image_id = domain.new_id()
    unfetched = bool(source.source_url) and source.status != domain.IMAGE_SUCCEEDED
    path = domain.input_path(job_id, image_id, source.filename) if unfetched else source.input_path
    return domain.Image(job_id=job_id, image_id=image_id, filename=source.filename, input_path=path,
                        input_content_type=source.input_content_type, input_bytes=source.input_bytes,
                        source_url=source.source_url if unfetched else None, meta=dict(source.meta or {}))


def _mark_cancelled(job_id: str) -> None:
    marker = json.dumps({"job_id": job_id, "cancel_requested_at": domain.utcnow()}).encode("utf-8")
    ctx().backends.blobs.put(domain.cancel_marker(job_id), marker, "application/json", cache_control="no-store")


def _announce(job_id: str) -> None:
    c = ctx()
    try:
        c.backends.bus.publish(c.settings.topics.jobs, JobSubmitted(job_id=job_id).encode(), {"job_id": job_id})
    except Exception:  # the job is queued: the interaction manager's sweep fans it out later
        log.exception("could not publish job.submitted for %s; the sweep will pick it up", job_id)
