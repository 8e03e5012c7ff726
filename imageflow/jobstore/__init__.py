"""Job store port: job documents and their image documents.

Adapters: ``sqlite`` (local, WAL) and ``firestore``. Per-image state lives in the image
documents; the job document's counters are folded in batches by ``record_results``, never
written once per image.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator

from ..domain import Image, Job
from ..messages import Result


class JobNotFound(KeyError):
    """No job with that id."""


@dataclass
class FoldOutcome:
    """What one ``record_results`` call changed."""

    jobs: dict[str, Job] = field(default_factory=dict)          # every job touched, after the fold
    changed_images: list[Image] = field(default_factory=list)   # images that reached a terminal state now
    ignored: int = 0                                            # duplicates and results for unknown jobs


class JobStore(ABC):
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
    def mark_notified(self, job_id: str, now: str) -> bool:
        """Set ``notified_at`` if it is not set; True when this call set it."""

    @abstractmethod
    def list_jobs(self, *, owner: str | None = None, status: str | None = None,
                  limit: int = 50, before: str | None = None) -> list[Job]:
        """Jobs newest first; ``before`` is a ``created_at`` cursor for the next page."""

    @abstractmethod
    def delete_job(self, job_id: str) -> bool:
        """Delete the job and its images; False when there was none."""

    @abstractmethod
    def check(self) -> None:
        """Raise if the store is unreachable (used by /readyz)."""

    def close(self) -> None:
        """Release resources."""


TIE_SLACK = 100  # jobs created in the same millisecond as a cursor that one page may read again

Cursor = tuple[str, str]  # (created_at, job_id) of the last job of a page


def page_jobs(store: JobStore, *, owner: str | None = None, status: str | None = None, limit: int = 50,
              cursor: Cursor | None = None) -> tuple[list[Job], Cursor | None]:
    """One page of jobs, newest first, after ``cursor``; and the cursor of the next page (None
    at the end). ``list_jobs``'s ``before`` is a bare ``created_at``, so the jobs created in the
    same millisecond as the cursor are read again and those already returned are dropped here:
    paging never skips or repeats a job."""
    before = cursor[0] + " " if cursor else None  # just above cursor[0]: its ties come back
    batch = store.list_jobs(owner=owner, status=status, limit=limit + 1 + TIE_SLACK, before=before)
    if cursor:
        batch = [j for j in batch if not (j.created_at == cursor[0] and j.job_id >= cursor[1])]
    page = batch[:limit]
    return page, ((page[-1].created_at, page[-1].job_id) if len(batch) > limit and page else None)


def iter_jobs(store: JobStore, *, owner: str | None = None, status: str | None = None,
              page_size: int = 500) -> Iterator[Job]:
    """Every matching job, newest first, page by page."""
    cursor = None
    while True:
        page, cursor = page_jobs(store, owner=owner, status=status, limit=page_size, cursor=cursor)
        yield from page
        if cursor is None:
            return
