"""Whether a task's job still wants it: the processor asks before rendering, so a cancelled
job's images that have not started are skipped (the ones already rendering finish).

The job document is read at most once per ``ttl`` seconds per job, so a big job costs a
few reads, not one per image; a cancel takes effect within that time. A skip is always
decided on a fresh read, so a task queued again by a retry is never skipped on a stale one.
"""
from __future__ import annotations

import logging
import threading
import time

from imageflow import domain
from imageflow.jobstore import JobStore

log = logging.getLogger(__name__)


class JobGate:
    def __init__(self, jobs: JobStore, ttl: float = 1.0, clock=time.monotonic):
        self.jobs = jobs
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, domain.Job | None]] = {}  # job_id -> (read at, job)

    def job(self, job_id: str, fresh: bool = False) -> domain.Job | None:
        """The job document, at most ``ttl`` seconds old (None: no such job). Raises if unreachable."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(job_id)
            if seen and now - seen[0] < self.ttl and not fresh:
                return seen[1]
        job = self.jobs.get_job(job_id)
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[job_id] = (now, job)
        return job

    def skip_reason(self, job_id: str) -> str | None:
        """Why the job's tasks should not be rendered now, or None to render them."""
        try:
            job = self.job(job_id)
            if job is None or job.cancel_requested_at:
                # a skip is decided on a fresh read: a retry may have lifted the cancel since
                job = self.job(job_id, fresh=True)
        except Exception:  # the store is unreachable: rendering is the safe default
            log.exception("could not read job %s; rendering its task", job_id)
            return None
        reason = None
        if job is None:
            reason = "skipped: the job no longer exists"
        elif job.cancel_requested_at or job.status == domain.CANCELLED:
            reason = "skipped: the job was cancelled before this image started"
        return reason
