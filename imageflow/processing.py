"""The image processor's work: one task in, output files and one result out.

A task is acked only after every output is written and the result published. Bad images
(the engine's ``ImageError``) are permanent: the result says why and the task is acked.
Anything else (storage or bus trouble) raises, so the message is nacked and retried, and
after ``max_delivery_attempts`` it is dead-lettered and the interaction manager marks the
image failed. Redelivery rewrites the same output objects, so retries never duplicate.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from .blobstore import BlobNotFound, BlobStore
from .bus import MessageBus, ReceivedMessage
from .imaging import ImageError, Limits, render
from .messages import MessageError, Output, Result, Task
from .metrics import TASK_DURATION, TASKS
from .settings import Settings

log = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass
class Processor:
    settings: Settings
    blobs: BlobStore
    bus: MessageBus

    def handle_message(self, message: ReceivedMessage) -> None:
        """Subscriber callback for ``imageflow-tasks-processor``."""
        try:
            task = Task.decode(message.data)
        except MessageError as exc:
            log.error("dropping malformed task %s: %s", message.message_id, exc)
            message.ack()
            return
        result = self.process(task)
        self.bus.publish(self.settings.topics.results, result.encode(), {"job_id": task.job_id})
        message.ack()

    def process(self, task: Task) -> Result:
        """Render the task's outputs and write them; a failed Result for a bad image.
        Raises on transient trouble (the task will be retried)."""
        started = time.monotonic()
        try:
            data = self.blobs.get(task.input_path)
        except BlobNotFound:
            return self._failed(task, "the original upload is missing from storage", started)
        self.settings.faults.before_task(task.input_path)  # no-op unless IMAGEFLOW_FAULTS is set
        try:
            rendered = render(data, task.operations, Limits.from_settings(self.settings))
        except ImageError as exc:
            return self._failed(task, exc.reason, started)
        outputs = []
        for item in rendered:
            suffix = f"-{item.variant}" if item.variant else ""
            path = f"{task.output_path}{suffix}.{item.ext}"
            self.blobs.put(path, item.data, item.content_type, cache_control=CACHE_CONTROL)
            outputs.append(Output(path=path, content_type=item.content_type, width=item.width,
                                  height=item.height, bytes=len(item.data), variant=item.variant))
        first = outputs[0]
        duration = time.monotonic() - started
        TASKS.labels(status="succeeded").inc()
        TASK_DURATION.observe(duration)
        return Result(job_id=task.job_id, image_id=task.image_id, status="succeeded", output_path=first.path,
                      content_type=first.content_type, width=first.width, height=first.height, bytes=first.bytes,
                      duration_ms=int(duration * 1000), outputs=[asdict(o) for o in outputs])

    @staticmethod
    def _failed(task: Task, reason: str, started: float) -> Result:
        TASKS.labels(status="failed").inc()
        log.info("image %s/%s failed: %s", task.job_id, task.image_id, reason)
        return Result(job_id=task.job_id, image_id=task.image_id, status="failed", error=reason,
                      duration_ms=int((time.monotonic() - started) * 1000))
