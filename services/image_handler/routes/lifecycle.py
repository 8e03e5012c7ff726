"""The job lifecycle (issue 16): cancel a job, retry its failures, re-run it with other
operations from its stored originals. The work is services.image_handler.lifecycle's."""
from __future__ import annotations

from flask import jsonify
from pydantic import ValidationError

from ..bodies import json_body
from ..errors import Refused, RefusalCode
from ..openapi import RerunRequest
from .context import api_blueprint, job_or_404, job_request, lifecycle, views

lifecycle_api = api_blueprint("lifecycle", __name__)


def _accepted(body: dict):
    response = jsonify(body)
    response.status_code = 202
    return response


@lifecycle_api.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    """Cancel a job: its images not yet started are skipped, those being rendered finish; the
    job then ends ``cancelled`` with its counts and notifies as any finished job. Idempotent."""
    return _accepted(views().job(lifecycle().cancel(job_or_404(job_id))))


@lifecycle_api.post("/jobs/<job_id>/retry")
def retry(job_id: str):
    """Queue the job's failed images again (the dead-lettered and the skipped included) with the
    same operations; the job runs again and notifies again when it is done."""
    job, retried = lifecycle().retry(job_or_404(job_id))
    return _accepted({**views().job(job), "retried": retried})


@lifecycle_api.post("/jobs/<job_id>/rerun")
def rerun(job_id: str):
    """A new job over this job's stored originals (no upload): ``{"operations" | "preset",
    "only": "all" | "failed" | "succeeded", "email"?, "webhook_url"?, "name"?}``; without
    operations or a preset it runs the parent's again. 202 ``{job_id, parent_job_id, ...}``."""
    parent = job_or_404(job_id)
    body = json_body(RerunRequest, optional=True, example='{"operations": [...], "only": "failed"}')
    try:
        only = RerunRequest.model_validate(body).only
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = ".".join(str(part) for part in problem["loc"]) or "body"
        if name == "only":
            raise Refused(RefusalCode.INVALID_ONLY, "only must be one of: all, failed, succeeded") from None
        raise Refused(RefusalCode.MALFORMED_REQUEST, f"{name}: {problem['msg']}", [{"field": name}]) from None
    created = lifecycle().rerun(parent, body, only, lambda fields: job_request(fields, fields.get("operations")))
    job = created.job
    answer = {"job_id": job.job_id, "parent_job_id": parent.job_id, "status": job.status, "total": job.total,
              "images": [{"image_id": i.image_id, "filename": i.filename} for i in created.images],
              "links": views().links(job.job_id)}
    if job.webhook_url:
        answer["webhook_secret"] = job.webhook_secret
    response = _accepted(answer)
    response.headers["Location"] = answer["links"]["self"]
    return response
