"""Downloads: an image's original, outputs and previews, every output of a job in one zip, and
its CSV report. With keys on, a signed link (``expires``, ``sig``) stands in for the key on the
pictures and the zip, so an ``<img src>`` works (routes.context.LINK_ENDPOINTS)."""
from __future__ import annotations

import logging

from flask import Response, request, send_file, stream_with_context
from zipstream import ZIP_STORED, ZipStream

from imageflow import domain
from imageflow.blobstore import BlobNotFound
from imageflow.engine.decoding import KINDS, sniff
from imageflow.jobstore import iter_images

from ..errors import Refused, RefusalCode
from .context import api_blueprint, ctx, job_or_404, views

log = logging.getLogger(__name__)

downloads = api_blueprint("downloads", __name__)


def _image_or_404(job_id: str, image_id: str) -> domain.Image:
    job_or_404(job_id)
    image = ctx().backends.jobs.get_image(job_id, image_id) if domain.is_valid_id(image_id) else None
    if image is None:
        raise Refused(RefusalCode.IMAGE_NOT_FOUND, f"job {job_id} has no image {image_id[:64]!r}")
    return image


def _send_blob(path: str, content_type: str | None, download_name: str):
    blobs = ctx().backends.blobs
    signed = blobs.signed_url(path, ctx().settings.signed_url_ttl_seconds)
    if signed:
        return Response(status=302, headers={"Location": signed})
    try:
        stream = blobs.open(path)
    except BlobNotFound:
        raise Refused(RefusalCode.BLOB_NOT_FOUND, "the file is no longer in storage")
    return send_file(stream, mimetype=content_type or "application/octet-stream", download_name=download_name,
                     max_age=3600)


@downloads.get("/jobs/<job_id>/images/<image_id>/input")
def input_bytes(job_id: str, image_id: str):
    image = _image_or_404(job_id, image_id)
    content_type = image.input_content_type
    if content_type is None and image.source_url:  # imported by URL: the type is sniffed from the stored bytes
        try:
            with ctx().backends.blobs.open(image.input_path) as fh:
                kind = sniff(fh.read(256))
        except BlobNotFound:
            raise Refused(RefusalCode.INPUT_NOT_READY, f"{image.filename} has not been fetched from its URL")
        content_type = KINDS[kind].mime if kind else None
    return _send_blob(image.input_path, content_type, domain.safe_name(image.filename))


@downloads.get("/jobs/<job_id>/images/<image_id>/output")
def output_bytes(job_id: str, image_id: str):
    image = _image_or_404(job_id, image_id)
    if image.status == domain.IMAGE_FAILED:
        raise Refused(RefusalCode.IMAGE_FAILED, f"{image.filename}: processing failed: {image.error}")
    if image.status != domain.IMAGE_SUCCEEDED or not image.output_path:
        raise Refused(RefusalCode.OUTPUT_NOT_READY, f"{image.filename} is still being processed")
    variant = request.args.get("variant")
    path, content_type = image.output_path, image.content_type
    if variant:
        match = next((o for o in image.outputs or [] if o.get("variant") == variant), None)
        if match is None:
            raise Refused(RefusalCode.VARIANT_NOT_FOUND, f"{image.filename} has no variant {variant[:64]!r}")
        path, content_type = match["path"], match["content_type"]
    return _send_blob(path, content_type, _output_name(image, path, variant or ""))


@downloads.get("/jobs/<job_id>/images/<image_id>/<any(input, output):which>/preview")
def preview_bytes(job_id: str, image_id: str, which: str):
    """The small WebP preview (about 320 px) of the image's input or output."""
    image = _image_or_404(job_id, image_id)
    path = image.preview_path if which == "input" else image.output_preview_path
    if not path:
        raise Refused(RefusalCode.PREVIEW_NOT_READY, f"{image.filename} has no {which} preview yet")
    return _send_blob(path, "image/webp", f"{domain.safe_stem(image.filename)}-preview.webp")


def _output_name(image: domain.Image, path: str, variant: str, used: set[str] | None = None) -> str:
    """The output's name (domain.output_name: what the CLI saves it as too), its extension the
    stored file's."""
    return domain.output_name(image.filename, path.rsplit(".", 1)[-1], variant, used)


@downloads.get("/jobs/<job_id>/archive.zip")
def archive(job_id: str):
    """Every output of the job in one zip, streamed as it is written: the images are read page
    by page and each file is copied through in chunks, so memory stays flat for any job size.
    Outputs are already compressed: stored, not deflated."""
    job = job_or_404(job_id)
    jobs, blobs = ctx().backends.jobs, ctx().backends.blobs
    if not jobs.page_images(job_id, status=domain.IMAGE_SUCCEEDED, limit=1):
        raise Refused(RefusalCode.NO_OUTPUTS, "this job has no finished outputs yet")

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
            outputs = [(o["path"], o.get("variant", "")) for o in image.outputs or []] or [(image.output_path, "")]
            for path, variant in outputs:
                stream.add(chunks(path), _output_name(image, path, variant, used))
                yield from stream.all_files()  # written now: nothing waits in the queue
        yield from stream.footer()

    stream = ZipStream(compress_type=ZIP_STORED)
    return Response(stream_with_context(entries(stream)), mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="imageflow-{job.job_id[:8]}.zip"',
                             "Cache-Control": "no-store"})


@downloads.get("/jobs/<job_id>/report.csv")
def report(job_id: str):
    """One row per image: its CSV columns, source, input and output URLs, status and error."""
    job = job_or_404(job_id)
    name = f"imageflow-{job.job_id[:8]}-report.csv"
    return Response(stream_with_context(views().report_csv(job)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
