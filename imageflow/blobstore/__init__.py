"""Blob store port: originals under ``<job_id>/input/``, outputs under ``<job_id>/output/``.

Adapters: ``local`` (filesystem under IMAGEFLOW_DATA_DIR) and ``gcs`` (Cloud Storage).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable


class BlobNotFound(KeyError):
    """No object at that path."""


class BlobStoreError(RuntimeError):
    """The store failed (transient or permanent); the message says which object."""


class BlobExists(BlobStoreError):
    """A write-once put (``if_absent=True``) found an object already at the path."""


@dataclass(frozen=True)
class UploadTarget:
    """Where a client sends one file itself (direct upload): ``method`` ``url`` with ``headers``."""

    url: str
    method: str = "PUT"
    headers: dict = field(default_factory=dict)


# What a ``BlobStore.transition`` change returns to remove the object.
DELETE = b"\x00imageflow-delete\x00"


# Object-finalize events (Cloud Storage's Pub/Sub notification format, JSON_API_V1): the bucket
# publishes them on GCP; the local store publishes the same through ``on_finalize``.
OBJECT_FINALIZE = "OBJECT_FINALIZE"


class BlobStore(ABC):
    on_finalize: Callable[[str, dict, dict], None] | None = None  # (path, data, attributes), local store only

    @abstractmethod
    def put(self, path: str, data: bytes, content_type: str, *, cache_control: str | None = None,
            metadata: dict | None = None, if_absent: bool = False) -> None:
        """Write the whole object atomically: readers see the old object or the new one, never part.
        ``metadata``: custom string fields kept with the object (Cloud Storage's ``x-goog-meta-``).
        ``if_absent``: write once: raise BlobExists when an object is already at ``path`` and leave it
        as it is; of writers racing for one path exactly one succeeds (Cloud Storage also counts an
        object holding exactly these bytes as this write's own: a retried request that landed)."""

    def put_stream(self, path: str, chunks: Iterable[bytes], content_type: str, *,
                   cache_control: str | None = None, metadata: dict | None = None, if_absent: bool = False) -> int:
        """Write the object from ``chunks`` as they come (a download), never holding it whole; the
        size written. Atomic, and write-once with ``if_absent``, like ``put``. If iterating ``chunks`` raises (the download was aborted:
        too large, cut short, timed out), nothing is left behind (no partial object, and an object
        already at ``path`` stays as it was) and the exception propagates.

        The filesystem and Cloud Storage adapters stream; this fallback (wrappers, test doubles)
        gathers the chunks into one buffer and calls ``put``."""
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
        extra = {"metadata": metadata} if metadata else {}
        if if_absent:
            extra["if_absent"] = True
        self.put(path, bytes(buffer), content_type, cache_control=cache_control, **extra)
        return len(buffer)

    def upload_target(self, path: str, content_type: str, size: int, metadata: dict,
                      expires_seconds: int, origin: str | None = None) -> UploadTarget | None:
        """A place a client can upload ``path`` to directly (not through the API), or None when
        the API must take the bytes itself."""
        return None

    def metadata(self, path: str) -> dict:
        """The object's custom metadata (raises BlobNotFound)."""
        return {}

    @abstractmethod
    def get(self, path: str) -> bytes:
        """The object's bytes; raises BlobNotFound."""

    @abstractmethod
    def transition(self, path: str, change: Callable[[bytes | None], bytes | None], content_type: str) -> bool:
        """A conditional write of a small object, for state several processes race on (a claim):
        ``change`` sees the object's bytes (None when there is none) and returns the bytes to write,
        ``DELETE`` to remove it, or None to leave it. The write happens only if the object has not
        changed since it was read, else ``change`` runs again on what is there now, so of two
        handles (or processes) racing, exactly one write wins. True when this call wrote or deleted."""

    @abstractmethod
    def open(self, path: str) -> BinaryIO:
        """A readable stream of the object (for large downloads); raises BlobNotFound."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Paths under ``prefix``, sorted."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""

    def signed_url(self, path: str, expires_seconds: int) -> str | None:
        """A URL the client can download from directly, or None to stream through the API."""
        return None

    @abstractmethod
    def check(self) -> None:
        """Raise if the store is unreachable (used by /readyz)."""

    def close(self) -> None:
        """Release resources."""


def validate_path(path: str) -> str:
    """Blob paths are relative, '/'-separated and never climb out of the store."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"invalid blob path {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", ".."):
        raise ValueError(f"invalid blob path {path!r}")
    return path
