"""Resumable direct uploads on the local store, with Cloud Storage's resumable-upload protocol, so
one client code path (the page, the CLI, a script) serves both backends.

A client sends the file in chunks, each a ``PUT`` with ``Content-Range: bytes <first>-<last>/<total>``;
the answer to a chunk that does not finish the file is ``308`` with ``Range: bytes=0-<last byte kept>``.
After a dropped connection, ``PUT`` with an empty body and ``Content-Range: bytes */<total>`` asks what
was kept (``308`` with ``Range``, none when nothing was), and the client goes on from there. The chunk
that completes the file stores it as a whole upload would. A chunk that starts before the end of what
was kept (a resend after a lost answer) has its known part skipped; one that starts past it is not
kept, and the answer says where to start.

The bytes kept so far live under ``<data dir>/partial-uploads/<job>/<image>``, not in the blob store
(whose objects are announced as landed uploads); a session whose link has expired is swept away.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

CONTENT_RANGE = re.compile(r"^bytes (?:(?P<first>\d+)-(?P<last>\d+)|\*)/(?P<total>\d+)$")
COPY_CHUNK = 1024 * 1024


class BadContentRange(ValueError):
    pass


@dataclass(frozen=True)
class ContentRange:
    first: int | None  # None: a status query (``bytes */<total>``)
    last: int | None
    total: int

    @property
    def is_query(self) -> bool:
        return self.first is None

    @property
    def length(self) -> int:
        return 0 if self.first is None else self.last - self.first + 1

    @classmethod
    def parse(cls, header: str) -> ContentRange:
        match = CONTENT_RANGE.match(header.strip())
        if not match:
            raise BadContentRange(f"Content-Range must be 'bytes <first>-<last>/<total>' or 'bytes */<total>', "
                                  f"not {header[:60]!r}")
        total = int(match["total"])
        if match["first"] is None:
            return cls(None, None, total)
        first, last = int(match["first"]), int(match["last"])
        if last < first or last >= total:
            raise BadContentRange(f"Content-Range {header[:60]!r}: the range must lie within the file's "
                                  f"{total} bytes")
        return cls(first, last, total)


class PartialUploads:
    """The bytes of unfinished resumable uploads, one file per upload target."""

    def __init__(self, root: Path, max_age_seconds: float):
        self.root, self.max_age = root, max_age_seconds

    def _path(self, job_id: str, image_id: str) -> Path:
        return self.root / job_id / image_id

    def received(self, job_id: str, image_id: str) -> int:
        try:
            return self._path(job_id, image_id).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, job_id: str, image_id: str, first: int, length: int, stream) -> int:
        """Keep the chunk that starts at ``first`` (``length`` bytes read from ``stream``) after what
        was kept, skipping a resent part; returns how many bytes are kept now. A chunk that starts
        past the end of what was kept is not read."""
        path = self._path(job_id, image_id)
        if first == 0 and not path.exists():
            self.sweep()  # a new session: time to forget the ones whose links expired
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as part:
            fcntl.flock(part, fcntl.LOCK_EX)  # two PUTs for one target append one after the other
            kept = part.seek(0, os.SEEK_END)
            if first > kept:
                return kept
            skip, left = kept - first, length
            while left > 0:
                piece = stream.read(min(COPY_CHUNK, left))
                if not piece:
                    break  # the client stopped early: what arrived is kept, the answer says so
                left -= len(piece)
                if skip >= len(piece):
                    skip -= len(piece)
                    continue
                part.write(piece[skip:])
                skip = 0
            part.flush()
            return part.tell()

    def take(self, job_id: str, image_id: str) -> bytes:
        """The finished file's bytes; the partial file is removed."""
        path = self._path(job_id, image_id)
        data = path.read_bytes()
        path.unlink(missing_ok=True)
        return data

    def discard_job(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def sweep(self) -> None:
        """Remove sessions untouched for longer than an upload link lives."""
        if not self.root.is_dir():
            return
        cutoff = time.time() - self.max_age
        for job_dir in self.root.iterdir():
            for part in job_dir.glob("*"):
                try:
                    if part.stat().st_mtime < cutoff:
                        part.unlink()
                except FileNotFoundError:
                    pass
            try:
                job_dir.rmdir()  # only when empty
            except OSError:
                pass
