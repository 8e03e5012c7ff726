"""The interaction manager's work: fan a job out into tasks, fold results into progress,
announce completion once. Handlers receive their dependencies; no Flask, no threads of
their own except the result batcher's flusher.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable

from imageflow import domain, tracing
from imageflow.blobstore import OBJECT_FINALIZE, BlobNotFound, BlobStore
from imageflow.bus import MessageBus, ReceivedMessage
from imageflow.engine import ImageError, Limits, probe
from imageflow.jobstore import (
    REPAIR_COMPLETION,
    JobClosed,
    JobStore,
    TooManyImages,
    iter_jobs,
    quota_room,
    scan_outstanding,
    unfinished_images,
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

_INPUT_OBJECT = re.compile(r"^(?P<job>[0-9a-f]{32})/input/(?P<image>[0-9a-f]{32})-[^/]+$")
FAN_OUT_PAGE = 500  # tasks published per page; the images' ``tasked`` flag is where a crashed fan-out resumes


@dataclass
class UploadEvent:
    """An object-finalize event of a direct upload: the object, where it goes, and its facts."""

    job_id: str
    image_id: str
    path: str
    info: dict          # the event's object resource (size, metadata)
    filename: str       # the client's name, cleaned for display


@dataclass
class Coordinator:
    settings: Settings
    jobs: JobStore
    bus: MessageBus
    blobs: BlobStore | None = None
    on_completed: Callable[[domain.Job, JobCompleted], None] | None = None  # called after the publish (tests, metrics)
    _fan_out_errors: dict = field(default_factory=dict, repr=False)  # job_id -> last fan-out error (for its reason)
    _outstanding_drift: int | None = field(default=None, repr=False)  # drift the last repair pass saw

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
        job's whole image list. A closed job records ``tasks_published``; an open one may get
        more images (image-handler publishes those itself). A job that is already finished
        (closed after its last result) is announced."""
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
        while page := self.jobs.untasked_images(job_id, limit=FAN_OUT_PAGE):
            for image in page:
                self.bus.publish(self.settings.topics.tasks, domain.task_for(job, image).encode(), {"job_id": job_id})
            self.jobs.mark_tasked(job_id, [image.image_id for image in page])
            count += len(page)
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

    def upload_event(self, attributes: dict, data: bytes) -> UploadEvent | None:
        """The direct upload an object event announces, or None for other objects (outputs, the
        API's own originals) and other events."""
        if attributes.get("eventType") != OBJECT_FINALIZE:
            return None
        path = attributes.get("objectId") or ""
        match = _INPUT_OBJECT.match(path)
        if not match:
            return None
        try:
            info = json.loads(data or b"{}")
        except ValueError:
            info = {}
        client_name = domain.direct_upload_name(info.get("metadata") if isinstance(info, dict) else None)
        if client_name is None:
            return None
        return UploadEvent(match["job"], match["image"], path, info, domain.display_name(client_name))

    def join_uploads(self, events: list[UploadEvent]) -> dict[str, str]:
        """Direct uploads that landed (the bucket's notifications, or the local store's), a batch
        at a time: each is checked like an upload, then each job's images join it in one store
        transaction (``JobStore.join_images``: the quota and MAX_FILES_PER_JOB checked there too)
        and their tasks are published. Idempotent: a redelivered event finds its image in the
        job, and only the images added now get a task. Returns {image_id: outcome}: joined,
        failed (refused by a check: the job shows it with the reason), duplicate, late (the job
        is closed or gone: the object is deleted) or refused (no room: deleted)."""
        by_job: dict[str, dict[str, UploadEvent]] = defaultdict(dict)
        for event in events:
            by_job[event.job_id].setdefault(event.image_id, event)
        outcomes: dict[str, str] = {}
        for job_id, job_events in by_job.items():
            outcomes.update(self._join_job_uploads(job_id, list(job_events.values())))
        return outcomes

    def _join_job_uploads(self, job_id: str, events: list[UploadEvent]) -> dict[str, str]:
        job = self.jobs.get_job(job_id)
        if job is None or not job.is_open:
            return self._late_uploads(job, events)
        now = domain.utcnow()
        images = []
        for event in events:
            error, mime, size = self._check_object(event.path, event.info)
            image = domain.Image(job_id=job_id, image_id=event.image_id, filename=event.filename,
                                 input_path=event.path, input_content_type=mime, input_bytes=size)
            # a file refused by a check joins as failed, with the reason, in the same transaction
            images.append(replace(image, status=domain.IMAGE_FAILED, error=error, updated_at=now) if error else image)
        quota = self.settings.quota_active_images
        admit = (lambda active, joining: _within_image_quota(active, joining, quota)) if quota else None
        try:
            joined = self.jobs.join_images(job_id, images, max_total=self.settings.max_files_per_job, now=now,
                                           admit=admit)
        except JobClosed as exc:  # closed meanwhile
            return self._late_uploads(exc.job, events)
        except TooManyImages as exc:  # no room for all: those that fit join, one by one
            room = max(0, exc.limit - exc.job.total)
            outcomes = {}
            for event in events[room:]:
                log.info("upload %s refused: %s", event.path, exc)
                self.blobs.delete_prefix(event.path)
                outcomes[event.image_id] = "refused"
            return {**self.join_uploads(events[:room]), **outcomes} if room else outcomes
        outcomes = {image_id: "duplicate" for image_id in joined.present}
        queued = [i for i in joined.added if i.status == domain.IMAGE_QUEUED]
        outcomes.update({i.image_id: "failed" for i in joined.added if i.status != domain.IMAGE_QUEUED})
        for image in queued:
            self.bus.publish(self.settings.topics.tasks, domain.task_for(joined.job, image).encode(),
                             {"job_id": job_id})
            outcomes[image.image_id] = "joined"
        if queued:
            self.jobs.mark_tasked(job_id, [i.image_id for i in queued])
        if joined.added:
            log.info("job %s: %d direct uploads joined (%d refused by a check)", job_id, len(joined.added),
                     len(joined.added) - len(queued))
        return outcomes

    def _late_uploads(self, job: domain.Job | None, events: list[UploadEvent]) -> dict[str, str]:
        """Uploads for a job that is closed or gone: deleted, unless the job holds them already."""
        outcomes = {}
        for event in events:
            if job is not None and self.jobs.get_image(event.job_id, event.image_id) is not None:
                outcomes[event.image_id] = "duplicate"
                continue
            log.info("upload %s arrived for a job that is %s: deleting it", event.path, job.status if job else "gone")
            self.blobs.delete_prefix(event.path)
            outcomes[event.image_id] = "late"
        return outcomes

    def _check_object(self, path: str, info: dict) -> tuple[str | None, str | None, int | None]:
        """(why it is refused or None, sniffed type, size): the upload checks, on a stored object."""
        limit = self.settings.max_upload_bytes
        try:
            size = int(info.get("size") or 0)
        except ValueError:
            size = 0
        if size > limit:
            return f"file is larger than the {limit // (1024 * 1024)} MB limit", None, size
        try:
            with self.blobs.open(path) as fh:
                data = fh.read(limit + 1)
        except BlobNotFound:
            return "the uploaded file is missing from storage", None, None
        if len(data) > limit:
            return f"file is larger than the {limit // (1024 * 1024)} MB limit", None, len(data)
        try:
            probed = probe(data, Limits.from_settings(self.settings))
        except ImageError as exc:
            return exc.reason, None, len(data)
        return None, probed.mime, len(data)

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
        publish fails the claim is released so a redelivered result tries again. Its
        subscribers (the email function, the webhook sender) reach the user."""
        if not self.jobs.mark_notified(job.job_id, domain.utcnow()):
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


def _within_image_quota(active: list[domain.Job], joining: list[domain.Image], quota: int) -> list[domain.Image]:
    """``QUOTA_ACTIVE_IMAGES`` for direct uploads (an ``AdmitImages``, run in the join's transaction):
    the images that fit join as they are; the rest join as failed images whose reason names the
    quota (the client sees them in the job's image list)."""
    room = quota_room(active, quota)
    admitted = []
    for image in joining:
        if image.status == domain.IMAGE_QUEUED:
            if room > 0:
                room -= 1
            else:
                image = replace(image, status=domain.IMAGE_FAILED,
                                error=f"quota exceeded: the job's owner already has {unfinished_images(active)} "
                                      f"unfinished images and the limit is {quota} (QUOTA_ACTIVE_IMAGES); "
                                      "send it again (a new upload target) once some have finished")
        admitted.append(image)
    return admitted


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
