"""What every route of the API shares for a request: the app's backends (``ctx``), the caller
(``identify_caller``, before each route), the job it names (``job_or_404``), the read model
(``views``), the use cases for this caller (``intake``, ``lifecycle``, ``upload_targets``) and the
job options every way of creating a job reads (``job_request``). Request bodies are read by
services.image_handler.bodies."""
from __future__ import annotations

import json

from flask import Blueprint, current_app, g, request

from imageflow import domain
from imageflow.metrics import IMAGES_ACCEPTED, IMAGES_REJECTED

from ..auth import ANONYMOUS
from ..bodies import form_fields
from ..errors import Refused, RefusalCode
from ..intake import Intake, JobRequest, validate_email, validate_operations, validate_webhook_secret
from ..lifecycle import Lifecycle
from ..upload_targets import UploadTargets
from ..views import JobViews

# Endpoints (blueprint.function) that need no API key.
PUBLIC_ENDPOINTS = {"editor.operations", "editor.validate_operations", "editor.openapi"}
UPLOAD_ENDPOINTS = {"uploads.direct_upload"}   # authorised by their own signed link (the file's name and size)
LINK_ENDPOINTS = {"downloads.input_bytes", "downloads.output_bytes", "downloads.archive",
                  "downloads.preview_bytes"}   # may use a signed link instead of a key


def api_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint of /api/v1 routes whose caller is identified before each request."""
    blueprint = Blueprint(name, import_name, url_prefix="/api/v1")
    blueprint.before_request(identify_caller)
    return blueprint


def identify_caller():
    """Set ``g.caller`` (services.image_handler.auth): the key's owner, or anyone for a public
    route, a valid signed link or while keys are off; 401 (403 for a bad link) otherwise."""
    auth = ctx().auth
    g.caller = ANONYMOUS
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    if request.endpoint in UPLOAD_ENDPOINTS:
        if not auth.verify_link(request.path, request.args):
            raise Refused(RefusalCode.INVALID_UPLOAD_LINK, "this upload link is invalid or has expired; ask "
                                                           "POST /api/v1/jobs/<job_id>/files for a new one")
        return
    if request.endpoint in LINK_ENDPOINTS and "sig" in request.args:
        if not auth.verify_link(request.path, request.args):
            raise Refused(RefusalCode.INVALID_LINK, "this download link is invalid or has expired; "
                                                    "get a fresh one from GET /api/v1/jobs/<job_id>")
        return
    g.caller = auth.caller(request.headers)


def ctx():
    """The app's settings and backends (see app.create_app)."""
    return current_app.extensions["imageflow"]


def job_or_404(job_id: str) -> domain.Job:
    job = ctx().backends.jobs.get_job(job_id) if domain.is_valid_id(job_id) else None
    if job is None or not g.caller.can_access(job):  # another key's job is as unknown as a missing one
        raise Refused(RefusalCode.JOB_NOT_FOUND, f"no job with id {job_id[:64]!r}")
    if domain.is_expired(job, ctx().settings.job_retention_days, domain.utcnow()):  # JOB_RETENTION_DAYS
        raise Refused(RefusalCode.JOB_EXPIRED, f"job {job.job_id} has expired: jobs and their files are kept "
                      f"{ctx().settings.job_retention_days} days after they are created",
                      {"created_at": job.created_at})
    return job


def base_url() -> str:
    """The origin the caller reached us at (links in answers use it)."""
    return request.host_url.rstrip("/")


def views() -> JobViews:
    """The read model for this request."""
    c = ctx()
    return JobViews(c.settings, c.backends.blobs, c.backends.jobs, c.auth, base_url())


def intake() -> Intake:
    """Job creation for this caller (its quota is checked before anything is stored)."""
    c = ctx()
    return Intake(c.settings, c.backends.blobs, c.backends.jobs, c.backends.bus,
                  admit=lambda job_id, n, cost=0.0: c.auth.reserve_quota(c.backends.jobs, g.caller, job_id, n, cost),
                  release=lambda job_id: c.auth.release_quota(c.backends.jobs, g.caller, job_id),
                  admit_images=c.auth.images_admission(g.caller))


def lifecycle() -> Lifecycle:
    return Lifecycle(intake())


def upload_targets() -> UploadTargets:
    auth = ctx().auth
    return UploadTargets(intake(), lambda url, ttl: auth.sign_link(url, ttl, always=True), base_url())


TEXT_OPTIONS = ("preset", "email", "webhook_url", "webhook_secret", "name")


def job_request(fields, operations) -> JobRequest:
    """What every way of creating a job shares: the validated options and the caller."""
    for option in TEXT_OPTIONS:  # a JSON body may hold anything; a form's values are strings
        value = fields.get(option)
        if value is not None and not isinstance(value, str):
            raise Refused(RefusalCode.MALFORMED_REQUEST, f"{option} must be a string (or null), not "
                                                         f"{json.dumps(value)[:40]}", [{"field": option}])
    preset = fields.get("preset") or None
    name = fields.get("name")
    return JobRequest(operations=validate_operations(preset, operations), preset=preset,
                      email=validate_email(fields.get("email")),
                      webhook_url=ctx().validate_webhook(fields["webhook_url"]) if fields.get("webhook_url") else None,
                      webhook_secret=validate_webhook_secret(fields.get("webhook_secret")),
                      name=name.strip()[:200] or None if isinstance(name, str) else None, owner=g.caller.owner)


class FormUpload:
    """Adapts a werkzeug FileStorage to intake.Upload (bounded reads)."""

    def __init__(self, storage):
        self._storage = storage
        self.filename = storage.filename

    def read(self, limit: int) -> bytes:
        return self._storage.stream.read(limit)

    def rewind(self) -> None:
        """To read it again (werkzeug keeps each part in memory when small, else in a temporary file)."""
        self._storage.stream.seek(0)


def form_uploads(field: str) -> list[FormUpload]:
    """The files of a multipart ``field`` (an empty file input sends a nameless, empty part: skipped)."""
    return [FormUpload(f) for f in request.files.getlist(field) if f.filename or f.content_length]


def multipart_files(model, alternative: str):
    """The form and its ``files`` of a multipart request whose fields ``model`` knows (415 for any
    other body, 400 for a field it does not know)."""
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        raise Refused(RefusalCode.UNSUPPORTED_MEDIA_TYPE, "send the images as multipart/form-data in the 'files' "
                                                          f"field, {alternative}")
    form_fields(model)
    return request.form, form_uploads("files")


def count_created(created) -> None:
    """The metrics of images accepted and refused by a request."""
    IMAGES_ACCEPTED.inc(len(created.images))
    for rejected in created.rejected:
        IMAGES_REJECTED.labels(code=rejected.code).inc()
