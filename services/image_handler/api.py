"""The public REST API (ARCHITECTURE.md): /api/v1/jobs and friends."""
from __future__ import annotations

import json
import logging
import mimetypes
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file, stream_with_context
from zipstream import ZIP_STORED, ZipStream

from imageflow import domain
from imageflow.blobstore import BlobExists, BlobNotFound
from imageflow.jobstore import iter_images
from imageflow.engine import Limits
from imageflow.engine.decoding import KINDS, accepted_types, sniff, type_for_name
from imageflow.engine.schema import PRESETS, operations_json_schema
from imageflow.metrics import IMAGES_ACCEPTED, IMAGES_REJECTED, JOBS_CREATED
from imageflow.safe_http import FetchError

from .auth import ANONYMOUS
from .bodies import form_fields, json_body, refuse_unknown
from .errors import ClientError
from .estimate import estimate
from .intake import (
    Intake,
    JobRequest,
    check_overlays,
    validate_email,
    validate_operations,
    validate_webhook_secret,
)
from .openapi import DirectUploadFile, DirectUploadRequest, JsonJob, MultipartFiles, MultipartJob
from .url_lists import MAX_CSV_BYTES, TooManyUrls, check_entries, entries_from_csv, entries_from_json
from .views import DEFAULT_IMAGE_PAGE, MAX_IMAGE_PAGE, JobViews, decode_image_cursor

log = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/api/v1")

ACCEPTED_TYPES = accepted_types()


PUBLIC_ENDPOINTS = {"api.operations", "lifecycle_routes.openapi"}
UPLOAD_ENDPOINTS = {"api.direct_upload"}   # authorised by their own signed link (the file's name and size)
LINK_ENDPOINTS = {"api.input_bytes", "api.output_bytes", "api.archive", "api.preview_bytes"}   # may use a signed link instead of a key


@api.before_request
def identify_caller():
    """Set ``g.caller`` (services.image_handler.auth): the key's owner, or anyone for a valid signed
    download link or while keys are off; 401 otherwise."""
    auth = ctx().auth
    g.caller = ANONYMOUS
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    if request.endpoint in UPLOAD_ENDPOINTS:
        if not auth.verify_link(request.path, request.args):
            raise ClientError(403, "invalid_upload_link", "this upload link is invalid or has expired; ask "
                                                       "POST /api/v1/jobs/<job_id>/files for a new one")
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

    def rewind(self) -> None:
        """To read it again (werkzeug keeps each part in memory when small, else in a temporary file)."""
        self._storage.stream.seek(0)


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
    # api_keys_required: the page shows its API-key field only when the server asks for keys
    return jsonify(schema=operations_json_schema(), presets=PRESETS, api_keys_required=ctx().auth.enabled, limits={
        "max_upload_bytes": s.max_upload_bytes, "max_request_bytes": s.max_request_bytes,
        "max_files_per_job": s.max_files_per_job, "max_urls_per_job": s.max_urls_per_job, "max_csv_bytes": MAX_CSV_BYTES,
        "max_fetch_bytes": s.fetch_max_bytes,
        "max_image_pixels": s.max_image_pixels,
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


TEXT_OPTIONS = ("preset", "email", "webhook_url", "webhook_secret", "name")


def _job_request(fields, operations) -> JobRequest:
    """What every way of creating a job shares: the validated options and the caller."""
    for option in TEXT_OPTIONS:  # a JSON body may hold anything; a form's values are strings
        value = fields.get(option)
        if value is not None and not isinstance(value, str):
            raise ClientError(400, "malformed_request", f"{option} must be a string (or null), not "
                                                        f"{json.dumps(value)[:40]}", [{"field": option}])
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
                  admit=lambda job_id, n: c.auth.reserve_quota(c.backends.jobs, g.caller, job_id, n),
                  release=lambda job_id: c.auth.release_quota(c.backends.jobs, g.caller, job_id),
                  admit_images=c.auth.images_admission(g.caller))


def _url_entries(parse, data):
    try:
        return check_entries(parse(data, max_rows=ctx().settings.max_urls_per_job))
    except TooManyUrls as exc:
        raise ClientError(413, exc.code, exc.reason)
    except FetchError as exc:
        raise ClientError(400, exc.code, exc.reason)


# -- estimates (issue 16): the answer POST /jobs gives with "estimate": true --------------------
TRUE = {"1", "true", "yes", "on"}


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
        raise ClientError(400, "estimate_needs_files", "an estimate is made from uploaded files, not a CSV of URLs")
    job_request = _job_request(form, _form_operations(form.get("operations")))
    c = ctx()
    overlays = [_FormUpload(f) for f in request.files.getlist("overlay") if f.filename or f.content_length]
    assets = {name: data for name, (data, _mime) in
              check_overlays(job_request.operations, overlays, c.settings, Limits.from_settings(c.settings)).items()}
    return jsonify(estimate(c.settings, c.backends.jobs, uploads, job_request.operations,
                            admit=lambda n: c.auth.check_quota(c.backends.jobs, g.caller, n),  # read-only
                            owner=g.caller.owner, assets=assets, estimator=c.estimator))


@api.post("/jobs")
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
            raise ClientError(400, "estimate_needs_files", "an estimate is made from uploaded files (multipart "
                              "'files'); the URLs of a URL job are fetched only when the job runs")
        if body.get("open") is True:
            return _opened(_intake().open_job(_job_request(body, body.get("operations"))))
        if "urls" not in body:
            raise ClientError(400, "malformed_request", "a JSON body must be an object with a 'urls' list "
                                                        "or \"open\": true; send image files as multipart/form-data")
        job_request = _job_request(body, body.get("operations"))
        good, bad = _url_entries(entries_from_json, body["urls"])
        return _accepted(_intake().create_url_job(good, bad, job_request))
    form, uploads = _multipart_files(MultipartJob, "or a JSON body with a 'urls' list")
    if wants_estimate(form):  # the same body, and nothing is created
        return estimate_answer(form, uploads)
    csv_file = request.files.get("csv")
    job_request = _job_request(form, _form_operations(form.get("operations")))
    # The overlay files its overlay operations name come with any multipart job: of files, of a
    # CSV of URLs, or an open job (form field open=true, no files: they follow on /files).
    overlays = [_FormUpload(f) for f in request.files.getlist("overlay") if f.filename or f.content_length]
    if str(form.get("open", "")).lower() in TRUE:
        if uploads or csv_file is not None:
            raise ClientError(400, "malformed_request", "an open job takes its files later, at links.files: "
                                                        "send only the options and the 'overlay' files here")
        return _opened(_intake().open_job(job_request, overlays))
    if csv_file is not None:
        if uploads:
            raise ClientError(400, "malformed_request", "send image files or one CSV of URLs, not both")
        good, bad = _url_entries(entries_from_csv, csv_file.stream.read(MAX_CSV_BYTES + 1))
        return _accepted(_intake().create_url_job(good, bad, job_request, overlays))
    return _accepted(_intake().create_job(uploads, job_request, overlays))


def _multipart_files(model, alternative: str):
    """The form and its ``files`` of a multipart request whose fields ``model`` knows (415 for any
    other body, 400 for a field it does not know)."""
    if not request.content_type or not request.content_type.startswith("multipart/form-data"):
        raise ClientError(415, "unsupported_media_type", "send the images as multipart/form-data in the 'files' "
                                                      f"field, {alternative}")
    form_fields(model)
    form, files = request.form, request.files.getlist("files")
    return form, [_FormUpload(f) for f in files if f.filename or f.content_length]


def _opened(job: domain.Job):
    """The 201 answer for a new open job: where to send its files and how to close it."""
    JOBS_CREATED.inc()
    body = {"job_id": job.job_id, "status": job.status, "total": 0, "links": views().links(job.job_id)}
    if job.webhook_url:
        body["webhook_secret"] = job.webhook_secret
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = body["links"]["self"]
    return response


def _count_created(created) -> None:
    IMAGES_ACCEPTED.inc(len(created.images))
    for rejected in created.rejected:
        IMAGES_REJECTED.labels(code=rejected.code).inc()


@api.post("/jobs/<job_id>/files")
def add_files(job_id: str):
    """Files into an open job: multipart ``files`` (any number of requests, in parallel); each
    accepted image is processed at once."""
    job = _job_or_404(job_id)
    if request.is_json:
        return _direct_uploads(job, json_body(DirectUploadRequest, example='{"files": [{"filename", "bytes"}]}'))
    _form, uploads = _multipart_files(MultipartFiles, "or a JSON body with a 'files' list of direct uploads")
    created = _intake().add_files(job, uploads)
    _count_created(created)
    return jsonify({"job_id": job.job_id, "status": created.job.status, "total": created.job.total,
                    "images": [{"image_id": i.image_id, "filename": i.filename} for i in created.images],
                    "rejected": [r.to_dict() for r in created.rejected]})


MAX_DIRECT_UPLOADS = 1000  # upload targets per request
DIRECT_UPLOAD_FIELDS = set(DirectUploadFile.model_fields)


def _direct_uploads(job: domain.Job, body: dict):
    """Upload targets for files the client sends itself: a resumable Cloud Storage session on
    GCP, a signed image-handler URL locally. Nothing joins the job yet: each image does when
    its object lands (the object-finalize event reaches the interaction manager)."""
    files = body.get("files")
    if not isinstance(files, list) or not files or len(files) > MAX_DIRECT_UPLOADS:
        raise ClientError(400, "malformed_request", 'send {"files": [{"filename": ..., "bytes": ...}, ...]} '
                                                    f"with 1 to {MAX_DIRECT_UPLOADS} files")
    c = ctx()
    settings, intake = c.settings, _intake()
    intake.check_open(job)
    intake.check_room(job.total, len(files))
    # the quota as far as this job shows it; each upload is checked again, atomically, when it
    # lands (the interaction manager refuses one past QUOTA_ACTIVE_IMAGES as a failed image)
    intake.check_quota_room(job, len(files))
    ttl = settings.signed_url_ttl_seconds
    expires_at = (datetime.now(timezone.utc) + timedelta(seconds=ttl)).isoformat(timespec="seconds")
    uploads, rejected = [], []
    for index, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str) \
                or not isinstance(item.get("bytes"), int) or isinstance(item.get("bytes"), bool):
            raise ClientError(400, "malformed_request", f"files[{index}] needs a 'filename' string and a "
                                                        "'bytes' integer")
        refuse_unknown(item, DIRECT_UPLOAD_FIELDS, where=f"files[{index}].")
        name = domain.display_name(item["filename"], "(unnamed)")
        size = item["bytes"]
        # our own extension table first: the system's has no TGA or DDS, and calls .sgi a sealed GIF
        declared = item.get("content_type")
        if declared in (None, "", "application/octet-stream"):   # no type said: the name's extension
            declared = type_for_name(name) or mimetypes.guess_type(name)[0]
        content_type = declared or ""
        if not 0 < size <= settings.max_upload_bytes:
            rejected.append({"filename": name, "error": {"code": "file_too_large" if size > 0 else "empty_file",
                             "message": f"{name}: a file must be 1 byte to "
                                        f"{settings.max_upload_bytes // (1024 * 1024)} MB (MAX_UPLOAD_BYTES)"}})
            continue
        if content_type not in ACCEPTED_TYPES:
            rejected.append({"filename": name, "error": {"code": "unsupported_image", "message":
                             f"{name}: {content_type or 'this type'} is not an image type ImageFlow takes "
                             f"({', '.join(ACCEPTED_TYPES)})"}})
            continue
        image_id = domain.new_id()
        path = domain.input_path(job.job_id, image_id, name)
        metadata = domain.direct_upload_metadata(name)
        try:
            target = c.backends.blobs.upload_target(path, content_type, size, metadata, ttl,
                                                    origin=request.headers.get("Origin"))
        except Exception as exc:
            raise ClientError(503, "unavailable", "could not prepare the uploads (storage is unavailable); "
                                                  "try again shortly") from exc
        if target is None:  # local store: the image-handler takes the bytes, signed for this one file
            query = urlencode({"name": name, "bytes": size, "type": content_type})
            url = c.auth.sign_link(f"{request.host_url.rstrip('/')}/api/v1/jobs/{job.job_id}/uploads/{image_id}"
                                   f"?{query}", ttl, always=True)
            target_view = {"url": url, "method": "PUT", "headers": {"Content-Type": content_type}}
        else:
            target_view = {"url": target.url, "method": target.method, "headers": target.headers}
        uploads.append({"image_id": image_id, "filename": name, **target_view, "expires_at": expires_at})
    return jsonify({"job_id": job.job_id, "uploads": uploads, "rejected": rejected})


@api.put("/jobs/<job_id>/uploads/<image_id>")
def direct_upload(job_id: str, image_id: str):
    """The local stand-in for a Cloud Storage upload session: stores exactly the file the signed
    link names, with its metadata; the blob store then announces it (object finalize)."""
    if not (domain.is_valid_id(job_id) and domain.is_valid_id(image_id)):
        raise ClientError(404, "job_not_found", "no such upload")
    job = ctx().backends.jobs.get_job(job_id)
    if job is None:
        raise ClientError(404, "job_not_found", f"no job with id {job_id}")
    _intake().check_open(job)
    name, size, content_type = request.args["name"], int(request.args["bytes"]), request.args["type"]
    path = domain.input_path(job_id, image_id, name)
    blobs = ctx().backends.blobs
    # Write-once, like a Cloud Storage session: a replayed link must not swap the bytes of a file
    # that was accepted (and maybe rendered) for others. Checked before the body is read; the
    # store's atomic if_absent put settles two PUTs racing for the same target.
    if ctx().backends.jobs.get_image(job_id, image_id) is not None or blobs.exists(path):
        raise _already_uploaded(name, image_id)
    if size > ctx().settings.max_upload_bytes:
        raise ClientError(413, "file_too_large", f"{name}: a file must be at most "
                          f"{ctx().settings.max_upload_bytes // (1024 * 1024)} MB (MAX_UPLOAD_BYTES)")
    if request.content_length != size:
        raise ClientError(400, "wrong_size", f"{name}: the upload link is for {size} bytes, "
                                             f"{request.content_length} were sent")
    data = request.stream.read(size + 1)
    if len(data) != size:
        raise ClientError(400, "wrong_size", f"{name}: {len(data)} bytes arrived, {size} were announced")
    try:
        blobs.put(path, data, content_type, metadata=domain.direct_upload_metadata(name), if_absent=True)
    except BlobExists:
        raise _already_uploaded(name, image_id) from None
    except Exception as exc:
        raise ClientError(503, "unavailable", "could not store the file; send it again shortly") from exc
    return jsonify({"image_id": image_id, "filename": name, "bytes": size})


def _already_uploaded(name: str, image_id: str) -> ClientError:
    return ClientError(409, "already_uploaded", f"{name}: this upload link was used already (image {image_id} "
                       "has its file); an upload link takes one file once: ask POST /api/v1/jobs/<job_id>/files "
                       "for a new link to add another")


@api.post("/jobs/<job_id>/close")
def close(job_id: str):
    """No more files: the job completes (email, webhook) once every image has an outcome."""
    job = _intake().close(_job_or_404(job_id))
    return jsonify(views().job(job))


def _accepted(created):
    """The 202 answer for a new job."""
    JOBS_CREATED.inc()
    _count_created(created)
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
    """The job, its counts and the first page of its images (``links.next`` for the rest)."""
    job, read = _job_or_404(job_id), views()
    return jsonify(read.job(job, page=read.image_page(job, limit=DEFAULT_IMAGE_PAGE)))


@api.get("/jobs/<job_id>/images")
def images(job_id: str):
    """A page of the job's images in upload order: ``?status=``, ``?cursor=``, ``?limit=`` (1-1000)."""
    job = _job_or_404(job_id)
    status_filter = request.args.get("status") or None
    if status_filter is not None and status_filter not in domain.IMAGE_STATUSES:
        raise ClientError(400, "invalid_status", f"status must be one of {', '.join(domain.IMAGE_STATUSES)}")
    try:
        limit = int(request.args.get("limit", str(DEFAULT_IMAGE_PAGE)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_IMAGE_PAGE:
        raise ClientError(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_IMAGE_PAGE}")
    after = decode_image_cursor(request.args["cursor"]) if request.args.get("cursor") else None
    page = views().image_page(job, status=status_filter, after=after, limit=limit)
    return jsonify({"job_id": job.job_id, "images": page.images, "links": {"next": page.next}})


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


@api.get("/jobs/<job_id>/images/<image_id>/<any(input, output):which>/preview")
def preview_bytes(job_id: str, image_id: str, which: str):
    """The small WebP preview (about 320 px) of the image's input or output."""
    image = _image_or_404(job_id, image_id)
    path = image.preview_path if which == "input" else image.output_preview_path
    if not path:
        raise ClientError(404, "preview_not_ready", f"{image.filename} has no {which} preview yet")
    return _send_blob(path, "image/webp", f"{domain.safe_stem(image.filename)}-preview.webp")


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
    """Every output of the job in one zip, streamed as it is written: the images are read page
    by page and each file is copied through in chunks, so memory stays flat for any job size.
    Outputs are already compressed: stored, not deflated."""
    job = _job_or_404(job_id)
    jobs, blobs = ctx().backends.jobs, ctx().backends.blobs
    if not jobs.page_images(job_id, status=domain.IMAGE_SUCCEEDED, limit=1):
        raise ClientError(404, "no_outputs", "this job has no finished outputs yet")

    def chunks(path: str):
        try:
            with blobs.open(path) as src:
                while chunk := src.read(1024 * 1024):
                    yield chunk
        except BlobNotFound:
            log.warning("output %s missing from storage", path)

    def entries(stream: ZipStream):
        used: set[str] = set()
        for image in iter_images(jobs, job_id, status=domain.IMAGE_SUCCEEDED):
            for path in [o["path"] for o in image.outputs] if image.outputs else [image.output_path]:
                stream.add(chunks(path), _zip_name(image, path, used))
                yield from stream.all_files()  # written now: nothing waits in the queue
        yield from stream.footer()

    stream = ZipStream(compress_type=ZIP_STORED)
    return Response(stream_with_context(entries(stream)), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="imageflow-{job.job_id[:8]}.zip"',
                             "Cache-Control": "no-store"})
