"""URL import: fetch the inputs of URL images into ``<job_id>/input/`` (several at a time) under
the hardened client's SSRF rules; a URL that fails becomes a failed image with its reason."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Iterator

from imageflow.blobstore import BlobStore
from imageflow.domain import Image
from imageflow.engine import ImageError, Limits, probe
from imageflow.safe_http import FetchError, FetchPolicy, fetch
from imageflow.settings import Settings

log = logging.getLogger(__name__)


class UrlImporter:
    """Fetches the inputs of URL images into the blob store (several at a time)."""

    def __init__(self, settings: Settings, blobs: BlobStore, policy: FetchPolicy | None = None):
        self.settings = settings
        self.blobs = blobs
        self.policy = policy or FetchPolicy.from_settings(settings)
        self.limits = Limits.from_settings(settings)

    def fetch_one(self, image: Image) -> str | None:
        """Store the image's input; None when it is there, else why it failed. Storage errors
        raise (transient: the job.submitted message is retried)."""
        if not image.source_url or self.blobs.exists(image.input_path):
            return None
        try:
            fetched = fetch(image.source_url, self.policy)
        except FetchError as exc:
            log.info("import of %s for %s/%s failed: %s", image.source_url, image.job_id, image.image_id, exc)
            return f"could not fetch the URL: {exc.reason}"
        try:
            info = probe(fetched.data, self.limits)
        except ImageError as exc:
            return f"the URL did not give a usable image: {exc.reason}"
        self.blobs.put(image.input_path, fetched.data, info.mime)
        return None

    def fetch_inputs(self, images: list[Image]) -> Iterator[tuple[Image, str | None]]:
        """Yield ``(image, error)`` for every image as its input becomes ready (or fails);
        images without a URL are yielded at once."""
        remote = [i for i in images if i.source_url]
        for image in images:
            if not image.source_url:
                yield image, None
        if not remote:
            return
        with ThreadPoolExecutor(max_workers=min(self.settings.fetch_concurrency, len(remote)),
                                thread_name_prefix="url-import") as pool:
            futures = {pool.submit(self.fetch_one, image): image for image in remote}
            for future in as_completed(futures):
                yield futures[future], future.result()
