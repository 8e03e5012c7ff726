"""The image processor's work: one task in, output files and one result out.

A task is acked only after every output is written and the result published. Bad images
(the engine's ``ImageError``) are permanent: the result says why and the task is acked.
Anything else (storage or bus trouble) raises, so the message is nacked and retried, and
after ``max_delivery_attempts`` it is dead-lettered and the interaction manager marks the
image failed. Redelivery rewrites the same output objects, so retries never duplicate.

Every render runs in a long-lived worker process (:class:`imageflow.render_pool.RenderPool`,
one per concurrency slot) whose resident memory is capped: a poison image that kills the decoder or exhausts
memory takes down only its worker, which is replaced, and only its own task fails, on the
first attempt and with a reason; the tasks rendering beside it carry on.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from imageflow import domain, tracing
from imageflow.blobstore import BlobNotFound, BlobStore
from imageflow.bus import MessageBus, ReceivedMessage
from imageflow.domain import ErrorCode
from imageflow.engine import ImageError, Limits, Rendered, render
from imageflow.engine.render import INPUT_PREVIEW, OUTPUT_PREVIEW
from imageflow.engine.schema import resolve_operations
from imageflow.engine.overlay import is_url, named_overlays
from imageflow.messages import Output, Result, Task, decode_delivered
from imageflow.render_pool import RenderPool, RenderPoolDraining, WorkerCrash
from imageflow.metrics import TASK_DURATION, TASKS
from imageflow.safe_http import FetchPolicy
from imageflow.settings import Settings

from .dedupe import Key, OutputIndex
from .job_gate import JobGate
from .url_fetch import OnePerJob, UrlFetcher

log = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000, immutable"
PREVIEW_SIZE = 320
# The thumbnails the job page and the API show: never the originals, never the full outputs.
PREVIEW_OPERATIONS = resolve_operations(None, [{"op": "resize", "width": PREVIEW_SIZE, "height": PREVIEW_SIZE},
                                               {"op": "format", "format": "webp", "quality": 70}])


def render_task(task: Task, data: bytes, limits: Limits, assets: dict[str, bytes] | None = None) -> list[Rendered]:
    """The engine's render of one task's input (``assets``: the overlay images its operations
    name), with the previews made from the same decode. A module-level function, so a worker
    process can be handed it (and a test harness can hand the processor another one; without
    previews in what it returns, they are rendered apart)."""
    return render(data, task.operations, limits, assets=assets, previews=PREVIEW_SIZE)


RenderTask = Callable[[Task, bytes, Limits], list[Rendered]]

# A copy waiting for the claimant of its dedupe key (dedupe.py) looks again after these many
# seconds, doubling up to the last (a release in this process wakes it at once), for at most
# COPY_WAIT_LIMIT_SECONDS: past that it renders itself (a claimant that is alive, renewing its
# claim, but never finishes: a render slot queue that long is the only way).
COPY_POLL_SECONDS = (0.25, 2.0)
COPY_WAIT_LIMIT_SECONDS = 300.0
# A copy that finds every waiting place taken comes back (is redelivered) this much later.
COPY_DEFER_SECONDS = 5.0


@dataclass
class Processor:
    settings: Settings
    blobs: BlobStore
    bus: MessageBus
    render: RenderTask = render_task
    fetcher: UrlFetcher | None = None  # built from settings on first use: fetches tasks' source URLs
    previews: bool = True
    fetch_policy: FetchPolicy | None = None     # for overlay URLs; None: from the settings
    pool: "RenderPool | None" = field(default=None, repr=False)
    gate: JobGate | None = None  # skips the tasks of cancelled jobs (job_gate.py)
    dedupe: OutputIndex | None = None  # copies the outputs of an identical earlier task (dedupe.py)
    overlay_fetches: OnePerJob = field(default_factory=OnePerJob, repr=False)

    def __post_init__(self):
        # Copies may wait for their claimant on the handler threads the render slots do not need:
        # however many wait, PROCESSOR_CONCURRENCY tasks can still be fetched and rendered.
        self.max_waiting = max(0, self.settings.processor_in_flight - self.settings.processor_concurrency)
        self.waiting = 0
        self.peak_waiting = 0
        self._waiting_lock = threading.Lock()
        if self.fetcher is None:
            self.fetcher = UrlFetcher(self.settings, self.blobs)
        if self.pool is None:
            self.pool = RenderPool(self.settings.processor_concurrency, self.settings.processor_worker_memory_mb)

    def close(self) -> None:
        self.pool.close()

    def release_waiting(self) -> None:
        """Stopping: tasks whose render has not started go back to the bus (nacked) for another
        processor, instead of being rendered during the drain; renders in progress finish."""
        self.pool.drain()

    def handle_message(self, message: ReceivedMessage) -> None:
        """Subscriber callback for ``imageflow-tasks-processor``. It runs on one of the subscriber's
        PROCESSOR_MAX_IN_FLIGHT threads: the storage and bus calls of the tasks in flight overlap each
        other and the renders, which wait for one of the PROCESSOR_CONCURRENCY render slots."""
        task = decode_delivered(Task, message)
        if task is None:
            return
        # a copy may be put off to a later delivery, but never into the last two, which the
        # dead-letter policy leaves for real retries
        may_defer = message.delivery_attempt < self.settings.max_delivery_attempts - 1
        try:
            result = self.process(task, may_defer=may_defer)
        except RenderPoolDraining:
            log.info("stopping: task %s/%s released before its render", task.job_id, task.image_id)
            message.nack()
            return
        except CopyDeferred as exc:  # the bus redelivers it after the deadline it chose
            message.extend(exc.seconds)
            return
        self.bus.publish(self.settings.topics.results, result.encode(), {"job_id": task.job_id})
        message.ack()

    def _check_gate(self, task: Task) -> None:
        skip = self.gate.skip_reason(task.job_id) if self.gate else None
        if skip:
            raise TaskSkipped(skip)

    def process(self, task: Task, may_defer: bool = False) -> Result:
        """Render the task's outputs (in a render worker) and write them, or copy those of an
        identical task (dedupe); a failed Result for a bad image, or one whose render killed its
        worker. Raises on transient trouble (the task will be retried), and CopyDeferred when
        ``may_defer`` and a copy should come back later (see ``_copy_or_claim``)."""
        started = time.monotonic()
        skip = self.gate.skip_reason(task.job_id) if self.gate else None
        if skip:  # cancelled before this image started: no fetch, no render
            return Result(job_id=task.job_id, image_id=task.image_id, status=domain.IMAGE_SKIPPED, error=skip)
        input_facts: dict = {}
        if task.source_url:
            fetched = self.fetcher.fetch(task)
            if isinstance(fetched, str):  # why the URL gave no image
                return self._failed(task, ErrorCode.FETCH_FAILED, fetched, started)
            data, mime = fetched
            input_facts = {"input_content_type": mime}
        else:
            try:
                data = self.blobs.get(task.input_path)
            except BlobNotFound:
                gone = self.gate.gone_reason(task) if self.gate else None
                if gone:  # its job was deleted (or expired) since the task was queued
                    return Result(job_id=task.job_id, image_id=task.image_id, status=domain.IMAGE_SKIPPED, error=gone)
                return self._failed(task, ErrorCode.MISSING_INPUT, "the original upload is missing from storage", started)
        input_facts["input_bytes"] = len(data)  # savings
        limits = Limits.from_settings(self.settings)
        # overlays name per-job files (or URLs whose bytes may change): those tasks always render
        dedupe = self.dedupe if self.dedupe and not named_overlays(task.operations) else None
        key = dedupe.key(task, data) if dedupe else None
        if key:
            reused = self._copy_or_claim(task, key, may_defer)
            if reused:
                outputs, source, render_facts = reused
                return self._succeeded(task, outputs, started, data, None, limits, input_facts, render_facts,
                                       duplicate_of=source, previews=self._copied_previews(task, source))
        try:
            return self._render(task, data, limits, input_facts, started, key)
        finally:
            if key:  # succeeded, failed or raised: a copy waiting for this render goes on now
                dedupe.release(key)

    def _render(self, task: Task, data: bytes, limits: Limits, input_facts: dict, started: float,
                key: Key | None) -> Result:
        try:
            assets = self.overlays(task)
            render_fn = functools.partial(self.render, assets=assets) if assets else self.render
            with tracing.span("render", job_id=task.job_id, image_id=task.image_id):  # in a worker process: timed here
                rendered = self.pool.render(render_fn, task, data, limits, before=lambda: self._check_gate(task))
        except TaskSkipped as exc:  # cancelled while this task waited for a render slot
            return Result(job_id=task.job_id, image_id=task.image_id, status=domain.IMAGE_SKIPPED, error=str(exc))
        except ImageError as exc:
            return self._failed(task, exc.code, exc.reason, started, **input_facts)
        except WorkerCrash as exc:
            return self._failed(task, ErrorCode.WORKER_CRASHED, str(exc), started, **input_facts)
        made = {item.variant: item for item in rendered if item.variant in (INPUT_PREVIEW, OUTPUT_PREVIEW)}
        rendered = [item for item in rendered if item.variant not in made]
        outputs = []
        for item in rendered:
            path = domain.output_file(task.output_path, item.ext, item.variant)
            self.blobs.put(path, item.data, item.content_type, cache_control=CACHE_CONTROL)
            outputs.append(Output(path=path, content_type=item.content_type, width=item.width,
                                  height=item.height, bytes=len(item.data), variant=item.variant,
                                  choices=item.choices))
        render_facts = {"blurhash": rendered[0].blurhash, "dominant_color": rendered[0].dominant_color,
                        "choices": rendered[0].choices}
        result = self._succeeded(task, outputs, started, data, rendered[0].data, limits, input_facts, render_facts,
                                 made=made)
        if key:  # once the previews are written too: a copy copies them
            self.dedupe.remember(task, key, outputs, render_facts)
        return result

    def _copy_or_claim(self, task: Task, key: Key, may_defer: bool) -> tuple[list[Output], str, dict] | None:
        """The copied outputs of an identical task rendered before (``OutputIndex.reuse``), or None
        once this task holds the key's claim and is to render. While another task holds it, this
        one waits for that render (on a waiting place: ``max_waiting``); with none free it raises
        CopyDeferred when ``may_defer``, else waits beyond them."""
        poll, longest = COPY_POLL_SECONDS
        give_up = time.monotonic() + COPY_WAIT_LIMIT_SECONDS
        seated = None  # whether this task took a waiting place (None: it has not waited yet)
        try:
            while True:
                reused = self.dedupe.reuse(task, key)
                if reused:
                    return reused
                if self.dedupe.claim(key):
                    reused = self.dedupe.reuse(task, key)  # the claimant finished between the two reads
                    if reused:
                        self.dedupe.release(key)
                    return reused
                if time.monotonic() > give_up:
                    log.warning("dedupe: %s waited %.0f s for the claimant of its key: rendering it",
                                key.holder, COPY_WAIT_LIMIT_SECONDS)
                    return None
                if self.pool.draining:
                    raise RenderPoolDraining("the processor is stopping: the copy goes back to the bus")
                if seated is None:
                    seated = self._take_waiting_place()
                    if not seated and may_defer:
                        raise CopyDeferred(COPY_DEFER_SECONDS)
                self.dedupe.wait(poll)
                poll = min(longest, poll * 2)
        finally:
            if seated:
                with self._waiting_lock:
                    self.waiting -= 1

    def _take_waiting_place(self) -> bool:
        with self._waiting_lock:
            if self.waiting >= self.max_waiting:
                return False
            self.waiting += 1
            self.peak_waiting = max(self.peak_waiting, self.waiting)
            return True

    def _succeeded(self, task: Task, outputs: list[Output], started: float, data: bytes, first_data: bytes | None,
                   limits: Limits, input_facts: dict, render_facts: dict, duplicate_of: str | None = None,
                   made: dict[str, Rendered] | None = None, previews: dict | None = None) -> Result:
        """The succeeded Result of rendered (or, with ``duplicate_of``, copied) outputs, with
        its previews (given, as a copy's are; else ``made``: those the render made; else from
        ``data`` and ``first_data``, the first output's bytes)."""
        made = made or {}
        first = outputs[0]
        if previews is None:
            previews = {}
        if not previews and self.previews:
            previews = {"preview_path": self._preview(task, domain.PREVIEW_INPUT, made.get(INPUT_PREVIEW), data,
                                                      limits)}
            if first_data is not None:
                previews["output_preview_path"] = self._preview(task, domain.PREVIEW_OUTPUT, made.get(OUTPUT_PREVIEW),
                                                                first_data, limits)
        duration = time.monotonic() - started
        TASKS.labels(status="succeeded").inc()
        TASK_DURATION.observe(duration)
        return Result(job_id=task.job_id, image_id=task.image_id, status="succeeded", output_path=first.path,
                      content_type=first.content_type, width=first.width, height=first.height, bytes=first.bytes,
                      duration_ms=int(duration * 1000), outputs=[asdict(o) for o in outputs], **input_facts,
                      blurhash=render_facts.get("blurhash"), dominant_color=render_facts.get("dominant_color"),
                      choices=render_facts.get("choices") or {}, duplicate_of=duplicate_of, **previews)

    def _copied_previews(self, task: Task, source: str) -> dict:
        """A copy's previews: the source image's, copied (the same input bytes, the same outputs).
        Rendering them here decoded every copy's input in this process, in as many handler
        threads as tasks in flight, past the render workers' concurrency and memory cap (a job
        of many identical photos kept this process at 1-2 cores and 760 MB). None for one the
        source has not got."""
        if not self.previews:
            return {}
        source_job, source_image = source.split("/", 1)
        fields = {domain.PREVIEW_INPUT: "preview_path", domain.PREVIEW_OUTPUT: "output_preview_path"}
        copied = {}
        for which, name in fields.items():
            path = domain.preview_path(task.job_id, task.image_id, which)
            try:
                self.blobs.put(path, self.blobs.get(domain.preview_path(source_job, source_image, which)),
                               "image/webp", cache_control=CACHE_CONTROL)
                copied[name] = path
            except BlobNotFound:  # the source got no preview (or is being deleted): show none
                copied[name] = None
        return copied

    def _preview(self, task: Task, which: str, preview: Rendered | None, source: bytes, limits: Limits) -> str | None:
        """Write the small WebP (rendered with the outputs, or else now from ``source``); its
        path, or None when it cannot be made (the image itself is fine: the views then show no
        preview, never the full file)."""
        if preview is None:
            try:
                [preview] = render(source, PREVIEW_OPERATIONS, limits)[:1]
            except ImageError as exc:
                log.warning("no %s preview for %s/%s: %s", which, task.job_id, task.image_id, exc.reason)
                return None
        path = domain.preview_path(task.job_id, task.image_id, which)
        self.blobs.put(path, preview.data, preview.content_type, cache_control=CACHE_CONTROL)
        return path

    def overlays(self, task: Task) -> dict[str, bytes]:
        """The images the task's overlay operations name, from ``<job_id>/input/``. A URL is
        fetched by the first task that needs it, streamed to storage under the URL-import rules
        (the byte budget, sniffed and probed like an input), and read from there by the rest of
        the job; the job's tasks in this process share that one fetch, and its failure (url_fetch.
        OnePerJob). Raises ImageError when one cannot be had."""
        assets = {}
        for name in named_overlays(task.operations):
            path = domain.overlay_path(task.job_id, name)
            try:
                assets[name] = self.blobs.get(path)
                continue
            except BlobNotFound:
                if not is_url(name):
                    raise ImageError(ErrorCode.INVALID, f"the overlay {name!r} is missing from storage") from None

            def fetch_once(name=name, path=path):
                if not self.blobs.exists(path):   # another task stored it since we looked
                    self.fetcher.fetch_overlay(name, path, self.fetch_policy)

            self.overlay_fetches.run((task.job_id, name), fetch_once)
            assets[name] = self.blobs.get(path)
        return assets

    @staticmethod
    def _failed(task: Task, code: str, reason: str, started: float, **facts) -> Result:
        TASKS.labels(status="failed").inc()
        log.info("image %s/%s failed (%s): %s", task.job_id, task.image_id, code, reason)
        return Result(job_id=task.job_id, image_id=task.image_id, status="failed", error=reason, error_code=code,
                      duration_ms=int((time.monotonic() - started) * 1000), **facts)


class TaskSkipped(Exception):
    """The task's job was cancelled (or is gone) before its render started."""


class CopyDeferred(Exception):
    """A copy waiting for its dedupe claimant found no free waiting place: it is redelivered in ``seconds``."""

    def __init__(self, seconds: float):
        super().__init__(f"deferred {seconds:g} s")
        self.seconds = seconds
