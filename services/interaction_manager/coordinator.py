"""The interaction manager's work: fan a job out into tasks, fold results into progress,
announce completion once. Handlers receive their dependencies; no Flask, no threads of
their own except the result batcher's flusher.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from imageflow import domain, fair_share, tracing
from imageflow.blobstore import BlobStore
from imageflow.bus import MessageBus, ReceivedMessage
from imageflow.direct_uploads import DirectUploads, UploadEvent, upload_event
from imageflow.jobstore import (
    REPAIR_COMPLETION,
    JobStore,
    iter_jobs,
    scan_outstanding,
)
from imageflow.messages import (
    JobCompleted,
    JobSubmitted,
    Result,
    Task,
    decode_delivered,
)
from imageflow.settings import Settings

from . import lifecycle

log = logging.getLogger(__name__)

FAN_OUT_PAGE = 500  # tasks published per page; the images' ``tasked`` flag is where a crashed fan-out resumes


@dataclass
class Coordinator:
    settings: Settings
    jobs: JobStore
    bus: MessageBus
    blobs: BlobStore | None = None
    on_completed: Callable[[domain.Job, JobCompleted], None] | None = None  # called after the publish (tests, metrics)
    _fan_out_errors: dict = field(default_factory=dict, repr=False)  # job_id -> last fan-out error (for its reason)
    _outstanding_drift: int | None = field(default=None, repr=False)  # drift the last repair pass saw
    releaser: fair_share.Releaser | None = field(default=None, repr=False)  # FAIR_SHARE_TASKS: held tasks go out here

    def __post_init__(self):
        if self.releaser is None:
            self.releaser = fair_share.Releaser(self.settings, self.jobs, self.bus)

    @property
    def fair(self) -> bool:
        return fair_share.enabled(self.settings)

    # -- job.submitted -> tasks ------------------------------------------------------------
    def handle_job_submitted(self, message: ReceivedMessage) -> None:
        submitted = decode_delivered(JobSubmitted, message)
        if submitted is None:
            return
        try:
            self.fan_out(submitted.job_id)
        except Exception as exc:  # retried with backoff, then dead-lettered (handle_job_dead_letter)
            self._fan_out_errors[submitted.job_id] = f"{type(exc).__name__}: {exc}"[:300]
            while len(self._fan_out_errors) > 1000:
                self._fan_out_errors.pop(next(iter(self._fan_out_errors)))
            raise
        message.ack()

    def handle_job_dead_letter(self, message: ReceivedMessage) -> None:
        """A job.submitted whose fan-out kept failing: the job fails, each unfinished image with the
        reason, and is announced like any finished job (so it can be deleted)."""
        submitted = decode_delivered(JobSubmitted, message)
        if submitted is None:
            return
        attempts = message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") or "several"
        cause = self._fan_out_errors.pop(submitted.job_id, None)
        self.fail_job(submitted.job_id, f"the job could not be started after {attempts} attempts"
                      + (f" ({cause})" if cause else ""))
        message.ack()

    def fail_job(self, job_id: str, reason: str) -> None:
        job = self.jobs.get_job(job_id)
        if job is None or job.is_terminal:
            return
        unfinished = [i for i in self.jobs.list_images(job_id) if i.status not in domain.TERMINAL_IMAGE_STATUSES]
        log.error("job %s failed: %s", job_id, reason)
        self.fold([Result(job_id=job_id, image_id=i.image_id, status="failed", error=reason) for i in unfinished])
        job = self.jobs.get_job(job_id)
        if job is not None and not job.is_terminal:  # no image left to fail (a job of none): fail the job itself
            job = self.jobs.update_job(job_id, status=domain.FAILED, completed_at=domain.utcnow())
            self.announce(job)

    def handle_result_dead_letter(self, message: ReceivedMessage) -> None:
        """A result that could not be folded in MAX_DELIVERY_ATTEMPTS batches: folded alone (so one bad
        result no longer sinks a batch); a failure nacks it, retried at the backoff's slowest."""
        result = decode_delivered(Result, message)
        if result is None:
            return
        log.warning("folding dead-lettered result of %s/%s on its own", result.job_id, result.image_id)
        self.fold([result])
        message.ack()

    def fan_out(self, job_id: str) -> int:
        """Publish the task of every image that has none on the bus yet, a page at a time;
        returns how many. Each page is recorded (``mark_tasked``) before the next, so after a
        crash a redelivered ``job.submitted`` goes on where it stopped, and nothing holds the
        job's whole image list. With fair share on (``imageflow.fair_share``) only what the
        owner's share allows goes out now (one release pass over every job in progress); the
        rest is released as results are folded. A closed job records ``tasks_published`` once
        none is left; an open one may get more images (they come back here as a ``job.submitted``,
        or image-handler publishes them itself with fair share off). A job that is already
        finished (closed after its last result) is announced."""
        job = self.jobs.get_job(job_id)
        if job is None:
            log.warning("job.submitted for unknown job %s", job_id)
            return 0
        if job.is_terminal or (job.tasks_published and not job.is_open):
            self._announce_if_due(job)
            return 0
        if job.status == domain.QUEUED:
            self.jobs.transition(job_id, domain.start())
        count = 0
        if self.fair:
            count = self.releaser.release()
            job = self.jobs.get_job(job_id) or job
            if not job.is_open and self.jobs.untasked_images(job_id, limit=1):
                return count  # held back: the release after a later fold records tasks_published
        else:
            while published := self.releaser.publish(job, FAN_OUT_PAGE):
                count += published
        if not job.is_open:
            job = self.jobs.transition(job_id, domain.record_tasks_published()) or self.jobs.get_job(job_id)
            self._announce_if_due(job)
        if count:
            log.info("job %s: published %d tasks", job_id, count)
        return count

    def _announce_if_due(self, job: domain.Job) -> None:
        if job.is_terminal and not job.notified_at:
            self.announce(job)

    # -- object finalize -> a directly uploaded image joins its job -----------------------
    def join_uploaded(self, attributes: dict, data: bytes) -> str | None:
        """The outcome for one object event: None when ignored, else what happened (for logs and tests)."""
        event = self.upload_event(attributes, data)
        return None if event is None else self.join_uploads([event])[event.image_id]

    @staticmethod
    def upload_event(attributes: dict, data: bytes) -> UploadEvent | None:
        """The direct upload an object event announces (``direct_uploads.upload_event``)."""
        return upload_event(attributes, data)

    def join_uploads(self, events: list[UploadEvent]) -> dict[str, str]:
        """A batch of landed direct uploads joins their jobs (``DirectUploads.join``)."""
        return self.direct_uploads.join(events)

    @property
    def direct_uploads(self) -> DirectUploads:
        return DirectUploads(self.settings, self.jobs, self.bus, self.blobs)

    # -- results -> progress --------------------------------------------------------------
    def fold(self, results: list[Result]) -> None:
        """Record a batch of results (one job-document write per job) and announce every job
        the batch finished."""
        outcome = self.jobs.record_results(results)
        for job in outcome.jobs.values():
            if job.is_terminal and not job.notified_at:
                self.announce(job)
        self.release()

    def release(self) -> int:
        """With fair share on: the tasks that results just made room for (``fair_share.Releaser``).
        A failure is logged, not raised: the results are recorded, the next fold or sweep releases."""
        if not self.fair:
            return 0
        try:
            return self.releaser.release()
        except Exception:
            log.exception("releasing held tasks failed; the next fold or the sweep will")
            return 0

    def announce(self, job: domain.Job) -> bool:
        """Publish ``job.completed`` once: the claim (``notified_at``) is recorded first; if the
        publish fails the claim is released so a redelivered result tries again. Its
        subscribers (the email function, the webhook sender) reach the user."""
        if not self.jobs.mark_notified(job.job_id, domain.utcnow(), run=job.run):
            return False
        event = lifecycle.completed_event(job, self.settings)
        try:
            message_id = self.bus.publish(self.settings.topics.notifications, event.encode(),
                                          {"job_id": job.job_id, "status": job.status})
        except Exception:
            self.jobs.transition(job.job_id, domain.release_notified())
            raise
        self.jobs.transition(job.job_id, domain.record_completion_published(message_id))
        log.info("job %s %s: %d/%d succeeded", job.job_id, job.status, job.succeeded, job.total)
        if self.on_completed:
            try:
                self.on_completed(self.jobs.get_job(job.job_id) or job, event)
            except Exception:
                log.exception("completion hook failed for %s", job.job_id)
        return True

    # -- dead letters -> failed images ----------------------------------------------------
    def dead_letter_result(self, message: ReceivedMessage) -> Result | None:
        """The failed result for a task the processors gave up on (dead-lettered)."""
        task = decode_delivered(Task, message, ack=False)  # the batcher acks it
        if task is None:
            return None
        attempts = message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") or "several"
        return Result(job_id=task.job_id, image_id=task.image_id, status="failed",
                      error_code=domain.WORKER_CRASHED,
                      error=f"processing failed after {attempts} attempts: the image could not be processed "
                            "(the worker crashed or ran out of time on it)")

    # -- exact backlog for autoscaling ----------------------------------------------------
    def outstanding_tasks(self) -> int:
        """Images of jobs in progress (open ones too) that have no result folded yet (KEDA metrics-api
        trigger): the job store's maintained counter, a handful of reads however many jobs run."""
        return max(0, self.jobs.outstanding_tasks())  # below 0 only after a drift the sweep repairs

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
            self._outstanding_drift = None
            return 0
        if drift != self._outstanding_drift:
            self._outstanding_drift = drift
            return 0
        self._outstanding_drift = None
        if not self.jobs.adjust_outstanding(drift, expected=before):  # it moved, or another replica repaired it
            return 0
        log.warning("outstanding-task counter drifted: it read %d, the jobs add up to %d; corrected",
                    before, scanned)
        return drift

    def sweep(self, older_than_seconds: float = 60.0) -> int:
        """Repair after a crash: re-announce jobs claimed but never published, re-fan-out jobs
        still queued, however many finished since (queried directly, page by page); close open
        jobs idle for ``OPEN_JOB_IDLE_SECONDS`` and publish what a crashed upload left untasked.
        Returns how many jobs it touched."""
        touched = self._sweep_open_jobs(older_than_seconds)
        cutoff = time.time() - older_than_seconds
        for job in self.jobs.iter_repairs(REPAIR_COMPLETION):
            if job.is_terminal and _age_cutoff(job.notified_at, cutoff):
                self.jobs.transition(job.job_id, domain.release_notified())
                touched += self.announce(self.jobs.get_job(job.job_id))
        for job in iter_jobs(self.jobs, status=domain.QUEUED):
            if _age_cutoff(job.created_at, cutoff):
                touched += bool(self.fan_out(job.job_id))
        touched += bool(self.release())  # what a crash mid-release left held
        self.repair_outstanding()
        return touched

    def _sweep_open_jobs(self, older_than_seconds: float) -> int:
        touched = 0
        now = time.time()
        idle_cutoff = now - self.settings.open_job_idle_seconds
        for job in list(iter_jobs(self.jobs, status=domain.OPEN)):
            last = job.last_file_at or job.created_at
            if _age_cutoff(last, idle_cutoff):
                log.info("job %s: no new file for %d s, closing it", job.job_id, self.settings.open_job_idle_seconds)
                self.direct_uploads.join_landed(job.job_id)  # close loses nothing: see Intake.close
                self.jobs.close_job(job.job_id, domain.utcnow())
                self.fan_out(job.job_id)
                touched += 1
            elif _age_cutoff(last, now - older_than_seconds):
                touched += bool(self.fan_out(job.job_id))  # images a crashed upload request left untasked
        # Closed jobs whose job.submitted was lost: publish what is missing, announce what is done.
        for status in (domain.PROCESSING, *domain.TERMINAL_JOB_STATUSES):
            for job in self.jobs.list_jobs(status=status, limit=200):
                if job.closed_at and _age_cutoff(job.closed_at, now - older_than_seconds) \
                        and not job.notified_at and not (job.tasks_published and not job.is_terminal):
                    self.fan_out(job.job_id)
                    touched += 1
        return touched


def _age_cutoff(timestamp: str, cutoff: float) -> bool:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() < cutoff
    except ValueError:
        return False


class ResultBatcher:
    """Collects result messages and folds them in batches (every ``interval`` seconds or
    ``max_batch`` messages), acking them only once their batch is recorded. Any item with its
    message batches the same way (the interaction manager's upload events do)."""

    def __init__(self, fold, *, interval: float = 1.0, max_batch: int = 200):
        self._fold = fold
        self._interval = interval
        self._max = max_batch
        self._lock = threading.Lock()
        self._pending: list[tuple[Result, ReceivedMessage]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="result-batcher", daemon=True)
        self._thread.start()

    def add(self, result: Result | None, message: ReceivedMessage) -> None:
        with self._lock:
            self._pending.append((result, message))
            if len(self._pending) >= self._max:
                self._wake.set()

    def handle_result(self, message: ReceivedMessage) -> None:
        result = decode_delivered(Result, message)
        if result is None:
            return
        self.add(result, message)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        results = [r for r, _ in batch if r is not None]
        try:
            if results:
                with tracing.batch("fold results", [m for _, m in batch]):  # a job.completed joins its job's trace
                    self._fold(results)
        except Exception:
            log.exception("folding %d results failed; they will be redelivered", len(results))
            for _, message in batch:
                message.nack()
            return
        for _, message in batch:
            message.ack()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
