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
from typing import Iterator

from imageflow.blobstore import BlobNotFound, BlobStore, BlobStoreError
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
        """Stream the URL into ``task.input_path``; its size. Raises FetchError or NotAnImage, having
        stored nothing; BlobStoreError (transient) when storage fails."""
        try:
            with download(task.source_url, self.policy, self.budget) as response:
                chunks = response.chunks
                head = b""
                for chunk in chunks:  # the first bytes, enough to tell the format
                    head += chunk
                    if len(head) >= SNIFF_BYTES:
                        break
                kind = sniff(head)
                if kind is None:
                    raise NotAnImage("the file is empty (0 bytes)" if not head else describe_unknown(head))
                return self.blobs.put_stream(task.input_path, _prefixed(head, chunks), KINDS[kind].mime)
        except (FetchError, NotAnImage, BlobStoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - a URL must never crash the worker or retry forever
            log.exception("import of %s for %s/%s failed", task.source_url, task.job_id, task.image_id)
            raise FetchError("http_error", f"{type(exc).__name__}: {exc}") from None


def _prefixed(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest

