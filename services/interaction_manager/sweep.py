"""The minute's repair pass: what a crash or a lost message left undone. Completions claimed but
never published are announced again, jobs still queued are fanned out, open jobs idle for
``OPEN_JOB_IDLE_SECONDS`` are closed, held tasks are released, and a drift of the outstanding
counter is corrected."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from imageflow import domain
from imageflow.jobstore import REPAIR_COMPLETION, JobStore, iter_jobs, scan_outstanding
from imageflow.settings import Settings

from .fan_out import FanOut
from .progress import Progress
from .uploads import Uploads

log = logging.getLogger(__name__)

CLOSED_JOBS_PAGE = 200  # closed jobs per status looked at for a lost job.submitted


@dataclass
class Sweep:
    settings: Settings
    jobs: JobStore
    fan_out: FanOut
    progress: Progress
    uploads: Uploads
    _drift: int | None = field(default=None, repr=False)  # drift the last repair pass saw

    def sweep(self, older_than_seconds: float = 60.0) -> int:
        """Repair after a crash: re-announce jobs claimed but never published, re-fan-out jobs
        still queued, however many finished since (queried directly, page by page); close open
        jobs idle for ``OPEN_JOB_IDLE_SECONDS`` and publish what a crashed upload left untasked.
        Returns how many jobs it touched."""
        touched = self._sweep_open_jobs(older_than_seconds)
        cutoff = time.time() - older_than_seconds
        for job in self.jobs.iter_repairs(REPAIR_COMPLETION):
            if job.is_terminal and _older(job.notified_at, cutoff):
                self.jobs.transition(job.job_id, domain.release_notified())
                touched += self.progress.announce(self.jobs.get_job(job.job_id))
        for job in iter_jobs(self.jobs, status=domain.QUEUED):
            if _older(job.created_at, cutoff):
                touched += bool(self.fan_out.fan_out(job.job_id))
        touched += bool(self.progress.release())  # what a crash mid-release left held
        self.repair_outstanding()
        return touched

    def _sweep_open_jobs(self, older_than_seconds: float) -> int:
        touched = 0
        now = time.time()
        idle_cutoff = now - self.settings.open_job_idle_seconds
        for job in list(iter_jobs(self.jobs, status=domain.OPEN)):
            last = job.last_file_at or job.created_at
            if _older(last, idle_cutoff):
                log.info("job %s: no new file for %d s, closing it", job.job_id, self.settings.open_job_idle_seconds)
                self.uploads.join_landed(job.job_id)  # close loses nothing: see Intake.close
                self.jobs.close_job(job.job_id, domain.utcnow())
                self.fan_out.fan_out(job.job_id)
                touched += 1
            elif _older(last, now - older_than_seconds):
                touched += bool(self.fan_out.fan_out(job.job_id))  # images a crashed upload request left untasked
        # Closed jobs whose job.submitted was lost: publish what is missing, announce what is done.
        for status in (domain.PROCESSING, *domain.TERMINAL_JOB_STATUSES):
            for job in self.jobs.list_jobs(status=status, limit=CLOSED_JOBS_PAGE):
                if job.closed_at and _older(job.closed_at, now - older_than_seconds) \
                        and not job.notified_at and not (job.tasks_published and not job.is_terminal):
                    self.fan_out.fan_out(job.job_id)
                    touched += 1
        return touched

    def repair_outstanding(self) -> int:
        """Compare the counter with a paged scan of the jobs and correct a drift (a Firestore TTL
        deletion, a database edited by hand); returns the correction made. A scan is not atomic
        with the writes it races, so the counter is read before and after it (a change meanwhile:
        try next time), and only a drift seen the same on two passes in a row is corrected."""
        before = self.jobs.outstanding_tasks()
        scanned = scan_outstanding(self.jobs)
        if self.jobs.outstanding_tasks() != before:
            return 0
        drift = scanned - before
        if not drift:
            self._drift = None
            return 0
        if drift != self._drift:
            self._drift = drift
            return 0
        self._drift = None
        if not self.jobs.adjust_outstanding(drift, expected=before):  # it moved, or another replica repaired it
            return 0
        log.warning("outstanding-task counter drifted: it read %d, the jobs add up to %d; corrected",
                    before, scanned)
        return drift


def _older(timestamp: str, cutoff: float) -> bool:
    """True when the ISO ``timestamp`` is before ``cutoff`` (epoch seconds); False when unreadable."""
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() < cutoff
    except ValueError:
        return False
