"""job.submitted -> tasks: start the job and put its images' tasks on the bus, a page at a time
(all at once, or within each key's share with fair share on); a job.submitted that kept failing
is dead-lettered here and fails its job."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from imageflow import domain, fair_share
from imageflow.bus import ReceivedMessage
from imageflow.jobstore import JobStore
from imageflow.messages import JobSubmitted, decode_delivered
from imageflow.settings import Settings

from .progress import Progress

log = logging.getLogger(__name__)

FAN_OUT_PAGE = 500  # tasks published per page; the images' ``tasked`` flag is where a crashed fan-out resumes
MAX_REMEMBERED_ERRORS = 1000  # fan-out errors kept for the dead-letter's reason


@dataclass
class FanOut:
    settings: Settings
    jobs: JobStore
    progress: Progress
    releaser: fair_share.Releaser
    _errors: dict = field(default_factory=dict, repr=False)  # job_id -> last fan-out error (for its reason)

    def handle_job_submitted(self, message: ReceivedMessage) -> None:
        submitted = decode_delivered(JobSubmitted, message)
        if submitted is None:
            return
        try:
            self.fan_out(submitted.job_id)
        except Exception as exc:  # retried with backoff, then dead-lettered (handle_job_dead_letter)
            self._errors[submitted.job_id] = f"{type(exc).__name__}: {exc}"[:300]
            while len(self._errors) > MAX_REMEMBERED_ERRORS:
                self._errors.pop(next(iter(self._errors)))
            raise
        message.ack()

    def handle_job_dead_letter(self, message: ReceivedMessage) -> None:
        """A job.submitted whose fan-out kept failing: the job fails, each unfinished image with the
        reason, and is announced like any finished job (so it can be deleted)."""
        submitted = decode_delivered(JobSubmitted, message)
        if submitted is None:
            return
        attempts = message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") or "several"
        cause = self._errors.pop(submitted.job_id, None)
        self.progress.fail_job(submitted.job_id, f"the job could not be started after {attempts} attempts"
                               + (f" ({cause})" if cause else ""))
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
            self.progress.announce_if_due(job)
            return 0
        if job.status == domain.QUEUED:
            self.jobs.transition(job_id, domain.start())
        count = 0
        if fair_share.enabled(self.settings):
            count = self.releaser.release()
            job = self.jobs.get_job(job_id) or job
            if not job.is_open and self.jobs.untasked_images(job_id, limit=1):
                return count  # held back: the release after a later fold records tasks_published
        else:
            while published := self.releaser.publish(job, FAN_OUT_PAGE):
                count += published
        if not job.is_open:
            job = self.jobs.transition(job_id, domain.record_tasks_published()) or self.jobs.get_job(job_id)
            self.progress.announce_if_due(job)
        if count:
            log.info("job %s: published %d tasks", job_id, count)
        return count
