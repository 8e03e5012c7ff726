"""The image processor's work: one task in, output files and one result out.

A task is acked only after every output is written and the result published. Bad images
(the engine's ``ImageError``) are permanent: the result says why and the task is acked.
Anything else (storage or bus trouble) raises, so the message is nacked and retried, and
after ``max_delivery_attempts`` it is dead-lettered and the interaction manager marks the
image failed. Redelivery rewrites the same output objects, so retries never duplicate.

A redelivered task may be the one that crashed the worker last time (a poison image that
kills the decoder or exhausts memory). It is rendered in a child process, so it can only
crash the child: the tasks running beside it are not taken down with it again and again
until they too are dead-lettered.
"""
from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from typing import Callable

from imageflow import domain
from imageflow.blobstore import BlobNotFound, BlobStore
from imageflow.bus import MessageBus, ReceivedMessage
from imageflow.engine import ImageError, Limits, Rendered, render
from imageflow.messages import Output, Result, Task, decode_delivered
from imageflow.metrics import TASK_DURATION, TASKS
from imageflow.settings import Settings

from .dedupe import OutputIndex
from .job_gate import JobGate

log = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000, immutable"


def render_task(task: Task, data: bytes, limits: Limits) -> list[Rendered]:
    """The engine's render of one task's input. A module-level function, so a child process
    can be handed it (and a test harness can hand the processor another one)."""
    return render(data, task.operations, limits)


RenderTask = Callable[[Task, bytes, Limits], list[Rendered]]


@dataclass
class Processor:
    settings: Settings
    blobs: BlobStore
    bus: MessageBus
    render: RenderTask = render_task
    gate: JobGate | None = None  # skips the tasks of cancelled jobs (job_gate.py)
    dedupe: OutputIndex | None = None  # copies the outputs of an identical earlier task (dedupe.py)

    def handle_message(self, message: ReceivedMessage) -> None:
        """Subscriber callback for ``imageflow-tasks-processor``."""
        task = decode_delivered(Task, message)
        if task is None:
            return
        result = self.process(task, isolate=(message.delivery_attempt or 1) > 1)
        self.bus.publish(self.settings.topics.results, result.encode(), {"job_id": task.job_id})
        message.ack()

    def process(self, task: Task, isolate: bool = False) -> Result:
        """Render the task's outputs and write them; a failed Result for a bad image.
        Raises on transient trouble (the task will be retried). ``isolate`` renders in a
        child process (a crash there raises WorkerCrash instead of killing this process)."""
        started = time.monotonic()
        skip = self.gate.skip_reason(task.job_id) if self.gate else None
        if skip:
            return Result(job_id=task.job_id, image_id=task.image_id, status=domain.IMAGE_SKIPPED, error=skip)
        try:
            data = self.blobs.get(task.input_path)
        except BlobNotFound:
            return self._failed(task, "the original upload is missing from storage", started)
        reused = self.dedupe.reuse(task, data) if self.dedupe else None
        if reused:
            return self._succeeded(task, reused[0], started, len(data), duplicate_of=reused[1])
        limits = Limits.from_settings(self.settings)
        try:
            rendered = render_isolated(self.render, task, data, limits) if isolate else self.render(task, data, limits)
        except ImageError as exc:
            return self._failed(task, exc.reason, started)
        outputs = []
        for item in rendered:
            path = domain.output_file(task.output_path, item.ext, item.variant)
            self.blobs.put(path, item.data, item.content_type, cache_control=CACHE_CONTROL)
            outputs.append(Output(path=path, content_type=item.content_type, width=item.width,
                                  height=item.height, bytes=len(item.data), variant=item.variant))
        if self.dedupe:
            self.dedupe.remember(task, data, outputs)
        return self._succeeded(task, outputs, started, len(data))

    @staticmethod
    def _succeeded(task: Task, outputs: list[Output], started: float, input_bytes: int,
                   duplicate_of: str | None = None) -> Result:
        first = outputs[0]
        duration = time.monotonic() - started
        TASKS.labels(status="succeeded").inc()
        TASK_DURATION.observe(duration)
        return Result(job_id=task.job_id, image_id=task.image_id, status="succeeded", output_path=first.path,
                      content_type=first.content_type, width=first.width, height=first.height, bytes=first.bytes,
                      duration_ms=int(duration * 1000), outputs=[asdict(o) for o in outputs],
                      input_bytes=input_bytes, duplicate_of=duplicate_of)

    @staticmethod
    def _failed(task: Task, reason: str, started: float) -> Result:
        TASKS.labels(status="failed").inc()
        log.info("image %s/%s failed: %s", task.job_id, task.image_id, reason)
        return Result(job_id=task.job_id, image_id=task.image_id, status="failed", error=reason,
                      duration_ms=int((time.monotonic() - started) * 1000))


class WorkerCrash(RuntimeError):
    """The child process rendering a task died (a signal, or out of memory)."""


def _render_in_child(render_fn: RenderTask, task: Task, data: bytes, limits: Limits) -> list[Rendered] | tuple[str, str]:
    # ImageError comes back as a value: exceptions with extra constructor arguments do not unpickle.
    try:
        return render_fn(task, data, limits)
    except ImageError as exc:
        return exc.code, exc.reason


def render_isolated(render_fn: RenderTask, task: Task, data: bytes, limits: Limits) -> list[Rendered]:
    """``render_fn`` in a fresh child process (spawned: forking a threaded worker is unsafe)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            outcome = pool.submit(_render_in_child, render_fn, task, data, limits).result()
        except BrokenProcessPool:
            log.error("rendering %s crashed its child process", task.input_path)
            raise WorkerCrash(f"rendering {task.input_path} crashed its process") from None
    if isinstance(outcome, tuple):
        raise ImageError(*outcome)
    return outcome
