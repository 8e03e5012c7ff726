"""URL import inside the processor's task: the task's ``source_url`` is fetched into its
``<job_id>/input/`` path under the hardened client's SSRF rules (imageflow.safe_http), then
rendered from the same bytes. Processors scale with the backlog, so imports do too, and the
interaction manager never downloads anything.

Any failure of the fetch itself (a refused address, a timeout, a 404, a file that is not an
image, or anything unexpected) is the image's permanent failure, with its reason. Only storage
trouble while keeping the fetched file raises (transient: the task is retried).
"""
from __future__ import annotations

import logging

from imageflow.blobstore import BlobNotFound, BlobStore
from imageflow.engine import ImageError, Limits, probe
from imageflow.messages import Task
from imageflow.safe_http import FetchError, FetchPolicy, fetch
from imageflow.settings import Settings

log = logging.getLogger(__name__)


class UrlFetcher:
    def __init__(self, settings: Settings, blobs: BlobStore, policy: FetchPolicy | None = None):
        self.blobs = blobs
        self._settings = settings
        self._policy = policy
        self.limits = Limits.from_settings(settings)

    @property
    def policy(self) -> FetchPolicy:
        if self._policy is None:
            self._policy = FetchPolicy.from_settings(self._settings)
        return self._policy

    def fetch(self, task: Task) -> tuple[bytes, str] | str:
        """``(bytes, content type)`` of the task's input, fetched and stored (or already stored
        by an earlier delivery of the task); else the reason the URL gives no image."""
        try:
            data = self.blobs.get(task.input_path)  # a redelivered task: fetched already
        except BlobNotFound:
            data = None
        if data is None:
            try:
                data = fetch(task.source_url, self.policy).data
            except FetchError as exc:
                log.info("import of %s for %s/%s failed: %s", task.source_url, task.job_id, task.image_id, exc)
                return f"could not fetch the URL: {exc.reason}"
            except Exception as exc:  # noqa: BLE001 - a URL must never crash the worker or retry forever
                log.exception("import of %s for %s/%s failed", task.source_url, task.job_id, task.image_id)
                return f"could not fetch the URL: {type(exc).__name__}: {exc}"
            stored = False
        else:
            stored = True
        try:
            info = probe(data, self.limits)
        except ImageError as exc:
            return f"the URL did not give a usable image: {exc.reason}"
        if not stored:
            self.blobs.put(task.input_path, data, info.mime)
        return data, info.mime
