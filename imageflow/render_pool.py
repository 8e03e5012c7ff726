"""Render workers: long-lived processes, each with an address-space cap, that render what
they are sent. The image processor renders every task in one (:class:`RenderPool`, one
worker per PROCESSOR_CONCURRENCY slot); the image-handler renders an estimate's samples in
a small pool of its own (services/image_handler/estimate.py), so neither ever decodes an
image in its own address space. A poison image that kills the decoder or exhausts memory
takes down only its worker, which is replaced, and only its own render fails.
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
from typing import Any, Callable

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
def _worker_main(conn, memory_bytes: int, service: str = "image-processor") -> None:
    """A render worker: renders what it is sent until its pipe closes. Its address space is capped, so a
    bomb that gets past the engine's budgets fails here (MemoryError) or kills only this process.
    SIGTERM and SIGINT are ignored: the processor decides when its workers stop (it drains, then
    closes their pipes, and a worker returns on EOF; if the processor dies, the pipe closes too).
    A worker that exited on a signal sent to the whole process group, as a local stack's stop is,
    would fail a task the draining processor was just handing it."""
    import resource
    import signal

    from imageflow.runtime import configure_logging

    configure_logging(service)
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
        except MemoryError:
            outcome = ["image_error", ("too_large", f"the render needs more than the {memory_bytes >> 20} MB "
                                                    "a render worker may use")]
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


class _Worker:
    def __init__(self, memory_bytes: int, service: str = "image-processor"):
        ctx = multiprocessing.get_context("spawn")  # forking a threaded process is unsafe
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, memory_bytes, service), daemon=True,
                                   name="render-worker")
        self.process.start()
        child.close()

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
    """Long-lived render worker processes, one per concurrency slot, each with an address-space cap
    (PROCESSOR_WORKER_MEMORY_MB). A render runs in an idle worker, and waits for one when every slot is
    busy: the processor may hold more tasks than slots (their storage and bus calls overlap the renders),
    but never renders more at once than it has slots. A worker that dies, or overruns the render time
    limit, is replaced at once, and only the task it was rendering fails. Rendering in processes also
    gives one processor's tasks true parallelism across cores (no shared GIL)."""

    GRACE_SECONDS = 15.0  # past the engine's own time limit (RenderBudget), before a worker is killed

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
            if worker is not None and not worker.process.is_alive():  # died while idle (a stray signal)
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
            if not worker.conn.poll(limits.max_render_seconds + self.grace_seconds):
                log.error("the render of %s overran its time limit: replacing its worker", _label(task))
                raise ImageError("timeout", f"the render did not finish within {limits.max_render_seconds:g} s")
            kind, payload, retire = worker.conn.recv()
            healthy = not retire
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

    def close(self) -> None:
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._started -= len(idle)
            self._changed.notify_all()
        for worker in idle:
            worker.stop()
