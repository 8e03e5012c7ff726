"""Messages acked a batch at a time: the results the manager folds and the upload events it joins."""
from __future__ import annotations

import logging
import threading

from imageflow import tracing
from imageflow.bus import ReceivedMessage
from imageflow.messages import Result, decode_delivered

log = logging.getLogger(__name__)


class ResultBatcher:
    """Collects result messages and folds them in batches (every ``interval`` seconds or
    ``max_batch`` messages), acking them only once their batch is recorded. Any item with its
    message batches the same way (the interaction manager's upload events do). ``on_size``, when
    given, hears how many results are received and not yet folded, around each fold."""

    def __init__(self, fold, *, interval: float = 1.0, max_batch: int = 200, on_size=None):
        self._fold = fold
        self._on_size = on_size
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
        self._report(len(results) + self._pending_results())
        try:
            if results:
                with tracing.batch("fold results", [m for _, m in batch]):  # a job.completed joins its job's trace
                    self._fold(results)
        except Exception:
            log.exception("folding %d results failed; they will be redelivered", len(results))
            for _, message in batch:
                message.nack()
            return
        finally:
            self._report(self._pending_results())
        for _, message in batch:
            message.ack()

    def _pending_results(self) -> int:
        with self._lock:
            return sum(1 for r, _ in self._pending if r is not None)

    def _report(self, size: int) -> None:
        if self._on_size is None:
            return
        try:
            self._on_size(size)
        except Exception:  # the figure is for autoscaling only: the fold goes on without it
            log.exception("could not record the fold queue's size")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
