"""Filesystem blob store: the embedded default, under ``<IMAGEFLOW_DATA_DIR>/blobs``."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterable

from . import DELETE, OBJECT_FINALIZE, BlobExists, BlobNotFound, BlobStore, BlobStoreError, validate_path

log = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 900  # a writer that crashed mid-put leaves a temp file; no live put takes this long
WRITE_ONCE_LOCK = ".lock-write-once"  # per directory: if_absent puts check and publish under it


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _file(self, path: str) -> Path:
        target = (self.root / validate_path(path)).resolve()
        if self.root not in target.parents:
            raise ValueError(f"invalid blob path {path!r}")
        return target

    def put(self, path: str, data: bytes, content_type: str, *, cache_control: str | None = None,
            metadata: dict | None = None, if_absent: bool = False) -> None:
        self.put_stream(path, (data,), content_type, cache_control=cache_control, metadata=metadata,
                        if_absent=if_absent)

    def put_stream(self, path: str, chunks: Iterable[bytes], content_type: str, *,
                   cache_control: str | None = None, metadata: dict | None = None, if_absent: bool = False) -> int:
        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: readers never see a partial object, and an aborted
        # stream leaves only its temp file, removed here (or, after a crash, by the stale sweep in list).
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if if_absent:
                self._publish_once(tmp, target, metadata)
            else:
                self._publish(tmp, target, metadata)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise BlobStoreError(f"could not write {path}: {exc}") from exc
        except BaseException:  # the stream itself failed (a download aborted): nothing is kept
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.on_finalize and metadata and "/input/" in path:
            # Cloud Storage notifies every object; locally only the originals that carry metadata
            # (direct uploads), the one kind anyone listens for, so other writes cost no bus traffic.
            self.on_finalize(path, {"name": path, "size": str(size), "contentType": content_type,
                                    "metadata": metadata or {}},
                             {"eventType": OBJECT_FINALIZE, "objectId": path, "bucketId": "local",
                              "payloadFormat": "JSON_API_V1"})
        return size

    def _publish(self, tmp: str, target: Path, metadata: dict | None) -> None:
        if metadata:
            self._meta_file(target).write_text(json.dumps(metadata))
        os.replace(tmp, target)

    def _publish_once(self, tmp: str, target: Path, metadata: dict | None) -> None:
        """Publish ``tmp`` at ``target`` only if nothing is there. The check, the metadata and the
        rename happen under an exclusive lock on the directory's lock file (flock: every process
        on this data directory, released if one dies), so of racing writers exactly one publishes,
        and its metadata is in place before its object appears (a close that lists the landed
        uploads reads both)."""
        with open(target.parent / WRITE_ONCE_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if target.exists():
                raise BlobExists(f"{target.relative_to(self.root).as_posix()} already exists")
            self._publish(tmp, target, metadata)

    @staticmethod
    def _meta_file(target: Path) -> Path:
        return target.with_name(f".meta-{target.name}.json")

    def metadata(self, path: str) -> dict:
        target = self._file(path)
        if not target.is_file():
            raise BlobNotFound(path)
        try:
            return json.loads(self._meta_file(target).read_text())
        except (OSError, ValueError):
            return {}

    def get(self, path: str) -> bytes:
        with self.open(path) as fh:
            return fh.read()

    def transition(self, path, change, content_type) -> bool:
        """Under an exclusive flock on a lock file beside the object: every handle and process on
        this data directory takes the same lock (flock, not lockf: it excludes threads too)."""
        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(f".lock-{target.name}"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = target.read_bytes() if target.is_file() else None
                new = change(current)
                if new is None:
                    return False
                if new is DELETE:
                    if current is None:
                        return False
                    target.unlink()
                    return True
                self.put(path, new, content_type)
                return True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def open(self, path: str) -> BinaryIO:
        try:
            return open(self._file(path), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(path) from None

    def exists(self, path: str) -> bool:
        return self._file(path).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        found = []
        stale = time.time() - STALE_TEMP_SECONDS
        for file in start.rglob("*"):
            if file.name.startswith((".meta-", ".lock-")):
                continue
            if file.name.startswith(".tmp-"):
                try:
                    if file.stat().st_mtime < stale:
                        file.unlink()
                except OSError:
                    pass
                continue
            if file.is_file():
                rel = file.relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    found.append(rel)
        return sorted(found)

    def delete_prefix(self, prefix: str) -> int:
        paths = self.list(prefix)
        for rel in paths:
            (self.root / rel).unlink(missing_ok=True)
            self._meta_file(self.root / rel).unlink(missing_ok=True)
        base = self.root / prefix.rstrip("/")
        if base.is_dir():  # partial writes of crashed writers go too
            for leftover in [*base.rglob(".tmp-*"), *base.rglob(".meta-*"), *base.rglob(".lock-*")]:
                leftover.unlink(missing_ok=True)
        # Remove the now-empty directories under the prefix.
        if base.is_dir():
            for directory in sorted((d for d in base.rglob("*") if d.is_dir()), reverse=True):
                try:
                    directory.rmdir()
                except OSError:
                    pass
            try:
                base.rmdir()
            except OSError:
                pass
        return len(paths)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise BlobStoreError(f"blob directory {self.root} is not writable")
