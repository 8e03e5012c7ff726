"""URL import inside the processor's task: the task's ``source_url`` is downloaded under the
hardened client's SSRF rules (imageflow.safe_http) and streamed, chunk by chunk, straight into its
``<job_id>/input/`` object; the render then reads that object as it reads an upload. Processors
scale with the backlog, so imports do too, and the interaction manager never downloads anything.

Memory: a download holds one 256 KiB chunk at a time, never the file (let alone two copies), and
all the downloads of one processor hold at most FETCH_MAX_IN_FLIGHT_BYTES between them (a
:class:`~imageflow.safe_http.ByteBudget`, reserved per chunk; a download that finds it spent
waits). The type is sniffed from the first bytes before anything is stored, so a URL that gives
a web page or a PDF stores nothing.

Any failure of the fetch itself (a refused address, a timeout, a 404, a file past FETCH_MAX_BYTES,
a body cut short, a file that is not an image, or anything unexpected) is the image's permanent
failure, with its reason, and leaves no input object behind. Only storage trouble while keeping
the fetched file raises (transient: the task is retried).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Iterator

from imageflow.blobstore import BlobNotFound, BlobStore, BlobStoreError
from imageflow.domain import ErrorCode
from imageflow.engine import ImageError, Limits, probe
from imageflow.engine.decoding import KINDS, describe_unknown, sniff
from imageflow.messages import Task
from imageflow.safe_http import ByteBudget, FetchError, FetchPolicy, download
from imageflow.settings import Settings

log = logging.getLogger(__name__)

SNIFF_BYTES = 512  # what the format sniffing (and the description of a non-image) looks at


class NotAnImage(Exception):
    """The download's first bytes are no supported image: nothing was stored."""


class UrlFetcher:
    def __init__(self, settings: Settings, blobs: BlobStore, policy: FetchPolicy | None = None,
                 budget: ByteBudget | None = None):
        self.blobs = blobs
        self._settings = settings
        self._policy = policy
        self.limits = Limits.from_settings(settings)
        # one per processor process: every download of its tasks draws on it
        self.budget = budget or ByteBudget(settings.fetch_max_in_flight_bytes)

    @property
    def policy(self) -> FetchPolicy:
        if self._policy is None:
            self._policy = FetchPolicy.from_settings(self._settings)
        return self._policy

    def fetch(self, task: Task) -> tuple[bytes, str] | str:
        """``(bytes, content type)`` of the task's input, downloaded into storage (or already
        stored by an earlier delivery of the task) and read back as an upload is; else the reason
        the URL gives no image."""
        try:
            data = self.blobs.get(task.input_path)  # a redelivered task: fetched already
        except BlobNotFound:
            data = None
        if data is None:
            try:
                self._download(task)
            except NotAnImage as exc:
                return f"the URL did not give a usable image: {exc}"
            except FetchError as exc:
                log.info("import of %s for %s/%s failed: %s", task.source_url, task.job_id, task.image_id, exc)
                return f"could not fetch the URL: {exc.reason}"
            data = self.blobs.get(task.input_path)
        try:
            info = probe(data, self.limits)
        except ImageError as exc:
            # Complete but unusable (corrupt, over the pixel limit): not kept, as before streaming.
            self.blobs.delete_prefix(task.input_path)
            return f"the URL did not give a usable image: {exc.reason}"
        return data, info.mime

    def _download(self, task: Task) -> int:
        return self.store(task.source_url, task.input_path, f"{task.job_id}/{task.image_id}")

    def store(self, url: str, path: str, what: str, policy: FetchPolicy | None = None) -> int:
        """Stream ``url`` into ``path`` (through the byte budget, sniffed first); its size. Raises
        FetchError or NotAnImage, having stored nothing; BlobStoreError (transient) when storage fails."""
        try:
            with download(url, policy or self.policy, self.budget) as response:
                chunks = response.chunks
                head = b""
                for chunk in chunks:  # the first bytes, enough to tell the format
                    head += chunk
                    if len(head) >= SNIFF_BYTES:
                        break
                kind = sniff(head)
                if kind is None:
                    raise NotAnImage("the file is empty (0 bytes)" if not head else describe_unknown(head))
                return self.blobs.put_stream(path, _prefixed(head, chunks), KINDS[kind].mime)
        except (FetchError, NotAnImage, BlobStoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - a URL must never crash the worker or retry forever
            log.exception("import of %s for %s failed", url, what)
            raise FetchError("http_error", f"{type(exc).__name__}: {exc}") from None


    def fetch_overlay(self, url: str, path: str, policy: FetchPolicy | None = None) -> None:
        """Stream an overlay URL into ``path`` under the same rules as an input (byte budget,
        sniffed, then probed against the pixel limits); raises ImageError with the reason, having
        kept nothing, or BlobStoreError (transient)."""
        try:
            self.store(url, path, path, policy)
        except NotAnImage as exc:
            raise ImageError(ErrorCode.INVALID, f"the overlay {url} is not a usable image: {exc}") from None
        except FetchError as exc:
            raise ImageError(ErrorCode.INVALID, f"could not fetch the overlay {url}: {exc.reason}") from None
        try:
            probe(self.blobs.get(path), self.limits)
        except ImageError as exc:
            self.blobs.delete_prefix(path)
            raise ImageError(ErrorCode.INVALID, f"the overlay {url} is not a usable image: {exc.reason}") from None


OVERLAY_FAILURE_SECONDS = 60.0


class OnePerJob:
    """At most one fetch of each (job, overlay URL) at a time in this process, and a failure is
    remembered: the job's tasks that need it meanwhile wait for that one fetch, and later ones get
    its reason without another request (a logo URL answering 404 cost one request per image, a
    large one one download per task in flight). A failure is remembered for ``remember_seconds``
    (a retried job, once its logo host is fixed, fetches again; a long job costs the host one
    request a minute), ``limit`` of them at most (the oldest go)."""

    def __init__(self, limit: int = 1024, remember_seconds: float = OVERLAY_FAILURE_SECONDS,
                 clock=time.monotonic):
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, str], Future] = {}
        # key -> (code, reason, when)
        self._failed: OrderedDict[tuple[str, str], tuple[str, str, float]] = OrderedDict()
        self._limit, self._remember, self._clock = limit, remember_seconds, clock
        self.waiting = 0  # tasks waiting for another's fetch (tests watch it)

    def run(self, key: tuple[str, str], fetch) -> None:
        """Call ``fetch()`` unless a fetch of ``key`` is under way (then wait for its outcome) or
        failed before (then raise its ImageError). Other exceptions (transient) are not remembered."""
        with self._lock:
            failed = self._failed.get(key)
            if failed and self._clock() - failed[2] < self._remember:
                raise ImageError(failed[0], failed[1])
            flight = self._flights.get(key)
            owner = flight is None
            if owner:
                flight = self._flights[key] = Future()
            else:
                self.waiting += 1
        if owner:
            try:
                fetch()
                flight.set_result(None)
            except ImageError as exc:
                with self._lock:
                    self._failed.pop(key, None)
                    self._failed[key] = (exc.code, exc.reason, self._clock())
                    while len(self._failed) > self._limit:
                        self._failed.popitem(last=False)
                flight.set_exception(exc)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiters, raised below
                flight.set_exception(exc)
            finally:
                with self._lock:
                    self._flights.pop(key, None)
        try:
            flight.result()
        finally:
            if not owner:
                with self._lock:
                    self.waiting -= 1


def _prefixed(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest

