"""The image processor's work: one task in, output files and one result out.

A task is acked only after every output is written and the result published. Bad images
(the engine's ``ImageError``) are permanent: the result says why and the task is acked.
Anything else (storage or bus trouble) raises, so the message is nacked and retried, and
after ``max_delivery_attempts`` it is dead-lettered and the interaction manager marks the
image failed. Redelivery rewrites the same output objects, so retries never duplicate.

Every render runs in a long-lived worker process (:class:`RenderPool`, one per concurrency
slot) whose resident memory is capped: a poison image that kills the decoder or exhausts
memory takes down only its worker, which is replaced, and only its own task fails, on the
first attempt and with a reason; the tasks rendering beside it carry on.
"""
from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from imageflow import domain, tracing
from imageflow.blobstore import BlobNotFound, BlobStore
from imageflow.bus import MessageBus, ReceivedMessage
from imageflow.engine import ImageError, Limits, Rendered, render
from imageflow.engine.render import INPUT_PREVIEW, OUTPUT_PREVIEW
from imageflow.engine.schema import resolve_operations
from imageflow.engine.overlay import is_url, named_overlays
from imageflow.messages import Output, Result, Task, decode_delivered
from imageflow.metrics import TASK_DURATION, TASKS
from imageflow.safe_http import FetchPolicy
from imageflow.settings import Settings

from .dedupe import OutputIndex
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
        try:
            result = self.process(task)
        except RenderPoolDraining:
            log.info("stopping: task %s/%s released before its render", task.job_id, task.image_id)
            message.nack()
            return
        self.bus.publish(self.settings.topics.results, result.encode(), {"job_id": task.job_id})
        message.ack()

    def _check_gate(self, task: Task) -> None:
        skip = self.gate.skip_reason(task.job_id) if self.gate else None
        if skip:
            raise TaskSkipped(skip)

    def process(self, task: Task) -> Result:
        """Render the task's outputs (in a render worker) and write them; a failed Result for a bad
        image, or one whose render killed its worker. Raises on transient trouble (the task will be
        retried)."""
        started = time.monotonic()
        skip = self.gate.skip_reason(task.job_id) if self.gate else None
        if skip:  # cancelled before this image started: no fetch, no render
            return Result(job_id=task.job_id, image_id=task.image_id, status=domain.IMAGE_SKIPPED, error=skip)
        input_facts: dict = {}
        if task.source_url:
            fetched = self.fetcher.fetch(task)
            if isinstance(fetched, str):  # why the URL gave no image
                return self._failed(task, domain.FETCH_FAILED, fetched, started)
            data, mime = fetched
            input_facts = {"input_content_type": mime}
        else:
            try:
                data = self.blobs.get(task.input_path)
            except BlobNotFound:
                gone = self.gate.gone_reason(task) if self.gate else None
                if gone:  # its job was deleted (or expired) since the task was queued
                    return Result(job_id=task.job_id, image_id=task.image_id, status=domain.IMAGE_SKIPPED, error=gone)
                return self._failed(task, domain.MISSING_INPUT, "the original upload is missing from storage", started)
        input_facts["input_bytes"] = len(data)  # savings
        limits = Limits.from_settings(self.settings)
        # overlays name per-job files (or URLs whose bytes may change): those tasks always render
        dedupe = self.dedupe if self.dedupe and not named_overlays(task.operations) else None
        reused = dedupe.reuse(task, data) if dedupe else None
        if reused:
            outputs, source, render_facts = reused
            return self._succeeded(task, outputs, started, data, None, limits, input_facts,
                                   render_facts, duplicate_of=source, previews=self._copied_previews(task, source))
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
            return self._failed(task, domain.WORKER_CRASHED, str(exc), started, **input_facts)
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
        if dedupe:  # once the previews are written too: a copy copies them
            dedupe.remember(task, data, outputs, render_facts)
        return result

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
                    raise ImageError("invalid", f"the overlay {name!r} is missing from storage") from None

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


class WorkerCrash(RuntimeError):
    """The worker process rendering a task died under it (a signal, a native crash, the memory cap)."""


class RenderPoolDraining(RuntimeError):
    """The processor is stopping: the task never started its render and goes back to the bus."""


# -- render workers -----------------------------------------------------------------------------
# Renders never use BLAS, but OpenBLAS (loaded with numpy and SciPy for SSIMULACRA2, and again inside
# OpenCV for face gravity) starts a thread and reserves buffers for every core of the machine when it
# loads: 180 MB more address space on 2 cores, more on a bigger node. The workers inherit this.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# A worker that, after a render, keeps this much more resident than when it was ready (a leak, a
# library's cache) is replaced before its next task: what a render may use does not shrink with a
# worker's history (issue 22).
RECYCLE_GROWTH_BYTES = 64 << 20


def resident_bytes(pid: int | str = "self") -> int:
    """A process's resident memory (RSS: what a node's memory accounting and OOM killer count);
    0 once it is gone, or where /proc is missing."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _release_free_heap() -> None:
    """Give the heap a render freed back to the system (glibc keeps it otherwise), so a worker's
    resident size after a render is what it still holds."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _too_large(memory_bytes: int) -> tuple[str, str]:
    return "too_large", f"the render needs more than the {memory_bytes >> 20} MB a render worker may use"


def _worker_main(conn, memory_bytes: int) -> None:
    """A render worker: renders what it is sent until its pipe closes. The pool watches its resident
    memory against the cap (:meth:`RenderPool.render`). Every library the engine loads on first use
    is loaded before the first render, so a render finds the same process whatever the worker did
    before: a face crop's OpenCV is not charged to the next task. SIGTERM and SIGINT are ignored:
    the processor decides when its workers stop (it drains, then closes their pipes, and a worker
    returns on EOF; if the processor dies, the pipe closes too). A worker that exited on a signal
    sent to the whole process group, as a local stack's stop is, would fail a task the draining
    processor was just handing it."""
    import signal

    from imageflow.engine import load_libraries
    from imageflow.runtime import configure_logging

    configure_logging("image-processor")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    load_libraries()
    _release_free_heap()
    ready = resident_bytes()
    while True:
        try:
            render_fn, task, data, limits = conn.recv()
        except (EOFError, OSError):
            return
        retire = False
        try:
            outcome = ["ok", render_fn(task, data, limits)]
        except ImageError as exc:  # sent as a value: exceptions with extra constructor arguments do not unpickle
            outcome = ["image_error", (exc.code, exc.reason)]
        except MemoryError:  # the system refused an allocation outright (larger than the machine)
            outcome = ["image_error", _too_large(memory_bytes)]
            retire = True  # start afresh rather than go on with a heap that ran dry
        except Exception as exc:
            outcome = ["error", f"{type(exc).__name__}: {exc}"]
        del data
        try:
            conn.send((*outcome, retire))
        except MemoryError:
            conn.send(("image_error", ("too_large", "the render's output does not fit in a worker's memory"), True))
            retire = True
        if retire:
            return
        # Settle after answering (off the render's time): the pool reads this before the next task.
        del outcome
        _release_free_heap()
        grown = resident_bytes() - ready
        conn.send(("settled", grown <= RECYCLE_GROWTH_BYTES))
        if grown > RECYCLE_GROWTH_BYTES:
            log.info("a render worker holds %d MB more than when it started: replacing it", grown >> 20)
            return


class _Worker:
    def __init__(self, memory_bytes: int):
        ctx = multiprocessing.get_context("spawn")  # forking a threaded process is unsafe
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, memory_bytes), daemon=True,
                                   name="render-worker")
        self.process.start()
        child.close()
        self.settling = False  # it answered a render and has yet to say whether it stays

    def fit_for_next(self) -> bool:
        """Alive, and not grown past RECYCLE_GROWTH_BYTES by what it rendered last."""
        if self.settling:
            try:
                if not self.conn.poll(30):
                    return False
                _, keep = self.conn.recv()
            except (EOFError, OSError):
                return False
            self.settling = False
            if not keep:
                return False
        return self.process.is_alive()

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)

    def exit_description(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"


class RenderPool:
    """Long-lived render worker processes, one per concurrency slot, each with a cap on its resident
    memory (PROCESSOR_WORKER_MEMORY_MB). A render runs in an idle worker, and waits for one when every slot is
    busy: the processor may hold more tasks than slots (their storage and bus calls overlap the renders),
    but never renders more at once than it has slots. A worker that dies, overruns the render time
    limit or its memory cap, is replaced at once, and only the task it was rendering fails. Rendering in
    processes also gives one processor's tasks true parallelism across cores (no shared GIL).

    The cap is on resident memory (RSS), sampled every WATCH_SECONDS while a render runs, not on
    address space (RLIMIT_AS): address space is mostly reservations no render uses (library code,
    thread stacks, OpenBLAS' buffers), and it grows for good with what a worker has loaded, so an
    address-space cap failed a render in a worker that had done face crops and passed it in a fresh
    one (issue 22). Sampling lets a render pass the cap by what it can fault in between two samples
    (tens of MB); a single allocation larger than the machine still fails at once (MemoryError)."""

    GRACE_SECONDS = 15.0  # past the engine's own time limit (RenderBudget), before a worker is killed
    WATCH_SECONDS = 0.01  # how often a rendering worker's resident memory is checked against the cap

    def __init__(self, size: int, memory_mb: int = 0):
        self.size, self.memory_bytes = max(1, size), max(0, memory_mb) << 20
        self._idle: list[_Worker] = []
        self._changed = threading.Condition()
        self._started = 0  # workers that exist (idle or rendering); started on first need
        self._draining = False  # no new render starts (stopping); the ones in progress finish
        self._closed = False
        self.replaced = 0
        self.rendering = 0  # renders in progress now, and the most there ever were (never above size)
        self.peak_rendering = 0

    def drain(self) -> None:
        """Start no more renders: a render waiting for a slot, or asked for later, raises
        :class:`RenderPoolDraining`, so its task can be released to another processor at once."""
        with self._changed:
            self._draining = True
            self._changed.notify_all()

    def _take(self) -> _Worker:
        with self._changed:
            while True:
                if self._closed or self._draining:
                    raise RenderPoolDraining("the processor is stopping: no new render starts")
                if self._idle or self._started < self.size:
                    break
                self._changed.wait()
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                self._started += 1
            self.rendering += 1
            self.peak_rendering = max(self.peak_rendering, self.rendering)
        try:
            if worker is not None and not worker.fit_for_next():  # grown, or died while idle (a stray signal)
                worker.stop()
                with self._changed:
                    self.replaced += 1
                worker = None
            return worker or _Worker(self.memory_bytes)
        except BaseException:
            with self._changed:
                self._started -= 1
                self.rendering -= 1
                self._changed.notify()
            raise

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._changed:
            self.rendering -= 1
            if healthy and not self._closed:
                self._idle.append(worker)
                self._changed.notify()
                return
            if not self._closed:
                self.replaced += 1
        worker.stop()
        # The slot's new worker, started now so no render waits on a dead one's replacement.
        replacement = None if self._closed else _Worker(self.memory_bytes)
        with self._changed:
            if replacement is not None and not self._closed:
                self._idle.append(replacement)
                self._changed.notify()
                return
            self._started -= 1
        if replacement is not None:
            replacement.stop()

    def render(self, render_fn: RenderTask, task: Task, data: bytes, limits: Limits,
               before: Callable[[], None] | None = None) -> list[Rendered]:
        """Render in a free worker (waiting for one); ``before`` runs once the slot is ours, just
        before the render starts, and may raise to give the slot back unused."""
        worker = self._take()
        healthy = False
        try:
            if before is not None:
                try:
                    before()
                except BaseException:
                    healthy = True  # the worker was never used
                    raise
            worker.conn.send((render_fn, task, data, limits))
            self._await(worker, task, limits)
            kind, payload, retire = worker.conn.recv()
            healthy = not retire
            worker.settling = healthy
        except (EOFError, OSError):
            how = worker.exit_description()
            log.error("the render worker for %s died (%s)", task.input_path, how)
            raise WorkerCrash(f"rendering it crashed its worker process ({how}: out of memory or a decoder "
                              "crash); the image could not be processed") from None
        finally:
            self._release(worker, healthy)
        if kind == "ok":
            return payload
        if kind == "image_error":
            raise ImageError(*payload)
        raise RuntimeError(f"rendering {task.input_path} failed: {payload}")

    def _await(self, worker: _Worker, task: Task, limits: Limits) -> None:
        """Wait for the worker's answer; a render past its time limit or its memory cap raises (and the
        worker is replaced)."""
        deadline = time.monotonic() + limits.max_render_seconds + self.GRACE_SECONDS
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("the render of %s overran its time limit: replacing its worker", task.input_path)
                raise ImageError("timeout", f"the render did not finish within {limits.max_render_seconds:g} s")
            if worker.conn.poll(min(left, self.WATCH_SECONDS) if self.memory_bytes else left):
                return
            if self.memory_bytes and resident_bytes(worker.process.pid) > self.memory_bytes:
                worker.process.kill()  # at once: it is still allocating
                log.error("the render of %s passed the %d MB memory cap: replacing its worker", task.input_path,
                          self.memory_bytes >> 20)
                raise ImageError(*_too_large(self.memory_bytes))

    def close(self) -> None:
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._started -= len(idle)
            self._changed.notify_all()
        for worker in idle:
            worker.stop()
