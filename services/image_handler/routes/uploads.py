"""Files into an open job: multipart uploads, or upload targets for files the client sends
itself (a Cloud Storage session on GCP; locally the signed PUT below); then closing the job."""
from __future__ import annotations

from flask import Response, jsonify, request

from imageflow import domain
from imageflow.blobstore import BlobExists
from imageflow.upload_check import too_big

from ..bodies import json_body
from ..errors import ClientError, Refused, RefusalCode
from ..openapi import DirectUploadRequest, MultipartFiles
from ..resumable import BadContentRange, ContentRange, PartialUploads
from .context import (
    api_blueprint,
    count_created,
    ctx,
    job_or_404,
    multipart_files,
    upload_targets,
    views,
)
from .context import intake as _intake

uploads = api_blueprint("uploads", __name__)


@uploads.post("/jobs/<job_id>/files")
def add_files(job_id: str):
    """Files into an open job: multipart ``files`` (any number of requests, in parallel); each
    accepted image is processed at once. A JSON body asks for direct-upload targets instead
    (services.image_handler.upload_targets)."""
    job = job_or_404(job_id)
    if request.is_json:
        body = json_body(DirectUploadRequest, example='{"files": [{"filename", "bytes"}]}')
        return jsonify(upload_targets().create(job, body.get("files"), origin=request.headers.get("Origin")))
    _form, files = multipart_files(MultipartFiles, "or a JSON body with a 'files' list of direct uploads")
    created = _intake().add_files(job, files)
    count_created(created)
    return jsonify({"job_id": job.job_id, "status": created.job.status, "total": created.job.total,
                    "images": [{"image_id": i.image_id, "filename": i.filename} for i in created.images],
                    "rejected": [r.to_dict() for r in created.rejected]})


@uploads.put("/jobs/<job_id>/uploads/<image_id>")
def direct_upload(job_id: str, image_id: str):
    """The local stand-in for a Cloud Storage upload session: stores exactly the file the signed
    link names, with its metadata; the blob store then announces it (object finalize). Sent whole,
    or in chunks with Content-Range as to a resumable Cloud Storage session
    (services.image_handler.resumable)."""
    if not (domain.is_valid_id(job_id) and domain.is_valid_id(image_id)):
        raise Refused(RefusalCode.JOB_NOT_FOUND, "no such upload")
    job = ctx().backends.jobs.get_job(job_id)
    if job is None:
        raise Refused(RefusalCode.JOB_NOT_FOUND, f"no job with id {job_id}")
    _intake().check_open(job)
    name, size, content_type = request.args["name"], int(request.args["bytes"]), request.args["type"]
    path = domain.input_path(job_id, image_id, name)
    blobs = ctx().backends.blobs
    chunk = _content_range(name, size)
    # Write-once, like a Cloud Storage session: a replayed link must not swap the bytes of a file
    # that was accepted (and maybe rendered) for others. Checked before the body is read; the
    # store's atomic if_absent put settles two PUTs racing for the same target.
    if ctx().backends.jobs.get_image(job_id, image_id) is not None or blobs.exists(path):
        if chunk is not None and chunk.is_query:
            return _stored(image_id, name, size)  # a resuming client learns the file is complete
        raise _already_uploaded(name, image_id)
    if size > ctx().settings.max_upload_bytes:
        raise Refused(RefusalCode.FILE_TOO_LARGE, f"{name}: {too_big(ctx().settings.max_upload_bytes)}")
    if chunk is None:
        data = _whole_body(name, size)
    else:
        sessions = _partial_uploads()
        if chunk.is_query:
            return _resume_incomplete(sessions.received(job_id, image_id))
        if request.content_length != chunk.length:
            raise Refused(RefusalCode.WRONG_SIZE, f"{name}: Content-Range names {chunk.length} bytes, "
                                                 f"{request.content_length} were sent")
        kept = sessions.append(job_id, image_id, chunk.first, chunk.length, request.stream)
        if kept < size:
            return _resume_incomplete(kept)
        data = sessions.take(job_id, image_id)
    try:
        blobs.put(path, data, content_type, metadata=domain.direct_upload_metadata(name), if_absent=True)
    except BlobExists:
        raise _already_uploaded(name, image_id) from None
    except Exception as exc:
        raise Refused(RefusalCode.UNAVAILABLE, "could not store the file; send it again shortly") from exc
    return _stored(image_id, name, size)


def _content_range(name: str, size: int) -> ContentRange | None:
    header = request.headers.get("Content-Range")
    if header is None:
        return None
    try:
        chunk = ContentRange.parse(header)
    except BadContentRange as exc:
        raise Refused(RefusalCode.INVALID_CONTENT_RANGE, f"{name}: {exc}") from None
    if chunk.total != size:
        raise Refused(RefusalCode.WRONG_SIZE, f"{name}: the upload link is for {size} bytes, Content-Range "
                                             f"names {chunk.total}")
    return chunk


def _whole_body(name: str, size: int) -> bytes:
    if request.content_length != size:
        raise Refused(RefusalCode.WRONG_SIZE, f"{name}: the upload link is for {size} bytes, "
                                             f"{request.content_length} were sent")
    data = request.stream.read(size + 1)
    if len(data) != size:
        raise Refused(RefusalCode.WRONG_SIZE, f"{name}: {len(data)} bytes arrived, {size} were announced")
    return data


def _partial_uploads() -> PartialUploads:
    settings = ctx().settings
    return PartialUploads(settings.data_dir / "partial-uploads", settings.signed_url_ttl_seconds)


def _resume_incomplete(kept: int) -> Response:
    """Cloud Storage's answer to a chunk that does not finish the file: 308 and the bytes kept."""
    response = Response(status=308)
    if kept:
        response.headers["Range"] = f"bytes=0-{kept - 1}"
    return response


def _stored(image_id: str, name: str, size: int) -> Response:
    return jsonify({"image_id": image_id, "filename": name, "bytes": size})


def _already_uploaded(name: str, image_id: str) -> ClientError:
    return Refused(RefusalCode.ALREADY_UPLOADED, f"{name}: this upload link was used already (image {image_id} "
                   "has its file); an upload link takes one file once: ask POST /api/v1/jobs/<job_id>/files "
                   "for a new link to add another")


@uploads.post("/jobs/<job_id>/close")
def close(job_id: str):
    """No more files: the job completes (email, webhook) once every image has an outcome."""
    job = _intake().close(job_or_404(job_id))
    if ctx().settings.backend == "local":
        _partial_uploads().discard_job(job_id)  # a chunked upload left unfinished can no longer join
    return jsonify(views().job(job))
