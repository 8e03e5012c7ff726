"""The domain: jobs, images, their states and the rules that move them. No I/O here."""
from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any, Iterable

from .messages import Result

# Job states (ARCHITECTURE.md).
QUEUED = "queued"
PROCESSING = "processing"
COMPLETED = "completed"
COMPLETED_WITH_ERRORS = "completed_with_errors"
FAILED = "failed"
CANCELLED = "cancelled"   # cancelled by its caller: images not started were skipped
EXPIRED = "expired"       # past JOB_RETENTION_DAYS: a tombstone whose images and files are gone
JOB_STATUSES = (QUEUED, PROCESSING, COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED, EXPIRED)
TERMINAL_JOB_STATUSES = (COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED)

# Image states.
IMAGE_QUEUED = "queued"
IMAGE_SUCCEEDED = "succeeded"
IMAGE_FAILED = "failed"
IMAGE_SKIPPED = "skipped"  # its job was cancelled before it started
TERMINAL_IMAGE_STATUSES = (IMAGE_SUCCEEDED, IMAGE_FAILED, IMAGE_SKIPPED)


def utcnow() -> str:
    """Timestamps are ISO 8601 UTC strings, the same in SQLite and Firestore."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def is_valid_id(value: str) -> bool:
    """Job and image ids are 32 lowercase hex digits; anything else is unknown, never a path."""
    return bool(_ID_RE.match(value or ""))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str | None, default: str = "image") -> str:
    """A filename reduced to ``[A-Za-z0-9._-]``: no directories, no control characters,
    no leading dots, at most 100 characters. Used for every blob path built from user input."""
    name = unicodedata.normalize("NFKD", filename or "").encode("ascii", "ignore").decode("ascii")
    name = PurePosixPath(name.replace("\\", "/")).name
    name = _UNSAFE.sub("_", name).strip("._-")
    if not name:
        return default
    if len(name) > 100:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 100 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else name[:100]
    return name


# C0/C1 controls, and the bidirectional overrides that make "photo\u202egnp.exe" display as "photoexe.png".
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+")


def display_name(filename: str | None, default: str = "image") -> str:
    """The name shown back to users: the client's name without directories or control
    characters, at most 255 characters. Still user data: render it as text, never markup."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub(" ", name).strip()
    return name[:255] or default


def safe_stem(filename: str | None) -> str:
    name = safe_name(filename)
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem or "image"


def input_path(job_id: str, image_id: str, filename: str) -> str:
    return f"{job_id}/input/{image_id}-{safe_name(filename)}"


def output_stem(job_id: str, image_id: str, filename: str) -> str:
    """``<job_id>/output/<image_id>-<safe stem>``: a task's output path, before the processor
    knows the format (and so the extension) of each file it writes."""
    return f"{job_id}/output/{image_id}-{safe_stem(filename)}"


def output_file(stem: str, ext: str, variant: str = "") -> str:
    """One output file under ``stem``: ``<stem>[-<variant>].<ext>``."""
    suffix = f"-{safe_name(variant)}" if variant else ""
    return f"{stem}{suffix}.{ext.lstrip('.')}"


def output_path(job_id: str, image_id: str, filename: str, ext: str, variant: str = "") -> str:
    return output_file(output_stem(job_id, image_id, filename), ext, variant)


@dataclass
class Image:
    job_id: str
    image_id: str
    filename: str
    input_path: str
    status: str = IMAGE_QUEUED
    output_path: str | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    error: str | None = None
    attempts: int = 0
    input_content_type: str | None = None
    input_bytes: int | None = None
    outputs: list = field(default_factory=list)
    updated_at: str | None = None
    source_url: str | None = None   # imported by URL: the interaction manager fetches it into input_path
    meta: dict = field(default_factory=dict)  # extra CSV columns (name, product...), kept for the report
    output_bytes: int | None = None  # every output file of the image together (savings)
    duplicate_of: str | None = None  # "<job_id>/<image_id>" whose output was reused (same bytes, same operations)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Image":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Job:
    job_id: str
    status: str = QUEUED
    created_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    completed_at: str | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    operations: list = field(default_factory=list)
    preset: str | None = None
    email: str | None = None
    webhook_url: str | None = None
    notified_at: str | None = None
    owner: str | None = None
    name: str | None = None
    tasks_published: bool = False              # every task of the job is on the bus
    completion_message_id: str | None = None   # job.completed was published (see Coordinator.announce)
    webhook_secret: str | None = None          # HMAC-SHA256 key of the webhook signature (never shown by GET)
    webhook_status: str | None = None          # pending | delivered | failed (None: no webhook)
    webhook_attempts: list = field(default_factory=list)  # [{at, status_code, error, duration_ms}]
    # Lifecycle (issue 16): cancel, retry (a new run), rerun (parent/child), retention, savings.
    skipped: int = 0                           # images a cancel kept from starting
    cancel_requested_at: str | None = None     # set by cancel: the processors skip the images not started
    run: int = 0                               # 0 for the first run; each retry starts the next one
    parent_job_id: str | None = None           # the job this one re-runs (its originals are read, not copied)
    child_job_ids: list = field(default_factory=list)  # the re-runs of this job
    bytes_in: int = 0                          # originals of the succeeded images
    bytes_out: int = 0                         # their outputs

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def saved_percent(self) -> float | None:
        """How much smaller the outputs are than their originals, in percent (negative: larger)."""
        return saved_percent(self.bytes_in, self.bytes_out)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def final_status(total: int, succeeded: int, failed: int) -> str:
    """The job's status once every image is done."""
    if total and failed == total:
        return FAILED
    if failed:
        return COMPLETED_WITH_ERRORS
    return COMPLETED


def saved_percent(bytes_in: int, bytes_out: int) -> float | None:
    if not bytes_in:
        return None
    return round(100.0 * (bytes_in - bytes_out) / bytes_in, 1)


def retention_expiry(created_at: str, days: int) -> str | None:
    """When a job created at ``created_at`` expires; None when retention is off (0 days)."""
    if days <= 0:
        return None
    created = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    return (created + timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_expired(job: "Job", retention_days: int, now: str) -> bool:
    """Past its retention (or already reduced to a tombstone by the retention sweep)."""
    if job.status == EXPIRED:
        return True
    expiry = retention_expiry(job.created_at, retention_days)
    return bool(expiry and expiry <= now)


def apply_result(image: Image, result: Result, now: str) -> Image | None:
    """The image after ``result``, or None when the result changes nothing (a duplicate,
    or a late result for an image already finished): handlers stay idempotent."""
    if image.status in TERMINAL_IMAGE_STATUSES:
        return None
    if result.status == IMAGE_SUCCEEDED:
        outputs = list(result.outputs or [])
        output_bytes = sum(o.get("bytes") or 0 for o in outputs) if outputs else result.bytes
        return replace(image, status=IMAGE_SUCCEEDED, output_path=result.output_path,
                       content_type=result.content_type, width=result.width, height=result.height,
                       bytes=result.bytes, error=None, outputs=outputs,
                       input_bytes=result.input_bytes or image.input_bytes, output_bytes=output_bytes,
                       duplicate_of=result.duplicate_of, attempts=image.attempts + 1, updated_at=now)
    if result.status == IMAGE_SKIPPED:
        return replace(image, status=IMAGE_SKIPPED, error=result.error or "skipped: the job was cancelled",
                       updated_at=now)
    return replace(image, status=IMAGE_FAILED, error=result.error or "processing failed",
                   attempts=image.attempts + 1, updated_at=now)


def fold_progress(job: Job, changed: Iterable[Image], now: str) -> Job:
    """The job after some of its images reached a terminal state (each counted once)."""
    succeeded, failed, skipped = job.succeeded, job.failed, job.skipped
    bytes_in, bytes_out = job.bytes_in, job.bytes_out
    for image in changed:
        if image.status == IMAGE_SUCCEEDED:
            succeeded += 1
            bytes_in += image.input_bytes or 0
            bytes_out += image.output_bytes or 0
        elif image.status == IMAGE_FAILED:
            failed += 1
        elif image.status == IMAGE_SKIPPED:
            skipped += 1
    status = job.status
    completed_at = job.completed_at
    if succeeded + failed + skipped >= job.total and not job.is_terminal:
        # a skip without a cancel (one that raced a retry) is an image not processed: not a success
        status = CANCELLED if job.cancel_requested_at else final_status(job.total, succeeded, failed + skipped)
        completed_at = now
    elif status == QUEUED and succeeded + failed + skipped:
        status = PROCESSING
    return replace(job, succeeded=succeeded, failed=failed, skipped=skipped, bytes_in=bytes_in,
                   bytes_out=bytes_out, status=status, completed_at=completed_at, updated_at=now)


def recount(job: Job, images: Iterable[Image], now: str) -> Job:
    """The job's counters and savings recomputed from its images (after a retry re-queues some)."""
    fresh = replace(job, succeeded=0, failed=0, skipped=0, bytes_in=0, bytes_out=0, status=PROCESSING,
                    completed_at=None)
    counted = fold_progress(fresh, images, now)
    return replace(counted, status=PROCESSING, completed_at=None)
