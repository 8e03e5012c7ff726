"""Creating jobs: everything image-handler does between the request and the 202, without Flask.

Validation happens before anything is stored: the operations, the email, the file count,
each file's size and real type (sniffed from its bytes). A bad file is rejected with its
reason while the good ones go through; a job is created only if at least one file is good.
"""
from __future__ import annotations

import logging
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

from imageflow import domain, fair_share
from imageflow.blobstore import BlobStore
from imageflow.bus import MessageBus
from imageflow.direct_uploads import DirectUploads
from imageflow.domain import ErrorCode, Image, Job
from imageflow.engine import Limits, ProbeInfo
from imageflow.engine.decoding import accepted_types
from imageflow.engine.overlay import is_url, named_overlays
from imageflow.engine.schema import OperationsError, resolve_operations
from imageflow.jobstore import AdmitImages, JobClosed, JobStore, TooManyImages
from imageflow.messages import JobSubmitted
from imageflow.settings import Settings
from imageflow.upload_check import UploadChecked, check_upload

from .errors import ClientError, Refused, RefusalCode
from .url_lists import RejectedUrl, UrlEntry

log = logging.getLogger(__name__)

# What a direct upload may announce as its type (a multipart upload is sniffed instead).
ACCEPTED_TYPES = accepted_types()

# A single address, no display name, no whitespace or line breaks (header injection).
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


class Upload(Protocol):
    """One uploaded file: its client-side name and a way to read at most ``limit`` bytes."""

    filename: str | None

    def read(self, limit: int) -> bytes: ...


@dataclass
class Rejected:
    filename: str
    code: RefusalCode
    message: str
    error_code: ErrorCode | None = None    # the engine's code, as a failed image carries it

    def to_dict(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.error_code:
            error["details"] = {"error_code": self.error_code}
        return {"filename": self.filename, "error": error}


@dataclass
class Created:
    job: Job
    images: list[Image]
    rejected: list[Rejected] = field(default_factory=list)


def validate_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip()
    if len(email) > 254 or not _EMAIL_RE.match(email):
        raise Refused(RefusalCode.INVALID_EMAIL, f"email is not a valid address: {email[:80]!r}")
    return email


def validate_operations(preset: str | None, operations) -> list[dict]:
    try:
        return resolve_operations(preset or None, operations)
    except OperationsError as exc:
        raise Refused(RefusalCode.INVALID_OPERATIONS, exc.message, exc.details) from None


def check_file(upload: Upload, settings: Settings, limits: Limits) -> tuple[bytes, ProbeInfo] | Rejected:
    """Read one file within the size limit and sniff it (imageflow.upload_check, the check direct
    uploads go through too); the bytes and probe info, or why not."""
    checked = check_upload(upload.read, settings, limits)
    if isinstance(checked, UploadChecked):
        return checked.data, checked.info
    name = domain.display_name(upload.filename, "(unnamed)")
    return Rejected(name, rejection_code(checked.code), f"{name}: {checked.reason}",
                    checked.code if checked.by_engine else None)


def rejection_code(code: ErrorCode) -> RefusalCode:
    """The request-level code (``rejected[].error.code``) of a file refused with ``code``."""
    if code == ErrorCode.FILE_TOO_LARGE:
        return RefusalCode.FILE_TOO_LARGE
    too_large = code in (ErrorCode.TOO_LARGE, ErrorCode.TOO_MANY_FRAMES)
    return RefusalCode.TOO_LARGE if too_large else RefusalCode.UNSUPPORTED_IMAGE


@dataclass
class CheckedFile:
    """An upload read within its size limit and sniffed: its display name, bytes and probe info."""

    filename: str
    data: bytes
    info: object


def checked_files(uploads: Iterable[Upload], settings: Settings, limits: Limits) -> Iterator[CheckedFile | Rejected]:
    """Each upload checked in turn (a generator: only one file's bytes at a time), as a
    :class:`CheckedFile` or the :class:`Rejected` that says why not."""
    for upload in uploads:
        checked = check_file(upload, settings, limits)
        if isinstance(checked, Rejected):
            yield checked
            continue
        data, info = checked
        yield CheckedFile(domain.display_name(upload.filename, f"image.{info.ext}"), data, info)


def check_overlays(operations: list[dict], uploads: Iterable[Upload], settings: Settings,
                   limits: Limits) -> dict[str, tuple[bytes, str]]:
    """The overlay files sent with a job (multipart field ``overlay``), read and sniffed:
    ``{name: (bytes, mime)}``. Every overlay operation must name one of them or a URL, and
    every file sent must be named."""
    named = [name for name in named_overlays(operations) if not is_url(name)]
    files: dict[str, tuple[bytes, str]] = {}
    for upload in uploads:
        checked = check_file(upload, settings, limits)
        if isinstance(checked, Rejected):
            status = 415 if checked.code == RefusalCode.UNSUPPORTED_IMAGE else 413
            raise ClientError(status, RefusalCode.INVALID_OVERLAY, f"overlay {checked.message}")
        data, info = checked
        files[domain.display_name(upload.filename, "overlay")] = (data, info.mime)
    missing = [name for name in named if name not in files]
    if missing:
        raise Refused(RefusalCode.INVALID_OPERATIONS,
                      f"operations: the overlay image {missing[0]!r} was not sent: upload it in the 'overlay' "
                      f"field (or give an http(s) URL)", [{"index": None, "op": "overlay", "field": "image",
                                                            "message": f"{name!r} was not sent"} for name in missing])
    unused = [name for name in files if name not in named]
    if unused:
        raise Refused(RefusalCode.INVALID_OPERATIONS, f"the overlay file {unused[0]!r} is not named by any overlay "
                                                      f"operation ({{\"op\": \"overlay\", \"image\": \"{unused[0]}\"}})")
    return files


def job_closed(job: Job) -> Refused:
    return Refused(RefusalCode.JOB_CLOSED, f"job {job.job_id} takes no more files (it is {job.status}); create a new job for more")


def too_many_files(held: int, adding: int, limit: int) -> Refused:
    room = max(0, limit - held)
    where = f"the job holds {held}, room for {room} more; " if held else ""
    return Refused(RefusalCode.TOO_MANY_FILES, f"too many files: {adding} sent, {where}at most {limit} per job "
                                               "(MAX_FILES_PER_JOB)", {"limit": limit, "held": held, "room": room})


@dataclass(frozen=True)
class JobRequest:
    """What a caller asks for, validated: the same for every way of creating a job."""

    operations: list[dict]
    preset: str | None = None
    email: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    name: str | None = None
    owner: str | None = None

    def new_job(self, **fields) -> Job:
        """A new job document; with a webhook, its delivery is pending from the start (so a
        restarted interaction manager still delivers it) and it has a signing secret."""
        secret = (self.webhook_secret or secrets.token_hex(32)) if self.webhook_url else None
        return Job(job_id=domain.new_id(), operations=self.operations, preset=self.preset, email=self.email,
                   webhook_url=self.webhook_url, owner=self.owner, name=self.name, webhook_secret=secret,
                   webhook_status="pending" if self.webhook_url else None, **fields)


def validate_webhook_secret(secret: str | None) -> str | None:
    """A caller-chosen webhook secret: 16 to 200 printable ASCII characters."""
    if secret is None or secret == "":
        return None
    if not 16 <= len(secret) <= 200 or not all(33 <= ord(ch) < 127 for ch in secret):
        raise Refused(RefusalCode.INVALID_WEBHOOK_SECRET,
                      "webhook_secret must be 16 to 200 printable characters without spaces")
    return secret


@dataclass
class Intake:
    """Creates jobs: validation before storage, the originals stored, the job recorded and
    announced with ``job.submitted``. ``admit(job_id, n, cost)`` reserves the caller's quota before
    anything is stored (it raises to refuse), and again with the job's cost once its files are
    probed; ``release(job_id)`` gives it back if the job is not created after all. ``admit_images`` checks the quota of files joining an open job, in the
    job store's transaction that adds them (``JobStore.join_images``)."""

    settings: Settings
    blobs: BlobStore
    jobs: JobStore
    bus: MessageBus
    admit: Callable[[str, int, float], None] | None = None
    release: Callable[[str], None] | None = None
    admit_images: AdmitImages | None = None

    def create_job(self, uploads: Iterable[Upload], request: JobRequest, overlays: Iterable[Upload] = ()) -> Created:
        """A job of uploaded files; a bad file is refused alone, with its reason. ``overlays``
        are the images its overlay operations name, stored once for the job."""
        settings = self.settings
        uploads = list(uploads)
        overlay_files = check_overlays(request.operations, overlays, settings, Limits.from_settings(settings))
        if not uploads:
            raise Refused(RefusalCode.NO_FILES, "no files: send one or more images in the 'files' field")
        self.check_room(0, len(uploads))
        job = request.new_job()
        with self.reserved(job, len(uploads)):  # the image count before any byte is stored
            images, rejected = self._store_files(job, uploads)
            self.reserve_cost(job, images)       # the cost once the headers have told each file's size
            self._store_overlays(job, overlay_files)
            return self.record(job, images, rejected)

    def open_job(self, request: JobRequest, overlays: Iterable[Upload] = ()) -> Job:
        """An open job with no image yet: files join it with ``add_files`` until ``close``.
        The ``overlays`` its operations name come with this request and are stored before the
        job exists, so no image of it can render without them."""
        overlay_files = check_overlays(request.operations, overlays, self.settings, Limits.from_settings(self.settings))
        now = domain.utcnow()
        job = request.new_job(status=domain.OPEN, last_file_at=now)
        with self.reserved(job, 0):
            self._store_overlays(job, overlay_files)
            try:
                self.jobs.create_job(job, [])
            except Exception as exc:
                self._discard(job, exc, "record the job (the job store is unavailable)")
        log.info("job %s opened", job.job_id)
        return job

    def add_files(self, job: Job, uploads: Iterable[Upload]) -> Created:
        """Files into an open job: each accepted image is recorded and its task published at
        once. If recording fails nothing of this request is kept; if publishing fails the
        images stay untasked and the interaction manager's fan-out publishes them."""
        uploads = list(uploads)
        if not uploads:
            raise Refused(RefusalCode.NO_FILES, "no files: send one or more images in the 'files' field")
        self.check_open(job)
        self.check_room(job.total, len(uploads))
        self.check_quota_room(job, len(uploads))
        images, rejected = self._store_files(job, uploads, keep_job=True)
        try:
            job = self.jobs.add_images(job.job_id, images, max_total=self.settings.max_files_per_job,
                                       now=domain.utcnow(), admit=self.admit_images)
        except ClientError:  # over the caller's quota (admit_images): nothing joined
            self._delete_inputs(images)
            raise
        except JobClosed as exc:  # closed meanwhile: nothing joined
            self._delete_inputs(images)
            raise job_closed(exc.job) from None
        except TooManyImages as exc:  # other requests filled it meanwhile: nothing joined
            self._delete_inputs(images)
            raise too_many_files(exc.job.total, len(images), exc.limit) from None
        except Exception as exc:
            self._delete_inputs(images)
            raise Refused(RefusalCode.UNAVAILABLE, "could not record the files (the job store is unavailable); "
                                                   "nothing was kept, try again shortly") from exc
        self.publish_tasks(job, images)
        log.info("job %s: %d images added (%d in all), %d rejected", job.job_id, len(images), job.total,
                 len(rejected))
        return Created(job, images, rejected)

    def publish_tasks(self, job: Job, images: list[Image]) -> None:
        """Hand the images' tasks to the bus (``fair_share.hand_over``): with fair share on the manager
        releases them within the key's share; off, they are published now. A failure leaves the rest
        to fan-out."""
        fair_share.hand_over(self.settings, self.jobs, self.bus, job, images)

    def close(self, job: Job) -> Job:
        """No more files: the job completes once every image has an outcome. ``job.submitted``
        tells the interaction manager (it publishes any task still missing and announces a job
        that closed already finished). Close loses nothing: the direct uploads that have landed
        but whose finalize event has not joined them yet join first."""
        if job.is_open:
            self.join_landed(job, "close")
            job = self.jobs.close_job(job.job_id, domain.utcnow())
            self.announce(job.job_id)
            log.info("job %s closed with %d images (%s)", job.job_id, job.total, job.status)
        return job

    def announce(self, job_id: str) -> None:
        """``job.submitted`` for a job that changed (closed, cancelled, retried): the interaction
        manager fans it out or completes it. If it cannot be published the manager's sweep finds
        the job later."""
        try:
            self.bus.publish(self.settings.topics.jobs, JobSubmitted(job_id=job_id).encode(), {"job_id": job_id})
        except Exception:
            log.exception("could not publish job.submitted for %s; the sweep will pick it up", job_id)

    def join_landed(self, job: Job, action: str) -> None:
        """Before an open job stops taking files (close, or a cancel that closes it): the direct
        uploads that have landed but whose finalize event has not joined them yet join now, so
        none the store acknowledged is lost. 503 when storage cannot be listed (the job stays open)."""
        try:
            DirectUploads(self.settings, self.jobs, self.bus, self.blobs).join_landed(job.job_id)
        except Exception as exc:  # going on could lose them: the client sends the request again later
            raise Refused(RefusalCode.UNAVAILABLE, "could not gather the job's uploaded files (storage is "
                                                   f"unavailable); the job is still open: {action} it again shortly") from exc

    def reserve_cost(self, job: Job, images: list[Image]) -> None:
        """The caller's reservation for ``job`` replaced by one with its images' real cost
        (``QUOTA_ACTIVE_COST``), atomically as the first; refused (429): the stored originals go."""
        job.cost = round(sum(image.cost for image in images), 3)
        if self.admit and job.cost:
            try:
                self.admit(job.job_id, len(images), job.cost)
            except ClientError:
                self._delete_inputs(images)
                raise

    def check_open(self, job: Job) -> None:
        if not job.is_open:
            raise job_closed(job)

    def check_quota_room(self, job: Job, adding: int) -> None:
        """Before any byte is stored: refused (429) when this job's own unfinished images already
        leave no room for ``adding`` under the caller's image quota. The exact check, over all the
        caller's active jobs, runs when the images join (``admit_images``, atomic)."""
        if self.admit_images is not None and adding:
            self.admit_images([job], [Image(job_id=job.job_id, image_id="", filename="", input_path="")] * adding)

    def check_room(self, held: int, adding: int) -> None:
        if held + adding > self.settings.max_files_per_job:
            raise too_many_files(held, adding, self.settings.max_files_per_job)

    @contextmanager
    def reserved(self, job: Job, images: int, cost: float = 0.0):
        """The caller's quota held for ``job`` (``images`` costing ``cost``) while it is created, given
        back if that fails."""
        if self.admit:
            self.admit(job.job_id, images, cost)
        try:
            yield
        except BaseException:
            if self.release:
                try:
                    self.release(job.job_id)
                except Exception:  # it lapses on its own (RESERVATION_TTL_SECONDS)
                    log.exception("could not release the quota reserved for %s", job.job_id)
            raise

    def _store_files(self, job: Job, uploads: list[Upload], *, keep_job: bool = False) -> tuple[list[Image],
                                                                                                list[Rejected]]:
        """Check and store each file under the job: the images to record, and the refusals. When
        none is good, the refusal is the request's answer (413 if every file was too large)."""
        settings = self.settings
        limits = Limits.from_settings(settings)
        images: list[Image] = []
        rejected: list[Rejected] = []
        for checked in checked_files(uploads, settings, limits):
            if isinstance(checked, Rejected):
                rejected.append(checked)
                continue
            data, info, filename = checked.data, checked.info, checked.filename
            image_id = domain.new_id()
            path = domain.input_path(job.job_id, image_id, filename)
            try:
                self.blobs.put(path, data, info.mime)
            except Exception as exc:
                if keep_job:
                    self._delete_inputs(images)
                    raise Refused(RefusalCode.UNAVAILABLE, "could not store the files (storage is unavailable); "
                                                           "nothing was kept, try again shortly") from exc
                self._discard(job, exc, "store the originals (storage is unavailable)")
            images.append(Image(job_id=job.job_id, image_id=image_id, filename=filename, input_path=path,
                                input_content_type=info.mime, input_bytes=len(data),
                                input_megapixels=domain.megapixels(info.width, info.height),
                                cost=domain.image_cost(job.operations, domain.megapixels(info.width, info.height))))
        if not images:
            too_large = (RefusalCode.FILE_TOO_LARGE, RefusalCode.TOO_LARGE)
            status = 413 if all(r.code in too_large for r in rejected) else 415
            raise ClientError(status, RefusalCode.NO_VALID_IMAGES, "none of the files could be accepted: "
                              + "; ".join(r.message for r in rejected[:5]), [r.to_dict() for r in rejected])
        return images, rejected

    def _delete_inputs(self, images: list[Image]) -> None:
        for image in images:
            try:
                self.blobs.delete_prefix(image.input_path)
            except Exception:
                log.exception("could not delete %s", image.input_path)

    def _store_overlays(self, job: Job, overlay_files: dict[str, tuple[bytes, str]]) -> None:
        for name, (data, mime) in overlay_files.items():
            try:
                self.blobs.put(domain.overlay_path(job.job_id, name), data, mime)
            except Exception as exc:
                self._discard(job, exc, "store the overlay (storage is unavailable)")

    def create_url_job(self, entries: list[UrlEntry], rejected: list[RejectedUrl], request: JobRequest,
                       overlays: Iterable[Upload] = ()) -> Created:
        """A job whose images are URLs (checked by ``url_lists.check_entries``): one queued image
        per URL with nothing stored yet; the interaction manager fetches them. ``overlays`` (a CSV
        job) are the images its overlay operations name."""
        overlay_files = check_overlays(request.operations, overlays, self.settings, Limits.from_settings(self.settings))
        if not entries:
            raise Refused(RefusalCode.NO_VALID_URLS, "none of the URLs can be imported: "
                          + "; ".join(r.message for r in rejected[:5]), [r.to_dict() for r in rejected])
        limit = self.settings.max_urls_per_job
        if len(entries) + len(rejected) > limit:
            raise Refused(RefusalCode.TOO_MANY_URLS, f"too many URLs: {len(entries) + len(rejected)} sent, "
                                                     f"at most {limit} per job (MAX_URLS_PER_JOB)", {"limit": limit})
        job = request.new_job(meta_keys=list(dict.fromkeys(key for entry in entries for key in entry.meta or {})))
        images = []
        for entry in entries:
            image_id = domain.new_id()
            filename = domain.display_name(entry.filename)
            images.append(Image(job_id=job.job_id, image_id=image_id, filename=filename,
                                input_path=domain.input_path(job.job_id, image_id, filename),
                                source_url=entry.url, meta=entry.meta,
                                cost=domain.image_cost(job.operations)))  # size unknown until fetched
        job.cost = round(sum(image.cost for image in images), 3)
        with self.reserved(job, len(entries), job.cost):
            self._store_overlays(job, overlay_files)
            return self.record(job, images, rejected)

    def _discard(self, job: Job, exc: Exception, step: str):
        """Nothing refers to the originals stored so far: delete them (none is left without a job), then 503."""
        log.error("could not %s for job %s: %s", step, job.job_id, exc)
        try:
            self.blobs.delete_prefix(f"{job.job_id}/")
        except Exception:
            log.exception("could not delete the originals of the refused job %s", job.job_id)
        raise Refused(RefusalCode.UNAVAILABLE, f"could not {step}; nothing was kept, try again shortly") from exc

    def record(self, job: Job, images: list[Image], rejected: list) -> Created:
        """Store the job and its images, then announce it with ``job.submitted``."""
        job.total = len(images)
        try:
            self.jobs.create_job(job, images)
        except Exception as exc:
            self._discard(job, exc, "record the job (the job store is unavailable)")
        try:
            self.bus.publish(self.settings.topics.jobs, JobSubmitted(job_id=job.job_id).encode(),
                             {"job_id": job.job_id})
        except Exception as exc:
            # Without the message nothing would process the job: fail it visibly rather than leave it queued.
            self.jobs.transition(job.job_id, domain.fail(domain.utcnow()))
            self._discard(job, exc, "queue the job (the job queue is unavailable)")
        log.info("job %s created: %d images, %d rejected", job.job_id, len(images), len(rejected))
        return Created(job, images, rejected)
