"""results -> progress: fold a batch of results into their jobs (one job-document write per job),
release what fair share held back, announce each job the batch finished (``job.completed``,
once), and fail what can no longer finish (dead-lettered tasks, results and fan-outs)."""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from imageflow import domain, fair_share
from imageflow.bus import MessageBus, ReceivedMessage
from imageflow.jobstore import JobStore
from imageflow.messages import JobCompleted, Result, Task, decode_delivered
from imageflow.settings import Settings

from . import lifecycle
from .batcher import ResultBatcher

log = logging.getLogger(__name__)


@dataclass
class Progress:
    settings: Settings
    jobs: JobStore
    bus: MessageBus
    releaser: fair_share.Releaser
    on_completed: Callable[[domain.Job, JobCompleted], None] | None = None  # called after the publish (tests, metrics)
    replica: str = field(default_factory=lambda: uuid.uuid4().hex)  # this process, for its fold-queue report
    _reported: int | None = field(default=None, repr=False)  # the fold-queue size last recorded

    def batcher(self) -> ResultBatcher:
        """The results subscription's batcher: folds every PROGRESS_FLUSH_SECONDS, and records the
        fold queue's size (``report_fold_queue``) around each fold."""
        return ResultBatcher(self.fold, interval=self.settings.progress_flush_seconds, on_size=self.report_fold_queue)

    def report_fold_queue(self, size: int) -> None:
        """Record this replica's results received and not yet folded (written only when it changed),
        so GET /outstanding stops counting work already rendered."""
        if size != self._reported:
            self.jobs.set_fold_queue(self.replica, size, time.time())
            self._reported = size

    def fold(self, results: list[Result]) -> None:
        """Record a batch of results (one job-document write per job) and announce every job
        the batch finished."""
        outcome = self.jobs.record_results(results)
        for job in outcome.jobs.values():
            self.announce_if_due(job)
        self.release()

    def release(self) -> int:
        """With fair share on: the tasks that results just made room for (``fair_share.Releaser``).
        A failure is logged, not raised: the results are recorded, the next fold or sweep releases."""
        if not fair_share.enabled(self.settings):
            return 0
        try:
            return self.releaser.release()
        except Exception:
            log.exception("releasing held tasks failed; the next fold or the sweep will")
            return 0

    def announce_if_due(self, job: domain.Job) -> None:
        if job.is_terminal and not job.notified_at:
            self.announce(job)

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

    def fail_job(self, job_id: str, reason: str) -> None:
        """Fail every unfinished image of the job with ``reason`` (a job of none fails itself)."""
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

    @staticmethod
    def dead_letter_result(message: ReceivedMessage) -> Result | None:
        """The failed result for a task the processors gave up on (dead-lettered)."""
        task = decode_delivered(Task, message, ack=False)  # the batcher acks it
        if task is None:
            return None
        attempts = message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") or "several"
        return Result(job_id=task.job_id, image_id=task.image_id, status="failed",
                      error_code=domain.WORKER_CRASHED,
                      error=f"processing failed after {attempts} attempts: the image could not be processed "
                            "(the worker crashed or ran out of time on it)")

    def outstanding_tasks(self) -> int:
        """Work not yet rendered (KEDA metrics-api trigger): images of jobs in progress (open ones too,
        and those fair share holds back) without an outcome, less the results in the fold queue
        (rendered, not yet folded: a lagging fold must not keep workers up). The job store's
        maintained counter and the replicas' fold-queue reports: a handful of reads however many
        jobs run."""
        # below 0 only after a drift the sweep repairs, or a duplicate result in the queue
        return max(0, self.jobs.outstanding_tasks() - self.jobs.fold_queue(time.time()))
