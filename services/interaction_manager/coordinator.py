"""The interaction manager's work: fan a job out into tasks, fold results into progress,
announce completion once. Handlers receive their dependencies; no Flask, no threads of
their own except the result batcher's flusher.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from imageflow import domain
from imageflow.blobstore import BlobStore
from imageflow.bus import MessageBus, ReceivedMessage
from imageflow.jobstore import JobStore, iter_jobs
from imageflow.messages import (
    JobCompleted,
    JobSubmitted,
    Result,
    Task,
    decode_delivered,
)
from imageflow.settings import Settings

from . import lifecycle
from .url_import import UrlImporter

log = logging.getLogger(__name__)


@dataclass
class Coordinator:
    settings: Settings
    jobs: JobStore
    bus: MessageBus
    blobs: BlobStore | None = None
    on_completed: Callable[[domain.Job, JobCompleted], None] | None = None  # extra completion hook (webhooks), called after the publish
    importer: UrlImporter | None = None  # fetches the inputs of images imported by URL (imageflow.fetch)

    # -- job.submitted -> tasks ------------------------------------------------------------
    def handle_job_submitted(self, message: ReceivedMessage) -> None:
        submitted = decode_delivered(JobSubmitted, message)
        if submitted is None:
            return
        self.fan_out(submitted.job_id)
        message.ack()

    def fan_out(self, job_id: str) -> int:
        """Publish one task per unfinished image of the job; returns how many. Idempotent:
        once every task is published the job records it and a redelivery publishes nothing."""
        job = self.jobs.get_job(job_id)
        if job is None:
            log.warning("job.submitted for unknown job %s", job_id)
            return 0
        if job.is_terminal or job.tasks_published:
            return 0
        if job.status == domain.QUEUED:
            self.jobs.update_job(job_id, status=domain.PROCESSING)
        count = 0
        images = [i for i in self.jobs.list_images(job_id) if i.status not in domain.TERMINAL_IMAGE_STATUSES]
        ready = self.importer.fetch_inputs(images) if self.importer else ((i, None) for i in images)
        unfetchable: list[Result] = []
        for image, error in ready:
            if error:  # a URL that could not be imported is an image that failed, with its reason
                unfetchable.append(Result(job_id=job_id, image_id=image.image_id, status="failed", error=error))
                continue
            task = Task(job_id=job_id, image_id=image.image_id, input_path=image.input_path,
                        output_path=domain.output_stem(job_id, image.image_id, image.filename),
                        operations=job.operations)
            self.bus.publish(self.settings.topics.tasks, task.encode(), {"job_id": job_id})
            count += 1
        if unfetchable:  # folded before tasks_published, so a crash here retries them
            self.fold(unfetchable)
        self.jobs.update_job(job_id, tasks_published=True)
        log.info("job %s: published %d tasks", job_id, count)
        return count

    # -- results -> progress --------------------------------------------------------------
    def fold(self, results: list[Result]) -> None:
        """Record a batch of results (one job-document write per job) and announce every job
        the batch finished."""
        outcome = self.jobs.record_results(results)
        for job in outcome.jobs.values():
            if job.is_terminal and not job.notified_at:
                self.announce(job)

    def announce(self, job: domain.Job) -> bool:
        """Publish ``job.completed`` once: the claim (``notified_at``) is recorded first; if the
        publish fails the claim is released so a redelivered result tries again."""
        if not self.jobs.mark_notified(job.job_id, domain.utcnow()):
            return False
        event = lifecycle.completed_event(job, self.settings)
        try:
            message_id = self.bus.publish(self.settings.topics.notifications, event.encode(),
                                          {"job_id": job.job_id, "status": job.status})
        except Exception:
            self.jobs.update_job(job.job_id, notified_at=None)
            raise
        self.jobs.update_job(job.job_id, completion_message_id=message_id)
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
                      error=f"processing failed after {attempts} attempts: the image could not be processed "
                            "(the worker crashed or ran out of time on it)")

    # -- exact backlog for autoscaling ----------------------------------------------------
    def outstanding_tasks(self) -> int:
        """Images of jobs in progress that have no result folded yet (KEDA metrics-api trigger)."""
        return sum(max(0, job.total - job.done) for job in iter_jobs(self.jobs, status=domain.PROCESSING))

    def sweep(self, older_than_seconds: float = 60.0) -> int:
        """Repair after a crash: re-announce jobs claimed but never published, re-fan-out jobs
        still queued. Returns how many jobs it touched."""
        touched = 0
        cutoff = time.time() - older_than_seconds
        for status in domain.TERMINAL_JOB_STATUSES:
            for job in self.jobs.list_jobs(status=status, limit=200):
                if job.notified_at and not job.completion_message_id \
                        and _age_cutoff(job.notified_at, cutoff):
                    self.jobs.update_job(job.job_id, notified_at=None)
                    touched += self.announce(self.jobs.get_job(job.job_id))
        for job in self.jobs.list_jobs(status=domain.QUEUED, limit=200):
            if _age_cutoff(job.created_at, cutoff):
                touched += bool(self.fan_out(job.job_id))
        return touched


def _age_cutoff(timestamp: str, cutoff: float) -> bool:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() < cutoff
    except ValueError:
        return False


class ResultBatcher:
    """Collects result messages and folds them in batches (every ``interval`` seconds or
    ``max_batch`` messages), acking them only once their batch is recorded."""

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
