"""The read model of the API: how jobs, images, reports, stats and paging cursors are shown.
Pure reads over the ports, no Flask: the routes pass in the API's own origin."""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from imageflow import domain
from imageflow.blobstore import BlobStore
from imageflow.jobstore import JobStore, iter_images, iter_jobs
from imageflow.settings import Settings

from . import lifecycle_views
from .auth import Auth
from .errors import Refused, RefusalCode

log = logging.getLogger(__name__)

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise(value):
    """A CSV cell that no spreadsheet will run as a formula: text starting with = + - @ or a
    control character gets a leading apostrophe. Numbers and None pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def encode_cursor(job: domain.Job) -> str:
    """An opaque paging token for the page that follows ``job`` (newest first)."""
    return base64.urlsafe_b64encode(json.dumps([job.created_at, job.job_id]).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[str, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(created_at, str) or not domain.is_valid_id(job_id):
            raise ValueError
        return created_at, job_id
    except (ValueError, TypeError, binascii.Error):
        raise Refused(RefusalCode.INVALID_CURSOR, "cursor is not one this API returned") from None


DEFAULT_IMAGE_PAGE = 100
MAX_IMAGE_PAGE = 1000


def encode_image_cursor(image: domain.Image) -> str:
    """An opaque token for the images after ``image`` (its place in the job)."""
    return base64.urlsafe_b64encode(json.dumps({"seq": image.seq}).encode()).decode().rstrip("=")


def decode_image_cursor(text: str) -> int:
    try:
        seq = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2 ** 63:  # SQLite's integers
            raise ValueError
        return seq
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise Refused(RefusalCode.INVALID_CURSOR, "cursor is not one this API returned") from None


class SignedUrlCache:
    """Signed links reused while more than half their life is left: a page polled every second
    signs nothing new, and the browser's cache keeps hitting the same URLs. Bounded (LRU)."""

    def __init__(self, max_entries: int = 50_000):
        self._entries: OrderedDict[tuple, tuple[str, float]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: tuple, ttl: int, sign) -> str | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit and hit[1] - now > ttl / 2:
                self._entries.move_to_end(key)
                return hit[0]
        url = sign()
        if url is not None:
            with self._lock:
                self._entries[key] = (url, now + ttl)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        return url


SIGNED_URLS = SignedUrlCache()


@dataclass
class ImagePage:
    images: list[dict]
    next: str | None


@dataclass
class JobViews:
    """Views of one request: ``base_url`` is the API's origin as the caller reached it."""

    settings: Settings
    blobs: BlobStore
    jobs: JobStore
    auth: Auth
    base_url: str

    def links(self, job_id: str) -> dict:
        api = domain.job_api_url(self.base_url, job_id)
        return {"self": api, "results_page": domain.results_url(self.settings.public_base_url, job_id),
                "archive": domain.archive_url(self.base_url, job_id), "report": f"{api}/report.csv", "images": f"{api}/images",
                "files": f"{api}/files", "close": f"{api}/close"}

    def image_page(self, job: domain.Job, *, status: str | None = None, after: int | None = None,
                   limit: int = DEFAULT_IMAGE_PAGE) -> ImagePage:
        """One page of image views (URLs signed for this page only) and the link to the next."""
        batch = self.jobs.page_images(job.job_id, status=status, after=after, limit=limit + 1)
        page = batch[:limit]
        next_link = None
        if len(batch) > limit:
            query = f"limit={limit}&cursor={encode_image_cursor(page[-1])}" + (f"&status={status}" if status else "")
            next_link = f"{self.base_url}/api/v1/jobs/{job.job_id}/images?{query}"
        return ImagePage([self.image(i) for i in page], next_link)

    def blob_url(self, path: str | None, api_path: str) -> str | None:
        """A signed storage URL, or else a signed link to the API route that serves the bytes."""
        if not path:
            return None
        ttl = self.settings.signed_url_ttl_seconds

        def sign():
            try:
                signed = self.blobs.signed_url(path, ttl)
            except ValueError:  # a stored path the store refuses: show no link rather than fail the whole view
                log.error("refusing to link invalid blob path %r", path)
                return None
            return signed or self.auth.sign_link(f"{self.base_url}{api_path}", ttl)

        return SIGNED_URLS.get((path, self.base_url, api_path, ttl), ttl, sign)

    def image(self, image: domain.Image) -> dict:
        base = f"/api/v1/jobs/{image.job_id}/images/{image.image_id}"
        outputs = [{"variant": o.get("variant", ""),
                    "url": self.blob_url(o["path"], f"{base}/output"
                                         + (f"?variant={o['variant']}" if o.get("variant") else "")),
                    "width": o.get("width"), "height": o.get("height"), "bytes": o.get("bytes"),
                    "content_type": o.get("content_type")} for o in image.outputs or []]
        return {
            "image_id": image.image_id, "filename": image.filename, "status": image.status, "error": image.error,
            "error_code": image.error_code,
            "width": image.width, "height": image.height, "bytes": image.bytes, "content_type": image.content_type,
            "input_bytes": image.input_bytes, "input_content_type": image.input_content_type,
            "input_url": self.blob_url(image.input_path, f"{base}/input"),
            "source_url": image.source_url, "meta": image.meta or {},
            "output_url": self.blob_url(image.output_path, f"{base}/output")
            if image.status == domain.IMAGE_SUCCEEDED else None,
            "outputs": outputs,
            "input_preview_url": self.blob_url(image.preview_path, f"{base}/input/preview"),
            "output_preview_url": self.blob_url(image.output_preview_path, f"{base}/output/preview")
            if image.status == domain.IMAGE_SUCCEEDED else None,
            "blurhash": image.blurhash, "dominant_color": image.dominant_color, "choices": image.choices or {},
            **lifecycle_views.image_fields(image),
        }

    def job(self, job: domain.Job, images: list[domain.Image] | None = None, page: ImagePage | None = None) -> dict:
        view = {
            "job_id": job.job_id, "status": job.status, "name": job.name, "created_at": job.created_at,
            "updated_at": job.updated_at, "completed_at": job.completed_at, "total": job.total,
            "succeeded": job.succeeded, "failed": job.failed, "pending": max(0, job.total - job.done),
            "operations": job.operations, "preset": job.preset, "email": job.email, "webhook_url": job.webhook_url,
            "webhook_status": job.webhook_status, "webhook_attempts": domain.labelled_webhook_attempts(job),
            "webhook_runs": domain.webhook_runs(job),
            "links": self.links(job.job_id), "closed_at": job.closed_at,
            **lifecycle_views.job_fields(job, self.settings.job_retention_days),
        }
        if images is not None:
            view["images"] = [self.image(i) for i in images]
        if page is not None:
            view["images"] = page.images
            view["links"]["next"] = page.next
        return view

    def report_csv(self, job: domain.Job) -> Iterator[bytes]:
        """One row per image: its CSV columns, source, input and output URLs, status and error.
        Streamed: the header first, then the rows page by page (flat memory for any job)."""
        meta_keys = job.meta_keys
        if meta_keys is None:  # a job from before meta_keys was recorded: one pass to find the columns
            meta_keys = list(dict.fromkeys(key for image in iter_images(self.jobs, job.job_id)
                                           for key in (image.meta or {})))
        columns = ["row", "image_id", "filename", *meta_keys, "source_url", "input_url", "output_url", "status",
                   "error", "error_code", "width", "height", "bytes", "content_type", "blurhash", "dominant_color",
                   "choices", *lifecycle_views.REPORT_COLUMNS]
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")

        def flush() -> bytes:
            text = out.getvalue()
            out.seek(0)
            out.truncate()
            return text.encode("utf-8")

        writer.writerow(columns)
        yield "\ufeff".encode("utf-8") + flush()  # the BOM tells spreadsheets it is UTF-8
        for number, image in enumerate(iter_images(self.jobs, job.job_id), start=1):
            view = self.image(image)
            fetched = not image.source_url or image.status == domain.IMAGE_SUCCEEDED
            row = [number, image.image_id, image.filename, *[(image.meta or {}).get(k, "") for k in meta_keys],
                   image.source_url or "", view["input_url"] if fetched else "", view["output_url"] or "",
                   image.status, image.error or "", image.error_code or "", image.width or "", image.height or "",
                   image.bytes or "", image.content_type or "", image.blurhash or "", image.dominant_color or "",
                   json.dumps(image.choices, sort_keys=True) if image.choices else "",
                   *lifecycle_views.report_cells(image)]
            writer.writerow([neutralise(cell) for cell in row])
            if number % 200 == 0:
                yield flush()
        yield flush()

    def stats(self, owner: str | None) -> dict:
        """The caller's totals: jobs (by status), images, failures and bytes stored."""
        jobs = images = succeeded = failed = skipped = input_bytes = output_bytes = 0
        by_status = {status: 0 for status in domain.JOB_STATUSES}
        for job in iter_jobs(self.jobs, owner=owner):
            jobs += 1
            by_status[job.status] = by_status.get(job.status, 0) + 1
            images += job.total
            succeeded += job.succeeded
            failed += job.failed
            skipped += job.skipped
            for image in iter_images(self.jobs, job.job_id):
                input_bytes += image.input_bytes or 0
                output_bytes += sum(o.get("bytes") or 0 for o in image.outputs or []) or (image.bytes or 0)
        return dict(jobs=jobs, jobs_by_status=by_status, images=images, succeeded=succeeded, failed=failed,
                    pending=images - succeeded - failed - skipped,
                    bytes={"input": input_bytes, "output": output_bytes, "total": input_bytes + output_bytes})
