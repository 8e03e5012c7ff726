"""The interaction manager's handlers together: one object for the service's wiring (``app.py``)
and for the tests and tools that drive the manager as one. Each message's work lives in its own
module, and this only builds them over the same ports and forwards to them:

- ``fan_out``   job.submitted -> tasks (and its dead letter);
- ``uploads``   object finalize -> a direct upload joins its open job;
- ``progress``  results -> progress, job.completed, failed images for dead-lettered tasks;
- ``sweep``     the minute's crash repair (idle open jobs, lost messages, the outstanding counter).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from imageflow import domain, fair_share
from imageflow.blobstore import BlobStore
from imageflow.bus import MessageBus
from imageflow.jobstore import JobStore
from imageflow.messages import JobCompleted
from imageflow.settings import Settings

from .fan_out import FanOut
from .progress import Progress
from .sweep import Sweep
from .uploads import Uploads


@dataclass
class Coordinator:
    settings: Settings
    jobs: JobStore
    bus: MessageBus
    blobs: BlobStore | None = None
    on_completed: Callable[[domain.Job, JobCompleted], None] | None = None  # called after the publish (tests, metrics)
    releaser: fair_share.Releaser | None = field(default=None, repr=False)  # FAIR_SHARE_TASKS: held tasks go out here

    def __post_init__(self):
        if self.releaser is None:
            self.releaser = fair_share.Releaser(self.settings, self.jobs, self.bus)
        self.progress = Progress(self.settings, self.jobs, self.bus, self.releaser, self.on_completed)
        self.uploads = Uploads(self.settings, self.jobs, self.bus, self.blobs)
        self.starter = FanOut(self.settings, self.jobs, self.progress, self.releaser)
        self.sweeper = Sweep(self.settings, self.jobs, self.starter, self.progress, self.uploads)
        # the handlers, by message
        self.handle_job_submitted = self.starter.handle_job_submitted
        self.handle_job_dead_letter = self.starter.handle_job_dead_letter
        self.fan_out = self.starter.fan_out
        self.upload_event = self.uploads.upload_event
        self.join_uploads = self.uploads.join_uploads
        self.join_uploaded = self.uploads.join_uploaded
        self.fold = self.progress.fold
        self.release = self.progress.release
        self.announce = self.progress.announce
        self.fail_job = self.progress.fail_job
        self.dead_letter_result = self.progress.dead_letter_result
        self.handle_result_dead_letter = self.progress.handle_result_dead_letter
        self.outstanding_tasks = self.progress.outstanding_tasks
        self.sweep = self.sweeper.sweep
        self.repair_outstanding = self.sweeper.repair_outstanding
