"""The public REST API (ARCHITECTURE.md): /api/v1/jobs and friends."""
from __future__ import annotations

import json
import logging
import zipfile
from tempfile import SpooledTemporaryFile

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file

from imageflow import domain
from imageflow.blobstore import BlobNotFound
from imageflow.engine.decoding import KINDS, sniff
from imageflow.engine.schema import PRESETS, operations_json_schema
from imageflow.metrics import IMAGES_ACCEPTED, IMAGES_REJECTED, JOBS_CREATED
from imageflow.safe_http import FetchError

from .auth import ANONYMOUS
from .errors import ClientError
from .intake import (
    Intake,
    JobRequest,
    validate_email,
    validate_operations,
    validate_webhook_secret,
)
from .url_lists import MAX_CSV_BYTES, check_entries, entries_from_csv, entries_from_json
from .views import JobViews

log = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/api/v1")

ACCEPTED_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/bmp", "image/avif",
                  "image/heic"]


PUBLIC_ENDPOINTS = {"api.operations", "lifecycle_routes.openapi"}
LINK_ENDPOINTS = {"api.input_bytes", "api.output_bytes", "api.archive"}   # may use a signed link instead of a key


@api.before_request
def identify_caller():
    """Set ``g.caller`` (services.image_handler.auth): the key's owner, or anyone for a valid signed
    download link or while keys are off; 401 otherwise."""
    auth = ctx().auth
    g.caller = ANONYMOUS
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    if request.endpoint in LINK_ENDPOINTS and "sig" in request.args:
        if not auth.verify_link(request.path, request.args):
            raise ClientError(403, "invalid_link", "this download link is invalid or has expired; "
                                                "get a fresh one from GET /api/v1/jobs/<job_id>")
        return
    g.caller = auth.caller(request.headers)


def ctx():
    """The app's settings and backends (see app.create_app)."""
    return current_app.extensions["imageflow"]


class _FormUpload:
    """Adapts a werkzeug FileStorage to intake.Upload (bounded reads)."""

    def __init__(self, storage):
        self._storage = storage
        self.filename = storage.filename

    def read(self, limit: int) -> bytes:
        return self._storage.stream.read(limit)


def _job_or_404(job_id: str) -> domain.Job:
    job = ctx().backends.jobs.get_job(job_id) if domain.is_valid_id(job_id) else None
    if job is None or not g.caller.can_access(job):  # another key's job is as unknown as a missing one
        raise ClientError(404, "job_not_found", f"no job with id {job_id[:64]!r}")
    if domain.is_expired(job, ctx().settings.job_retention_days, domain.utcnow()):  # JOB_RETENTION_DAYS
        raise ClientError(410, "job_expired", f"job {job.job_id} has expired: jobs and their files are kept "
                          f"{ctx().settings.job_retention_days} days after they are created",
                          {"created_at": job.created_at})
    return job


def views() -> JobViews:
    """The read model for this request (links use the origin the caller reached us at)."""
    c = ctx()
    return JobViews(c.settings, c.backends.blobs, c.backends.jobs, c.auth, request.host_url.rstrip("/"))


@api.get("/operations")
def operations():
    """The operations' JSON Schema, the presets and the upload limits (for the frontend)."""
    s = ctx().settings
    return jsonify(schema=operations_json_schema(), presets=PRESETS, limits={
        "max_upload_bytes": s.max_upload_bytes, "max_request_bytes": s.max_request_bytes,
        "max_files_per_job": s.max_files_per_job, "max_image_pixels": s.max_image_pixels,
        "accepted_types": ACCEPTED_TYPES})


def _form_operations(raw: str | None):
    if raw is None or raw.strip() == "":
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ClientError(400, "malformed_operations", f"operations is not valid JSON: {exc.msg} at position {exc.pos}")
    except RecursionError:  # json.loads gives up on very deep nesting with RecursionError, not a ValueError
        raise ClientError(400, "malformed_operations", "operations is nested too deeply to be a list of operations")


MAX_JSON_BYTES = 1024 * 1024


def _job_request(fields, operations) -> JobRequest:
    """What every way of creating a job shares: the validated options and the caller."""
    preset = fields.get("preset") or None
    name = fields.get("name")
    return JobRequest(operations=validate_operations(preset, operations), preset=preset,
                      email=validate_email(fields.get("email")),
                      webhook_url=ctx().validate_webhook(fields["webhook_url"]) if fields.get("webhook_url") else None,
                      webhook_secret=validate_webhook_secret(fields.get("webhook_secret")),
                      name=name.strip()[:200] or None if isinstance(name, str) else None, owner=g.caller.owner)


def _intake() -> Intake:
    """Job creation for this caller (its quota is checked before anything is stored)."""
    c = ctx()
    return Intake(c.settings, c.backends.blobs, c.backends.jobs, c.backends.bus,
                  admit=lambda n: c.auth.check_quota(c.backends.jobs, g.caller, n))


def _url_entries(parse, data):
    try:
        return check_entries(parse(data))
    except FetchError as exc:
        raise ClientError(400, exc.code, exc.reason)


@api.post("/jobs")
def create():
    """Create a job: a multipart batch of ``files`` (or one ``csv`` file of image URLs), or a
    JSON body ``{"urls": [...]}``; ``operations`` (JSON) or ``preset``, optional ``email``,
    ``webhook_url``, ``webhook_secret`` and ``name``."""
    from .lifecycle_routes import estimate_answer, wants_estimate  # issue 16: same body, nothing created
    if wants_estimate():
        return estimate_answer()
    if request.is_json:
        if (request.content_length or 0) > MAX_JSON_BYTES:
            raise ClientError(413, "request_too_large", f"a JSON body is limited to {MAX_JSON_BYTES // 1024} KB")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "urls" not in body:  # JSON is for URL imports only
            raise ClientError(415, "unsupported_media_type", "a JSON body must be an object with a 'urls' list; "
                                                          "send image files as multipart/form-data")
        job_request = _job_request(body, body.get("operations"))
        good, bad = _url_entries(entries_from_json, body["urls"])
        return _accepted(_intake().create_url_job(good, bad, job_request))
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        raise ClientError(415, "unsupported_media_type", "send the images as multipart/form-data in the 'files' "
                                                      "field, or a JSON body with a 'urls' list")
    try:
        form, files = request.form, request.files.getlist("files")
        csv_file = request.files.get("csv")
    except ValueError as exc:  # malformed multipart
        raise ClientError(400, "malformed_request", f"could not read the multipart body: {exc}")
    job_request = _job_request(form, _form_operations(form.get("operations")))
    uploads = [_FormUpload(f) for f in files if f.filename or f.content_length]
    if csv_file is not None:
        if uploads:
            raise ClientError(400, "malformed_request", "send image files or one CSV of URLs, not both")
        good, bad = _url_entries(entries_from_csv, csv_file.stream.read(MAX_CSV_BYTES + 1))
        return _accepted(_intake().create_url_job(good, bad, job_request))
    return _accepted(_intake().create_job(uploads, job_request))


def _accepted(created):
    """The 202 answer for a new job."""
    JOBS_CREATED.inc()
    IMAGES_ACCEPTED.inc(len(created.images))
    for rejected in created.rejected:
        IMAGES_REJECTED.labels(code=rejected.code).inc()
    body = {"job_id": created.job.job_id, "status": created.job.status, "total": created.job.total,
            "images": [{"image_id": i.image_id, "filename": i.filename,
                        **({"source_url": i.source_url} if i.source_url else {})} for i in created.images],
            "rejected": [r.to_dict() for r in created.rejected], "links": views().links(created.job.job_id)}
    if created.job.webhook_url:  # shown once: the key to verify the webhook's signature
        body["webhook_secret"] = created.job.webhook_secret
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = body["links"]["self"]
    return response


@api.get("/jobs/<job_id>")
def status(job_id: str):
    job = _job_or_404(job_id)
    return jsonify(views().job(job, ctx().backends.jobs.list_images(job_id)))


def _image_or_404(job_id: str, image_id: str) -> domain.Image:
    _job_or_404(job_id)
    image = ctx().backends.jobs.get_image(job_id, image_id) if domain.is_valid_id(image_id) else None
    if image is None:
        raise ClientError(404, "image_not_found", f"job {job_id} has no image {image_id[:64]!r}")
    return image


def _send_blob(path: str, content_type: str | None, download_name: str):
    blobs = ctx().backends.blobs
    signed = blobs.signed_url(path, ctx().settings.signed_url_ttl_seconds)
    if signed:
        return Response(status=302, headers={"Location": signed})
    try:
        stream = blobs.open(path)
    except BlobNotFound:
        raise ClientError(404, "blob_not_found", "the file is no longer in storage")
    return send_file(stream, mimetype=content_type or "application/octet-stream", download_name=download_name,
                     max_age=3600)


@api.get("/jobs/<job_id>/images/<image_id>/input")
def input_bytes(job_id: str, image_id: str):
    image = _image_or_404(job_id, image_id)
    content_type = image.input_content_type
    if content_type is None and image.source_url:  # imported by URL: the type is sniffed from the stored bytes
        try:
            with ctx().backends.blobs.open(image.input_path) as fh:
                kind = sniff(fh.read(256))
        except BlobNotFound:
            raise ClientError(404, "input_not_ready", f"{image.filename} has not been fetched from its URL")
        content_type = KINDS[kind].mime if kind else None
    return _send_blob(image.input_path, content_type, domain.safe_name(image.filename))


@api.get("/jobs/<job_id>/images/<image_id>/output")
def output_bytes(job_id: str, image_id: str):
    image = _image_or_404(job_id, image_id)
    if image.status == domain.IMAGE_FAILED:
        raise ClientError(404, "image_failed", f"{image.filename}: processing failed: {image.error}")
    if image.status != domain.IMAGE_SUCCEEDED or not image.output_path:
        raise ClientError(404, "output_not_ready", f"{image.filename} is still being processed")
    variant = request.args.get("variant")
    path, content_type = image.output_path, image.content_type
    if variant:
        match = next((o for o in image.outputs or [] if o.get("variant") == variant), None)
        if match is None:
            raise ClientError(404, "variant_not_found", f"{image.filename} has no variant {variant[:64]!r}")
        path, content_type = match["path"], match["content_type"]
    return _send_blob(path, content_type, path.rsplit("/", 1)[-1].split("-", 1)[-1])


def _zip_name(image: domain.Image, path: str, used: set[str]) -> str:
    name = path.rsplit("/", 1)[-1].split("-", 1)[-1]
    candidate, n = name, 1
    while candidate in used:
        n += 1
        stem, _, ext = name.rpartition(".")
        candidate = f"{stem}-{n}.{ext}"
    used.add(candidate)
    return candidate


@api.get("/jobs/<job_id>/archive.zip")
def archive(job_id: str):
    """Every output of the job in one zip (outputs are already compressed: stored, not deflated)."""
    job = _job_or_404(job_id)
    images = [i for i in ctx().backends.jobs.list_images(job_id) if i.status == domain.IMAGE_SUCCEEDED]
    if not images:
        raise ClientError(404, "no_outputs", "this job has no finished outputs yet")
    blobs = ctx().backends.blobs
    spool = SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    used: set[str] = set()
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as zf:
        for image in images:
            paths = [o["path"] for o in image.outputs] if image.outputs else [image.output_path]
            for path in paths:
                try:
                    with blobs.open(path) as src, zf.open(_zip_name(image, path, used), "w") as dst:
                        while chunk := src.read(1024 * 1024):
                            dst.write(chunk)
                except BlobNotFound:
                    log.warning("output %s missing from storage", path)
    spool.seek(0)
    return send_file(spool, mimetype="application/zip", as_attachment=True,
                     download_name=f"imageflow-{job.job_id[:8]}.zip")
