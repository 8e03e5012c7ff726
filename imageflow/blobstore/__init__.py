"""Blob store port: originals under ``<job_id>/input/``, outputs under ``<job_id>/output/``.

Adapters: ``local`` (filesystem under IMAGEFLOW_DATA_DIR) and ``gcs`` (Cloud Storage).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import BinaryIO


class BlobNotFound(KeyError):
    """No object at that path."""


class BlobStoreError(RuntimeError):
    """The store failed (transient or permanent); the message says which object."""


class BlobStore(ABC):
    @abstractmethod
    def put(self, path: str, data: bytes, content_type: str, *, cache_control: str | None = None) -> None:
        """Write the whole object atomically: readers see the old object or the new one, never part."""

    @abstractmethod
    def get(self, path: str) -> bytes:
        """The object's bytes; raises BlobNotFound."""

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
