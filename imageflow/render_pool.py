"""Render workers: long-lived processes, each with a cap on its resident memory, that render
what they are sent. The image processor renders every task in one (:class:`RenderPool`, one
worker per PROCESSOR_CONCURRENCY slot); the image-handler renders an estimate's samples in a
small pool of its own (services/image_handler/estimate.py), so neither ever decodes an image
in its own memory. A poison image that kills the decoder or exhausts memory takes down only
its worker, which is replaced, and only its own render fails.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from typing import Any, Callable

from imageflow.domain import ErrorCode
from imageflow.engine import ImageError, Limits

log = logging.getLogger(__name__)

RenderFn = Callable[[Any, bytes, Limits], Any]


def _label(task) -> str:
    """What a log line calls the render: a task's input path, else the object's own words."""
    return str(getattr(task, "input_path", None) or task)


class WorkerCrash(RuntimeError):
    """The worker process rendering a task died under it (a signal, a native crash, the memory cap)."""


class RenderPoolDraining(RuntimeError):
    """The pool is stopping: the render never started (a processor's task goes back to the bus)."""


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


def _too_large(memory_bytes: int) -> tuple[ErrorCode, str]:
    return ErrorCode.TOO_LARGE, f"the render needs more than the {memory_bytes >> 20} MB a render worker may use"


def _worker_main(conn, memory_bytes: int, service: str = "image-processor") -> None:
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

    configure_logging(service)
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
            conn.send(("image_error", (ErrorCode.TOO_LARGE, "the render's output does not fit in a worker's memory"), True))
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
    def __init__(self, memory_bytes: int, service: str = "image-processor"):
        ctx = multiprocessing.get_context("spawn")  # forking a threaded process is unsafe
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, memory_bytes, service), daemon=True,
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

    def __init__(self, size: int, memory_mb: int = 0, *, grace_seconds: float | None = None,
                 service: str = "image-processor"):
        self.size, self.memory_bytes = max(1, size), max(0, memory_mb) << 20
        self.grace_seconds = self.GRACE_SECONDS if grace_seconds is None else grace_seconds
        self.service = service  # the name the workers log under
        self._idle: list[_Worker] = []
        self._changed = threading.Condition()
        self._started = 0  # workers that exist (idle or rendering); started on first need
        self._draining = False  # no new render starts (stopping); the ones in progress finish
        self._closed = False
        self.replaced = 0
        self.rendering = 0  # renders in progress now, and the most there ever were (never above size)
        self.peak_rendering = 0

    @property
    def draining(self) -> bool:
        return self._draining or self._closed

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
            return worker or _Worker(self.memory_bytes, self.service)
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
        replacement = None if self._closed else _Worker(self.memory_bytes, self.service)
        with self._changed:
            if replacement is not None and not self._closed:
                self._idle.append(replacement)
                self._changed.notify()
                return
            self._started -= 1
        if replacement is not None:
            replacement.stop()

    def render(self, render_fn: RenderFn, task, data: bytes, limits: Limits,
               before: Callable[[], None] | None = None):
        """``render_fn(task, data, limits)`` (a module-level function: it is pickled) in a free
        worker, waiting for one; its answer. ``before`` runs once the slot is ours, just before
        the render starts, and may raise to give the slot back unused."""
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
            log.error("the render worker for %s died (%s)", _label(task), how)
            raise WorkerCrash(f"rendering it crashed its worker process ({how}: out of memory or a decoder "
                              "crash); the image could not be processed") from None
        finally:
            self._release(worker, healthy)
        if kind == "ok":
            return payload
        if kind == "image_error":
            raise ImageError(*payload)
        raise RuntimeError(f"rendering {_label(task)} failed: {payload}")

    def _await(self, worker: _Worker, task, limits: Limits) -> None:
        """Wait for the worker's answer; a render past its time limit or its memory cap raises (and the
        worker is replaced)."""
        deadline = time.monotonic() + limits.max_render_seconds + self.grace_seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("the render of %s overran its time limit: replacing its worker", _label(task))
                raise ImageError(ErrorCode.TIMEOUT, f"the render did not finish within {limits.max_render_seconds:g} s")
            if worker.conn.poll(min(left, self.WATCH_SECONDS) if self.memory_bytes else left):
                return
            if self.memory_bytes and resident_bytes(worker.process.pid) > self.memory_bytes:
                worker.process.kill()  # at once: it is still allocating
                log.error("the render of %s passed the %d MB memory cap: replacing its worker", _label(task),
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
