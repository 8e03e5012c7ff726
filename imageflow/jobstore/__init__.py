"""Job store port: job documents and their image documents.

Adapters: ``sqlite`` (local, WAL) and ``firestore``. Per-image state lives in the image
documents; the job document's counters are folded in batches by ``record_results``, never
written once per image.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from .. import domain
from ..domain import Image, Job
from ..domain import mark_notified as _mark_notified
from ..messages import Result

# What a repair pass looks for (JobStore.iter_repairs):
REPAIR_COMPLETION = "completion"  # job.completed claimed (notified_at) but never published (completion_message_id)
REPAIR_WEBHOOK = "webhook"        # a webhook still to deliver (webhook_status pending)
REPAIRS = (REPAIR_COMPLETION, REPAIR_WEBHOOK)


# A reservation whose job document has not appeared after this long was abandoned (the intake failed).
RESERVATION_TTL_SECONDS = 120.0

Admit = Callable[[list[Job], int], None]  # (the owner's active jobs, images wanted): raises to refuse
# (the owner's active jobs, this job among them, and the images joining it) -> the images to add: the
# same, some turned into failed images (a per-file refusal), or it raises to refuse them all.
AdmitImages = Callable[[list[Job], list[Image]], list[Image]]


class JobNotFound(KeyError):
    """No job with that id."""


class JobClosed(RuntimeError):
    """The job takes no more files (it was never open, or it was closed)."""

    def __init__(self, job: Job):
        super().__init__(f"job {job.job_id} is {job.status}")
        self.job = job


class TooManyImages(RuntimeError):
    """Adding the images would take the job over its limit."""

    def __init__(self, job: Job, limit: int):
        super().__init__(f"job {job.job_id} holds {job.total} images, at most {limit}")
        self.job, self.limit = job, limit


def check_room_for(job: Job, adding: int, max_total: int) -> None:
    """The rule of ``JobStore.add_images``, the same on every adapter: raises JobClosed when the
    job is not open, TooManyImages when ``adding`` more would take it past ``max_total``."""
    if not job.is_open:
        raise JobClosed(job)
    if job.total + adding > max_total:
        raise TooManyImages(job, max_total)


def outstanding_of(job: Job | None) -> int:
    """A job's share of the outstanding-task count (GET /outstanding, KEDA's metrics-api trigger):
    its images without an outcome while it is in progress (processing, or open). Every adapter
    keeps the sum of this over all jobs in a counter, changed in the same write as the job
    document, so the count never needs a scan."""
    if job is None or job.status not in (domain.PROCESSING, domain.OPEN):
        return 0
    return max(0, job.total - job.done)


# A manager replica's fold-queue size (JobStore.set_fold_queue) older than this is ignored: the
# replica stopped, and its unacked results go back to the bus for another replica to report.
FOLD_QUEUE_FRESH_SECONDS = 60.0


def fresh_fold_queue(entries: dict[str, tuple[int, float]], now: float) -> int:
    """The results in the fold queue, from the replicas' reports ({replica: (size, at)}): the
    fresh reports' sum (every adapter's ``fold_queue``)."""
    return sum(size for size, at in entries.values() if now - at <= FOLD_QUEUE_FRESH_SECONDS)


def stale_fold_queues(entries: dict[str, tuple[int, float]], now: float) -> list[str]:
    """Replicas whose report is long gone (ten times the freshness): an adapter deletes them as it reads."""
    return [replica for replica, (_, at) in entries.items() if now - at > 10 * FOLD_QUEUE_FRESH_SECONDS]


# The job fields outstanding_of reads: a write that sets none of them leaves the counter as it is.
OUTSTANDING_FIELDS = frozenset({"status", "total", "succeeded", "failed", "skipped"})


def scan_outstanding(store: "JobStore") -> int:
    """The outstanding count recomputed from the jobs, page by page: the repair path only
    (``Coordinator.repair_outstanding``); GET /outstanding reads the maintained counter."""
    return sum(outstanding_of(job) for status in (domain.PROCESSING, domain.OPEN)
               for job in iter_jobs(store, status=status))


def unfinished_images(active: list[Job]) -> int:
    """Images of these jobs without an outcome yet: what ``QUOTA_ACTIVE_IMAGES`` limits."""
    return sum(max(0, job.total - job.done) for job in active)


def unfinished_cost(active: list[Job]) -> float:
    """The cost of these jobs' images without an outcome yet: what ``QUOTA_ACTIVE_COST`` limits."""
    return round(sum(domain.unfinished_cost(job) for job in active), 3)


def quota_room(active: list[Job], quota: int) -> int:
    """How many more unfinished images ``QUOTA_ACTIVE_IMAGES`` (``quota``) leaves the owner of ``active``."""
    return max(0, quota - unfinished_images(active))


def with_job(active: list[Job], job: Job) -> list[Job]:
    """The owner's active jobs with ``job`` as read now (an open job reserved before quotas were
    on, or with the totals of an older read, counts as it is)."""
    return [j for j in active if j.job_id != job.job_id] + [job]


@dataclass
class Joined:
    """What ``JobStore.join_images`` did."""

    job: Job                                                  # the job after the images joined
    added: list[Image] = field(default_factory=list)          # the images added now, in ``seq`` order
    present: list[str] = field(default_factory=list)          # ids of images the job held already (skipped)


def place_images(job: Job, images: list[Image], now: str) -> Job:
    """The job after ``images`` join it (``JobStore.join_images``, on every adapter): each gets the
    next ``seq``; ``total`` and ``last_file_at`` move on; those joining already finished (refused
    by a check) are folded into the counters at once."""
    for offset, image in enumerate(images):
        image.seq = job.total + offset
    # only the images that will render weigh against QUOTA_ACTIVE_COST (a refused one costs nothing)
    cost = sum(i.cost for i in images if i.status not in domain.TERMINAL_IMAGE_STATUSES)
    job = replace(job, total=job.total + len(images), cost=round(job.cost + cost, 3), last_file_at=now,
                  updated_at=now)
    finished = [i for i in images if i.status in domain.TERMINAL_IMAGE_STATUSES]
    return domain.fold_progress(job, finished, now) if finished else job


@dataclass
class FoldOutcome:
    """What one ``record_results`` call changed."""

    jobs: dict[str, Job] = field(default_factory=dict)          # every job touched, after the fold
    changed_images: list[Image] = field(default_factory=list)   # images that reached a terminal state now
    ignored: int = 0                                            # duplicates and results for unknown jobs


Cursor = tuple[str, str]  # (created_at, job_id) of the last job of a page


def cursor_of(job: Job) -> Cursor:
    return (job.created_at, job.job_id)


@dataclass
class SavedPreset:
    """A named list of operations a caller saved (``/api/v1/presets``); ``operations`` are
    resolved (validated, defaults filled in) before they are stored."""

    owner: str
    name: str
    operations: list[dict]
    created_at: str
    updated_at: str

    def to_dict(self) -> dict:
        return {"owner": self.owner, "name": self.name, "operations": self.operations,
                "created_at": self.created_at, "updated_at": self.updated_at}

    @classmethod
    def from_dict(cls, data: dict) -> "SavedPreset":
        return cls(owner=data["owner"], name=data["name"], operations=list(data.get("operations") or []),
                   created_at=data["created_at"], updated_at=data.get("updated_at") or data["created_at"])


class Quotas(ABC):
    """Per-key reservations of active jobs, images and cost (QUOTA_*): what the image-handler's
    admission (services.image_handler.auth) needs of a store, and all it needs."""

    @abstractmethod
    def reserve_quota(self, owner: str | None, job_id: str, images: int, admit: Admit, *, cost: float = 0.0) -> None:
        """In one transaction: the owner's active jobs (reserved and not yet finished, and reserved
        jobs still being created) are handed to ``admit``, which raises to refuse; if it does not,
        ``job_id`` is reserved with ``images`` images of ``cost`` (``QUOTA_ACTIVE_COST``) in all;
        reserving ``job_id`` again replaces its reservation (the cost once its files are probed). Parallel reservations cannot both pass a
        limit only one of them fits under. Finished and abandoned reservations are dropped here."""

    @abstractmethod
    def release_quota(self, owner: str | None, job_id: str) -> None:
        """Drop a reservation whose job was not created after all."""


class Presets:
    """Each caller's saved presets (the editor's routes): small documents beside the jobs."""

    # Not abstract, so a store written before them (a test fake, say) still builds; both adapters
    # implement them.
    def save_preset(self, preset: SavedPreset) -> SavedPreset:
        """Create or replace the owner's preset of that name; a replaced one keeps its
        ``created_at``. Returns what is stored."""
        raise NotImplementedError

    def list_presets(self, owner: str) -> list[SavedPreset]:
        """The owner's presets, by name."""
        raise NotImplementedError

    def delete_preset(self, owner: str, name: str) -> bool:
        """Delete the owner's preset; False when there was none."""
        raise NotImplementedError


class JobStore(Quotas, Presets, ABC):
    """Jobs and their images (the one store both services share); an adapter implements the
    small interfaces too, so each caller can depend on just the one it uses."""

    @abstractmethod
    def create_job(self, job: Job, images: list[Image]) -> None:
        """Store a job and all its images at once."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def get_image(self, job_id: str, image_id: str) -> Image | None: ...

    @abstractmethod
    def list_images(self, job_id: str) -> list[Image]:
        """The job's images in upload order."""

    @abstractmethod
    def page_images(self, job_id: str, *, status: str | None = None, after: int | None = None,
                    limit: int = 100) -> list[Image]:
        """Up to ``limit`` images in upload order whose ``seq`` is above ``after`` (the last
        ``seq`` of the previous page), only those in ``status`` when given."""

    def add_images(self, job_id: str, images: list[Image], *, max_total: int, now: str,
                   admit: AdmitImages | None = None) -> Job:
        """``join_images``, for callers that only need the job after it."""
        return self.join_images(job_id, images, max_total=max_total, now=now, admit=admit).job

    @abstractmethod
    def join_images(self, job_id: str, images: list[Image], *, max_total: int, now: str,
                    admit: AdmitImages | None = None) -> Joined:
        """Add images to an open job in one atomic step (``place_images``): they get the next
        ``seq`` numbers, the job's ``total`` and ``last_file_at`` move on. Images the job already
        holds are skipped (a redelivered upload event). Raises JobNotFound, JobClosed when the
        job is not open, TooManyImages when ``total`` would pass ``max_total`` (then nothing is
        added). With ``admit`` (quotas), the owner's active jobs are read in the same transaction
        and ``admit`` decides which images join as they are (``AdmitImages``), so parallel
        uploads cannot pass a quota together. Large batches may be split into several
        transactions (Firestore: 400 images each); the chunks before a refusal stay added."""

    @abstractmethod
    def close_job(self, job_id: str, now: str) -> Job:
        """Close an open job atomically (``domain.close_job``); a job not open is returned as it is."""

    @abstractmethod
    def untasked_images(self, job_id: str, limit: int = 500) -> list[Image]:
        """Up to ``limit`` unfinished images whose task is not on the bus yet (fan-out's resume point)."""

    @abstractmethod
    def mark_tasked(self, job_id: str, image_ids: list[str]) -> None:
        """Record that these images' tasks are on the bus."""

    def count_in_flight(self, job_id: str) -> int:
        """Unfinished images whose task is on the bus (``tasked``): what fair share limits per key.
        The adapters count with one indexed query; this paged scan is for stores without one."""
        return sum(1 for image in iter_images(self, job_id)
                   if image.tasked and image.status not in domain.TERMINAL_IMAGE_STATUSES)

    def update_images(self, job_id: str, images: list[Image]) -> None:
        """Overwrite some image documents of the job whole (a retry re-queues them); their
        upload order is kept. Images that are not in the job are ignored."""

    @abstractmethod
    def update_job(self, job_id: str, **fields) -> Job:
        """Set some fields of the job document (raises JobNotFound)."""

    @abstractmethod
    def record_results(self, results: list[Result]) -> FoldOutcome:
        """Apply a batch of results: each image changes at most once (``domain.apply_result``),
        and each touched job gets one write with its counters folded (``domain.fold_progress``).
        Duplicate results and results for finished images change nothing."""

    @abstractmethod
    def transition(self, job_id: str, change: Callable[[Job], dict | None]) -> Job | None:
        """A conditional update, for state that several processes race on: ``change`` sees the
        current job and returns the fields to set (or None to leave it); they are written only
        if the job has not changed since it was read, else ``change`` runs again on the newer
        job. Returns the job after the write, or None when ``change`` declined. Raises
        JobNotFound. (``domain`` holds the changes: ``domain.mark_notified`` and the others.)"""

    def mark_notified(self, job_id: str, now: str, run: int | None = None) -> bool:
        """Set ``notified_at`` if it is not set (and the job is still on ``run``, when given);
        True when this call set it."""
        return self.transition(job_id, _mark_notified(now, run)) is not None

    @abstractmethod
    def list_jobs(self, *, owner: str | None = None, status: str | None = None,
                  limit: int = 50, after: "Cursor | None" = None) -> list[Job]:
        """Up to ``limit`` jobs in the order ``(created_at, job_id)`` descending (newest first,
        ties broken by id), starting just after ``after`` (``cursor_of`` the last job of the
        previous page). Use ``page_jobs``/``iter_jobs`` rather than a bare limit."""

    @abstractmethod
    def outstanding_tasks(self) -> int:
        """The maintained sum of ``outstanding_of`` over every job, read without a scan (a handful
        of reads). Every write of a job document changes it in the same transaction. Read as
        stored: after a drift it may be below zero (the caller shows 0; the repair needs the truth)."""

    @abstractmethod
    def adjust_outstanding(self, delta: int, *, expected: int | None = None) -> bool:
        """Add ``delta`` to the counter (the repair of a drift found by ``scan_outstanding``), only
        if it still reads ``expected`` when given (so two replicas' repairs cannot both apply);
        True when it was added."""

    @abstractmethod
    def set_fold_queue(self, replica: str, size: int, now: float) -> None:
        """Record how many results the manager replica ``replica`` holds received and not yet folded
        (its fold queue), at ``now`` (epoch seconds): one small document per replica, overwritten."""

    @abstractmethod
    def fold_queue(self, now: float) -> int:
        """The results in the fold queue across the manager's replicas (``fresh_fold_queue``): work
        rendered that GET /outstanding no longer counts."""

    @abstractmethod
    def iter_repairs(self, need: str) -> Iterator[Job]:
        """Every job that needs the repair ``need`` (REPAIR_COMPLETION or REPAIR_WEBHOOK), however
        old or many: queried directly (an index on each adapter), read page by page."""

    @abstractmethod
    def delete_job(self, job_id: str) -> bool:
        """Delete the job and its images; False when there was none."""

    @abstractmethod
    def check(self) -> None:
        """Raise if the store is unreachable (used by /readyz)."""

    def close(self) -> None:
        """Release resources."""


def page_jobs(store: JobStore, *, owner: str | None = None, status: str | None = None, limit: int = 50,
              cursor: Cursor | None = None) -> tuple[list[Job], Cursor | None]:
    """One page of jobs, newest first, after ``cursor``; and the cursor of the next page (None
    at the end). The cursor is a position in the store's total order, so paging never skips
    or repeats a job, even among jobs created in the same millisecond."""
    batch = store.list_jobs(owner=owner, status=status, limit=limit + 1, after=cursor)
    page = batch[:limit]
    return page, (cursor_of(page[-1]) if len(batch) > limit and page else None)


def iter_images(store: JobStore, job_id: str, *, status: str | None = None,
                page_size: int = 500) -> Iterator[Image]:
    """Every image of the job in upload order, page by page (never the whole list at once)."""
    after = None
    while True:
        page = store.page_images(job_id, status=status, after=after, limit=page_size)
        yield from page
        if len(page) < page_size:
            return
        after = page[-1].seq


def iter_jobs(store: JobStore, *, owner: str | None = None, status: str | None = None,
              page_size: int = 500) -> Iterator[Job]:
    """Every matching job, newest first, page by page (every scan of the jobs uses this)."""
    cursor = None
    while True:
        page, cursor = page_jobs(store, owner=owner, status=status, limit=page_size, cursor=cursor)
        yield from page
        if cursor is None:
            return


def held_reservations(reservations: dict[str, tuple], jobs: dict[str, Job | None],
                      now: float) -> tuple[list[Job], dict[str, tuple]]:
    """The active jobs behind an owner's reservations ({job_id: (images, reserved_at[, cost])}) given
    their job documents, and the reservations still held: a finished job's is dropped, and so is one whose
    job never appeared within RESERVATION_TTL_SECONDS (shared by the adapters). A job still being created
    counts with the images and the cost it reserved."""
    active, kept = [], {}
    for job_id, held in reservations.items():
        images, reserved_at, *rest = held
        job = jobs.get(job_id)
        if job is None:
            if now - reserved_at <= RESERVATION_TTL_SECONDS:
                active.append(Job(job_id=job_id, total=images, cost=float(rest[0]) if rest else 0.0))
                kept[job_id] = held
        elif not job.is_terminal:
            active.append(job)
            kept[job_id] = held
    return active, kept
