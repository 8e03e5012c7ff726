"""Whether a task's job still wants it: the processor asks before rendering, so a cancelled
job's images that have not started are skipped (the ones already rendering finish).

The processor has no job store (job documents hold emails and webhook secrets, and its
service account has no Firestore role): a cancel reaches it through the blob store, as the
marker object ``<job_id>/control/cancelled`` (domain.cancel_marker) that the cancel route
writes, a retry lifts and a delete or expiry removes with the job's files.

The marker is looked up at most once per ``ttl`` seconds per job, so a big job costs a few
reads, not one per image; a cancel takes effect within that time. A skip is always decided on
a fresh read, so a task queued again by a retry is never skipped on a stale one.
"""
from __future__ import annotations

import logging
import threading
import time

from imageflow import domain
from imageflow.blobstore import BlobStore
from imageflow.messages import Task

log = logging.getLogger(__name__)

CANCELLED = "skipped: the job was cancelled before this image started"
GONE = "skipped: the job no longer exists (its files were deleted)"


class JobGate:
    def __init__(self, blobs: BlobStore, ttl: float = 1.0, clock=time.monotonic):
        self.blobs = blobs
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, bool]] = {}  # job_id -> (read at, cancelled)

    def cancelled(self, job_id: str, fresh: bool = False) -> bool:
        """Whether the job's cancel marker is there, at most ``ttl`` seconds old. Raises if unreachable."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(job_id)
            if seen and now - seen[0] < self.ttl and not fresh:
                return seen[1]
        cancelled = self.blobs.exists(domain.cancel_marker(job_id))
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[job_id] = (now, cancelled)
        return cancelled

    def skip_reason(self, job_id: str) -> str | None:
        """Why the job's tasks should not be rendered now, or None to render them."""
        try:
            # a skip is decided on a fresh read: a retry may have lifted the cancel since
            if self.cancelled(job_id) and self.cancelled(job_id, fresh=True):
                return CANCELLED
        except Exception:  # the store is unreachable: rendering is the safe default
            log.exception("could not read the cancel marker of job %s; rendering its task", job_id)
        return None

    def gone_reason(self, task: Task) -> str | None:
        """For a task whose original is missing: why it is skipped when its whole job is gone (deleted
        or expired, which remove every file under ``<job_id>/``), or None (the job is there and only
        this original is missing: the task fails with the reason)."""
        own_folder = f"{task.job_id}/"
        if not task.input_path.startswith(own_folder):  # a re-run reads its parent's originals
            return None
        try:
            return None if self.blobs.list(own_folder) else GONE
        except Exception:
            log.exception("could not list the files of job %s", task.job_id)
            return None
