"""The domain: jobs, images, their states and the rules that move them. No I/O here."""
from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Callable, Iterable

from .messages import JobCompleted, Result, Task

# Job states (ARCHITECTURE.md). An open job takes new files (ARCHITECTURE.md "Large jobs") and
# never completes while open; once closed it is processing until every image has an outcome.
OPEN = "open"
QUEUED = "queued"
PROCESSING = "processing"
COMPLETED = "completed"
COMPLETED_WITH_ERRORS = "completed_with_errors"
FAILED = "failed"
CANCELLED = "cancelled"   # cancelled by its caller: images not started were skipped
EXPIRED = "expired"       # past JOB_RETENTION_DAYS: a tombstone whose images and files are gone
JOB_STATUSES = (OPEN, QUEUED, PROCESSING, COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED, EXPIRED)
TERMINAL_JOB_STATUSES = (COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED)

# Image states.
IMAGE_QUEUED = "queued"
IMAGE_SUCCEEDED = "succeeded"
IMAGE_FAILED = "failed"
IMAGE_SKIPPED = "skipped"  # its job was cancelled before it started
TERMINAL_IMAGE_STATUSES = (IMAGE_SUCCEEDED, IMAGE_FAILED, IMAGE_SKIPPED)
IMAGE_STATUSES = (IMAGE_QUEUED, IMAGE_SUCCEEDED, IMAGE_FAILED, IMAGE_SKIPPED)

class ErrorCode(StrEnum):
    """Why an image failed (``Image.error_code``, ``Result.error_code``, ``error.details.error_code``
    of a refused upload): the one list of outcome codes. A ``str``, so stored and JSON values are
    these plain strings. docs/api.md's table says what each means, the page has words for each
    (frontend/src/lib/jobs.js), the OpenAPI document publishes them (tests/unit/test_error_codes.py)."""

    # the engine's (ImageError): the file, or what the operations make of it
    EMPTY = "empty"
    UNSUPPORTED = "unsupported"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    CORRUPT = "corrupt"
    TOO_LARGE = "too_large"
    TOO_MANY_FRAMES = "too_many_frames"
    OUTPUT_TOO_LARGE = "output_too_large"
    INVALID = "invalid"
    TIMEOUT = "timeout"
    # the pipeline's
    MISSING_INPUT = "missing_input"      # the original is not in storage
    WORKER_CRASHED = "worker_crashed"    # dead-lettered: the processors gave up on it
    FETCH_FAILED = "fetch_failed"        # imported by URL, and the URL could not be fetched
    FILE_TOO_LARGE = "file_too_large"    # a direct upload over MAX_UPLOAD_BYTES
    QUOTA_EXCEEDED = "quota_exceeded"    # a direct upload past the owner's QUOTA_ACTIVE_IMAGES or QUOTA_ACTIVE_COST

    @classmethod
    def engine(cls) -> tuple["ErrorCode", ...]:
        """The codes the engine raises (``ImageError``): from EMPTY to TIMEOUT."""
        members = list(cls)
        return tuple(members[:members.index(cls.TIMEOUT) + 1])


# The services/interaction_manager coordinator still names this one as a module constant.
WORKER_CRASHED = ErrorCode.WORKER_CRASHED

# Webhook delivery states (Job.webhook_status; None when the job has no webhook).
WEBHOOK_PENDING = "pending"
WEBHOOK_DELIVERED = "delivered"
WEBHOOK_FAILED = "failed"
WEBHOOK_SUPERSEDED = "superseded"  # an earlier run's webhook a retry left with nothing to deliver it (see reason)


# -- the cost unit of QUOTA_ACTIVE_COST: output megapixels ---------------------------------------
# An image's cost is its input megapixels times the outputs its operations make (variant widths x
# variant formats, 1 without variants), each output made with quality "auto" weighing
# AUTO_QUALITY_WEIGHT outputs (its SSIMULACRA2 search encodes and scores up to 7 times; measured
# in docs/api.md "Callers and quotas"). A size unknown at intake (a URL import, before it is
# fetched) counts as ASSUMED_MEGAPIXELS. Rough on purpose: it bounds a key's work in one number a
# caller can work out, it does not predict CPU seconds.
ASSUMED_MEGAPIXELS = 12.0
AUTO_QUALITY_WEIGHT = 15


def output_counts(operations: Iterable[dict]) -> tuple[int, int]:
    """(outputs, those encoded with quality "auto") of one image under resolved ``operations``:
    variants make widths x formats outputs; auto quality applies to the outputs in the ``format``
    operation's format (other variant formats get their fixed default), as the renderer does."""
    fmt = variants = None
    for op in operations or ():
        if op.get("op") == "format":
            fmt = op
        elif op.get("op") == "variants":
            variants = op
    widths = len((variants or {}).get("widths") or []) or 1
    formats = list((variants or {}).get("formats") or []) or [None]  # None: the format op's (or the input's)
    auto = fmt is not None and fmt.get("quality") == "auto"
    automatic = sum(1 for f in formats if f is None or f == fmt.get("format")) if auto else 0
    return widths * len(formats), widths * automatic


def megapixels(width: int | None, height: int | None) -> float | None:
    """A probed size in megapixels (None when unknown), as ``Image.input_megapixels`` keeps it."""
    return round(width * height / 1e6, 3) if width and height else None


def image_cost(operations: Iterable[dict], input_megapixels: float | None = None) -> float:
    """What one image weighs against ``QUOTA_ACTIVE_COST``, in output megapixels (see above);
    without a size (unknown at intake) it counts as ``ASSUMED_MEGAPIXELS``."""
    megapixels = input_megapixels if input_megapixels else ASSUMED_MEGAPIXELS
    outputs, automatic = output_counts(operations)
    return round(megapixels * (outputs + (AUTO_QUALITY_WEIGHT - 1) * automatic), 3)


def unfinished_cost(job: "Job") -> float:
    """The cost of a job's images without an outcome yet: its images' summed cost (``Job.cost``)
    weighed by the share still unfinished (the job's average cost per image, times those left)."""
    if job.total <= 0 or job.cost <= 0:
        return 0.0
    return job.cost * max(0, job.total - job.done) / job.total


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


def human_bytes(count: int | float | None) -> str:
    """A size as people read it, the one way every client writes one: base 1024, as the page's
    formatBytes (frontend/src/lib/format.js) and the limits' messages do ("774 MB", "1.5 KB",
    "500 B"); the email function keeps a copy of the same rule (it is deployed alone)."""
    if count is None:
        return "?"
    if abs(count) < 1024:
        return f"{count:.0f} B"
    value, unit = count / 1024, "KB"
    for bigger in ("MB", "GB", "TB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.0f} {unit}" if abs(value) >= 100 else f"{value:.1f}".removesuffix(".0") + f" {unit}"


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
    return f"{input_prefix(job_id)}{image_id}-{safe_name(filename)}"


def input_prefix(job_id: str) -> str:
    """Where a job's originals are stored (INPUT_RETENTION_HOURS deletes them)."""
    return f"{job_id}/input/"


def originals_job(image: "Image") -> str:
    """The job whose stored originals ``image`` reads: its own, or a re-run's parent."""
    return image.input_path.split("/", 1)[0]


def cancel_marker(job_id: str) -> str:
    """``<job_id>/control/cancelled``: written by the cancel route, lifted by a retry, removed with
    the job's files. The processors read it instead of the job document (they have no job store)."""
    return f"{job_id}/control/cancelled"


def caller_scope(owner: str | None) -> str:
    """The dedupe scope a task carries for its job's owner: a digest, so tasks never name the key
    (the anonymous owner of a service without keys is one caller, as in ``Caller``)."""
    return hashlib.sha256(b"imageflow-caller\x00" + (owner or "").encode("utf-8")).hexdigest()


def overlay_path(job_id: str, name: str) -> str:
    """``<job_id>/input/overlay-<digest>-<safe name>``: an image the job's overlay operations
    name (an uploaded file or a URL), stored once per job. The digest of the exact name
    keeps two names that reduce to one safe name apart; not an image id, so it never
    passes for an input of its own."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{job_id}/input/overlay-{digest}-{safe_name(name)[-60:]}"


def output_stem(job_id: str, image_id: str, filename: str) -> str:
    """``<job_id>/output/<image_id>-<safe stem>``: a task's output path, before the processor
    knows the format (and so the extension) of each file it writes."""
    return f"{job_id}/output/{image_id}-{safe_stem(filename)}"


def output_file(stem: str, ext: str, variant: str = "") -> str:
    """One output file under ``stem``: ``<stem>[-<variant>].<ext>``."""
    suffix = f"-{safe_name(variant)}" if variant else ""
    return f"{stem}{suffix}.{ext.lstrip('.')}"


def output_name(filename: str, ext: str, variant: str = "", used: set[str] | None = None) -> str:
    """The name an output goes by outside storage, the same wherever it is given (a download's
    name, its entry in the job's zip, the file the CLI saves): ``<safe stem>[-<variant>].<ext>``,
    the end of its stored path (``output_path``). With ``used``, the names given so far, a name
    taken already becomes ``<name>-2.<ext>``, ``-3``..., and is added to ``used``."""
    name = output_file(safe_stem(filename), ext, variant)
    if used is None:
        return name
    stem, ext = name.rsplit(".", 1)
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}.{ext}"
    used.add(candidate)
    return candidate


def output_path(job_id: str, image_id: str, filename: str, ext: str, variant: str = "") -> str:
    return output_file(output_stem(job_id, image_id, filename), ext, variant)


def direct_upload_metadata(filename: str) -> dict:
    """The metadata a directly uploaded original carries, so the object-finalize event that
    announces it says it is one (and its name as the client gave it)."""
    return {"imageflow-upload": "direct", "imageflow-filename": filename}


def direct_upload_name(metadata: dict | None) -> str | None:
    """The client's file name when ``metadata`` marks a direct upload, else None."""
    metadata = metadata or {}
    return metadata.get("imageflow-filename") or "image" if metadata.get("imageflow-upload") == "direct" else None


PREVIEW_INPUT, PREVIEW_OUTPUT = "in", "out"


def preview_path(job_id: str, image_id: str, which: str) -> str:
    """``<job_id>/preview/<image_id>-<in|out>.webp``: the small WebP preview of an image's input
    or output. Beside ``output/``, not in it: the outputs stay exactly what the job delivers
    (archive, listings), and no client file name can collide with a preview."""
    if which not in (PREVIEW_INPUT, PREVIEW_OUTPUT):
        raise ValueError(f"unknown preview {which!r}")
    return f"{job_id}/preview/{image_id}-{which}.webp"


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
    error_code: str | None = None       # the machine-readable kind of ``error`` (an ErrorCode)
    attempts: int = 0
    input_content_type: str | None = None
    input_bytes: int | None = None
    outputs: list = field(default_factory=list)
    updated_at: str | None = None
    source_url: str | None = None   # imported by URL: the processor fetches it into input_path
    meta: dict = field(default_factory=dict)  # extra CSV columns (name, product...), kept for the report
    seq: int = 0                    # position in the job (upload order); the stores page by it
    tasked: bool = False            # its task is on the bus (fan-out resumes from the images without)
    preview_path: str | None = None         # small WebP of the input (domain.preview_path)
    output_preview_path: str | None = None  # small WebP of the (first) output
    blurhash: str | None = None           # placeholder of the output (BlurHash)
    dominant_color: str | None = None     # "#rrggbb"
    choices: dict = field(default_factory=dict)   # what the render chose (see Result.choices)
    output_bytes: int | None = None  # every output file of the image together (savings)
    duplicate_of: str | None = None  # "<job_id>/<image_id>" whose output was reused (same bytes, same operations)
    cost: float = 0.0                # what it weighs against QUOTA_ACTIVE_COST (image_cost), set at intake
    input_megapixels: float | None = None  # the original's size from its header at intake (None: not probed)

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
    # every run's attempts, oldest first: [{run, attempt (within its run), at, status_code, error, duration_ms}]
    webhook_attempts: list = field(default_factory=list)
    webhook_next_at: float | None = None       # unix time before which no replica attempts the webhook
    # the webhooks of the runs before a retry, which the retry does not stop: [{run, status, next_at,
    # completed_at, reason}] (webhook_status and webhook_next_at are the current run's)
    webhook_earlier_runs: list = field(default_factory=list)
    last_file_at: str | None = None            # open jobs: when a file last joined (idle auto-close)
    closed_at: str | None = None               # open jobs: when the job stopped taking files
    meta_keys: list | None = None              # URL jobs: the extra CSV columns, in order (the report's columns)
    # Lifecycle (issue 16): cancel, retry (a new run), rerun (parent/child), retention, savings.
    skipped: int = 0                           # images a cancel kept from starting
    cancel_requested_at: str | None = None     # set by cancel: the processors skip the images not started
    run: int = 0                               # 0 for the first run; each retry starts the next one
    parent_job_id: str | None = None           # the job this one re-runs (its originals are read, not copied)
    child_job_ids: list = field(default_factory=list)  # the re-runs of this job
    bytes_in: int = 0                          # originals of the succeeded images
    bytes_out: int = 0                         # their outputs
    cost: float = 0.0                          # its images' summed image_cost (QUOTA_ACTIVE_COST, unfinished_cost)
    inputs_deleted_at: str | None = None       # its originals were deleted (INPUT_RETENTION_HOURS after completion)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

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


def task_for(job: Job, image: Image) -> Task:
    """The processor's task for one image: everything it needs, including the URL to fetch."""
    return Task(job_id=job.job_id, image_id=image.image_id, input_path=image.input_path,
                output_path=output_stem(job.job_id, image.image_id, image.filename),
                operations=job.operations, source_url=image.source_url, caller=caller_scope(job.owner))


def close_job(job: Job, now: str) -> Job:
    """An open job that takes no more files: processing, or finished at once when every image
    already has an outcome. A job with no image at all fails (there is nothing to deliver)."""
    if not job.is_open:
        return job
    if job.done >= job.total:
        if not job.total:
            status = FAILED
        else:
            status = CANCELLED if job.cancel_requested_at else final_status(job.total, job.succeeded,
                                                                              job.failed + job.skipped)
        return replace(job, status=status, closed_at=now, completed_at=now, updated_at=now)
    return replace(job, status=PROCESSING, closed_at=now, updated_at=now)
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
                       bytes=result.bytes, error=None, error_code=None, outputs=outputs,
                       output_bytes=output_bytes, duplicate_of=result.duplicate_of,
                       attempts=image.attempts + 1, updated_at=now, blurhash=result.blurhash,
                       dominant_color=result.dominant_color, choices=dict(result.choices or {}),
                       **_input_facts(image, result))
    if result.status == IMAGE_SKIPPED:
        return replace(image, status=IMAGE_SKIPPED, error=result.error or "skipped: the job was cancelled",
                       updated_at=now)
    return replace(image, status=IMAGE_FAILED, error=result.error or "processing failed",
                   error_code=result.error_code, attempts=image.attempts + 1, updated_at=now,
                   **_input_facts(image, result))


def _input_facts(image: Image, result: Result) -> dict:
    """What the processor learnt about the input (a URL's type and size, the previews)."""
    facts = {"input_content_type": result.input_content_type or image.input_content_type,
             "input_bytes": result.input_bytes if result.input_bytes is not None else image.input_bytes}
    if result.preview_path:
        facts["preview_path"] = result.preview_path
    if result.output_preview_path:
        facts["output_preview_path"] = result.output_preview_path
    return facts


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
    if job.is_open:  # more files may come: counters only, never complete
        pass
    elif succeeded + failed + skipped >= job.total and not job.is_terminal:
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


# -- links and the completion message ----------------------------------------------------
def results_url(public_base_url: str, job_id: str) -> str:
    """The job's results page (ARCHITECTURE.md): the link in the email, the webhook and the API."""
    return f"{public_base_url.rstrip('/')}/jobs/{job_id}"


def job_api_url(base_url: str, job_id: str) -> str:
    """The job's REST resource, ``<base>/api/v1/jobs/<job_id>``: its downloads hang under it."""
    return f"{base_url.rstrip('/')}/api/v1/jobs/{job_id}"


def archive_url(base_url: str, job_id: str) -> str:
    """Every output of the job in one zip (``GET /api/v1/jobs/<job_id>/archive.zip``)."""
    return f"{job_api_url(base_url, job_id)}/archive.zip"


def completed_event(job: Job, public_base_url: str, retention_days: int = 0) -> JobCompleted:
    """The ``job.completed`` message of a finished job: its counts, run, savings and parent, its
    links (results page, and the zip when something succeeded) and when it is deleted
    (``retention_days``: JOB_RETENTION_DAYS, 0 when kept until deleted). The interaction manager
    signs ``archive_url`` when API keys are on (``services.interaction_manager.lifecycle``)."""
    return JobCompleted(job_id=job.job_id, status=job.status, total=job.total, succeeded=job.succeeded,
                        failed=job.failed, email=job.email, results_url=results_url(public_base_url, job.job_id),
                        skipped=job.skipped, run=job.run, bytes_in=job.bytes_in, bytes_out=job.bytes_out,
                        saved_percent=job.saved_percent, parent_job_id=job.parent_job_id,
                        archive_url=archive_url(public_base_url, job.job_id) if job.succeeded else "",
                        expires_at=retention_expiry(job.created_at, retention_days), name=job.name)


# -- job transitions ---------------------------------------------------------------------
# Each returns a change for ``JobStore.transition``: given the current job, the fields to
# set, or None when the transition does not apply (already done, or not allowed now).
Change = Callable[[Job], "dict[str, Any] | None"]


def mark_notified(now: str, run: int | None = None) -> Change:
    """Claim the one ``job.completed`` of a job's run (Coordinator.announce). With ``run``, a
    claim for a run that a retry has since replaced is declined: it would otherwise mark the
    new run notified before it even started, and the new run would never be announced."""
    return lambda job: None if job.notified_at or (run is not None and job.run != run) else {"notified_at": now}


def release_notified() -> Change:
    """Give the claim back when the publish failed, so the next result tries again."""
    return lambda job: {"notified_at": None} if job.notified_at and not job.completion_message_id else None


def record_completion_published(message_id: str) -> Change:
    return lambda job: {"completion_message_id": message_id}


def start() -> Change:
    """queued -> processing (the fan-out began)."""
    return lambda job: {"status": PROCESSING} if job.status == QUEUED else None


def record_tasks_published() -> Change:
    """Every task of the job is on the bus: a redelivered job.submitted publishes none again."""
    return lambda job: None if job.tasks_published else {"tasks_published": True}


def fail(now: str) -> Change:
    """A job that can never be processed (it could not be queued) -> failed. A job already
    finished keeps its outcome."""
    return lambda job: None if job.is_terminal else {"status": FAILED, "completed_at": now}


def request_cancel(now: str) -> Change:
    """Cancel (issue 16): the processors skip the images not started. An open job stops taking
    files too (it is closed; when every image already has an outcome it ends cancelled at once).
    A finished job, or one already cancelling, is left as it is."""
    def change(job: Job) -> dict | None:
        if job.is_terminal or job.cancel_requested_at:
            return None
        fields: dict[str, Any] = {"cancel_requested_at": now}
        if job.is_open:
            fields["closed_at"] = now
            if job.done >= job.total:
                fields.update(status=CANCELLED, completed_at=now)
            else:
                fields["status"] = PROCESSING
        return fields
    return change


def start_retry(counted: Job) -> Change:
    """A finished job runs again (issue 16 retry): ``counted`` is ``recount`` over its images
    with the retried ones re-queued. A new run: it notifies again, its webhook is delivered
    again (under the run's own delivery id). The run being retired keeps its webhook: still
    pending, it goes on being delivered (``webhook_earlier_runs``); its attempts stay in
    ``webhook_attempts``. Declined when the job is not finished."""
    def change(job: Job) -> dict | None:
        if not job.is_terminal:
            return None
        fields: dict[str, Any] = dict(
            status=QUEUED, succeeded=counted.succeeded, failed=counted.failed, skipped=0,
            bytes_in=counted.bytes_in, bytes_out=counted.bytes_out, completed_at=None, notified_at=None,
            completion_message_id=None, tasks_published=False, cancel_requested_at=None, run=job.run + 1)
        if job.webhook_url:
            retired = {"run": job.run, "status": job.webhook_status, "next_at": job.webhook_next_at,
                       "completed_at": job.completed_at, "reason": None}
            if job.webhook_status == WEBHOOK_PENDING and not job.completion_message_id:
                # its job.completed was not published (yet), and the retry ends its announcement: nothing
                # would deliver it, so say so rather than leave it pending forever
                retired.update(status=WEBHOOK_SUPERSEDED, next_at=None,
                               reason=f"run {job.run + 1} started before run {job.run}'s job.completed was published")
            fields.update(webhook_status=WEBHOOK_PENDING, webhook_next_at=None,
                          webhook_attempts=labelled_webhook_attempts(job),
                          webhook_earlier_runs=[*(job.webhook_earlier_runs or []), retired])
        return fields
    return change


def requeue(image: Image, now: str) -> Image:
    """An image queued again by a retry: the last run's outcome cleared (error, outputs, sizes,
    previews, what the render chose), its original and its place in the job kept, and
    ``tasked=False`` so the fan-out publishes its task again."""
    return replace(image, status=IMAGE_QUEUED, error=None, error_code=None, output_path=None, outputs=[],
                   content_type=None, width=None, height=None, bytes=None, output_bytes=None, duplicate_of=None,
                   output_preview_path=None, blurhash=None, dominant_color=None, choices={}, tasked=False,
                   updated_at=now)


def add_child(child_job_id: str) -> Change:
    """Link a re-run to the job it re-runs."""
    return lambda job: (None if child_job_id in (job.child_job_ids or [])
                        else {"child_job_ids": [*(job.child_job_ids or []), child_job_id]})


def attempt_run(job: Job, attempt: dict) -> int:
    """The run an entry of ``webhook_attempts`` belongs to (entries recorded before attempts
    were labelled belong to the current run: a retry used to clear them)."""
    return attempt.get("run", job.run)


def labelled_webhook_attempts(job: Job) -> list[dict]:
    """``webhook_attempts`` with every entry's run (entries from before runs were recorded get theirs)."""
    return [{**a, "run": attempt_run(job, a)} for a in job.webhook_attempts or []]


def webhook_run(job: Job, run: int) -> dict | None:
    """The state of ``run``'s webhook: ``{run, status, next_at, completed_at, finished}``, or
    None when the job has no webhook or no such run."""
    if not job.webhook_url:
        return None
    if run == job.run:
        return {"run": run, "status": job.webhook_status, "next_at": job.webhook_next_at,
                "completed_at": job.completed_at, "finished": job.is_terminal}
    for entry in job.webhook_earlier_runs or []:
        if entry.get("run") == run:
            return {**entry, "finished": True}  # an earlier run finished before the retry began
    return None


def _set_webhook_run(job: Job, run: int, **state: Any) -> dict[str, Any]:
    """The job fields that set ``run``'s webhook ``state`` (status, next_at)."""
    if run == job.run:
        return {f"webhook_{name}": value for name, value in state.items()}
    return {"webhook_earlier_runs": [{**entry, **state} if entry.get("run") == run else entry
                                     for entry in job.webhook_earlier_runs or []]}


def webhook_runs(job: Job) -> list[dict]:
    """Every run's webhook outcome, oldest first (the API's ``webhook_runs``)."""
    if not job.webhook_url:
        return []
    runs = [*(job.webhook_earlier_runs or []), {"run": job.run, "status": job.webhook_status, "reason": None}]
    return [{"run": r["run"], "status": r["status"], "reason": r.get("reason"),
             "attempts": webhook_attempts_made(job, r["run"])} for r in runs]


def webhook_wait(job: Job, now: float, run: int | None = None) -> float | None:
    """Seconds until the webhook of ``run`` (default: the current run) may be attempted (0: now),
    or None when there is nothing to deliver (no webhook, already delivered, failed or
    superseded, run not finished)."""
    state = webhook_run(job, job.run if run is None else run)
    if state is None or state["status"] != WEBHOOK_PENDING or not state["finished"]:
        return None
    return max(0.0, (state["next_at"] or 0.0) - now)


def claim_webhook_attempt(now: float, lease_seconds: float, run: int) -> Change:
    """Take the next webhook attempt of ``run``: nobody else attempts it before ``now +
    lease_seconds`` (so two interaction-manager replicas never post the same webhook at once).
    The run is named, never taken from the job: a retry may start the next run meanwhile."""
    return lambda job: (_set_webhook_run(job, run, next_at=now + lease_seconds)
                        if webhook_wait(job, now, run) == 0 else None)


def record_webhook_attempt(attempt: dict, outcome: str, next_at: float | None, run: int) -> Change:
    """Append one attempt of ``run`` to ``webhook_attempts``, numbered within its run, and set
    that run's outcome (``pending`` with the time of the next attempt, or ``delivered``/``failed``)."""
    def change(job: Job) -> dict | None:
        state = webhook_run(job, run)
        if state is None or state["status"] != WEBHOOK_PENDING:
            return None
        attempts = [*(job.webhook_attempts or []),
                    {**attempt, "run": run, "attempt": webhook_attempts_made(job, run) + 1}]
        return {"webhook_attempts": attempts, **_set_webhook_run(job, run, status=outcome, next_at=next_at)}
    return change


def webhook_attempts_made(job: Job, run: int) -> int:
    """How many attempts ``run``'s webhook has had."""
    return sum(1 for a in job.webhook_attempts or [] if attempt_run(job, a) == run)
