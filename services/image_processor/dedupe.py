"""Dedupe: the same input bytes with the same resolved operations, for the same caller, are
rendered once. Later tasks copy the existing outputs into their own job (no render) and
their result names the source in ``duplicate_of``.

The caller is the task's ``caller`` (a digest of the job's owner, domain.caller_scope): the
processor reads no job document. A task without one (queued before the field existed) is
rendered and not recorded.

The index is a small JSON object per (caller, input bytes, operations) in the blob store
itself, under ``dedupe/index/<sha256>.json`` (so it works on every blob store adapter and goes
with the bucket's lifecycle). An entry whose outputs are gone (the job was deleted or has
expired) is ignored and replaced by the next render. Two identical images rendered at the
same moment are both rendered: the index is a saving, never a lock.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass

from imageflow import domain
from imageflow.blobstore import BlobNotFound, BlobStore
from imageflow.messages import Output, Task

log = logging.getLogger(__name__)

PREFIX = "dedupe/index/"  # three levels, like the job folders (<job_id>/<kind>/<name>)


def dedupe_key(caller: str, data: bytes, operations: list) -> str:
    digest = hashlib.sha256()
    for part in (caller, hashlib.sha256(data).hexdigest(),
                 json.dumps(operations, sort_keys=True, separators=(",", ":"))):
        digest.update(part.encode("utf-8") + b"\x00")
    return digest.hexdigest()


@dataclass
class OutputIndex:
    blobs: BlobStore

    def _path(self, task: Task, data: bytes) -> str | None:
        if not task.caller:  # an older producer's task: whose it is is unknown, so nothing is shared
            return None
        return f"{PREFIX}{dedupe_key(task.caller, data, task.operations)}.json"

    def reuse(self, task: Task, data: bytes) -> tuple[list[Output], str, dict] | None:
        """Copy the outputs of an earlier identical task into this task's output paths; the
        copies, ``<job_id>/<image_id>`` of the source and what its render reported (blurhash,
        dominant_color, choices), or None to render."""
        path = self._path(task, data)
        if path is None:
            return None
        try:
            entry = json.loads(self.blobs.get(path))
        except BlobNotFound:
            return None
        except ValueError:
            return None
        source = f"{entry['job_id']}/{entry['image_id']}"
        if entry["job_id"] == task.job_id and entry["image_id"] == task.image_id:
            return None  # a redelivery of the task that rendered it: render again, as without dedupe
        copies = []
        try:
            for item in entry["outputs"]:
                ext = item["path"].rsplit(".", 1)[-1]
                target = domain.output_file(task.output_path, ext, item.get("variant", ""))
                self.blobs.put(target, self.blobs.get(item["path"]), item["content_type"],
                               cache_control="public, max-age=31536000, immutable")
                copies.append(Output(**{**item, "path": target}))
        except BlobNotFound:  # the source's outputs are gone (deleted or expired)
            log.info("dedupe entry %s is stale (outputs of %s are gone)", path, source)
            return None
        return copies, source, dict(entry.get("render") or {})

    def remember(self, task: Task, data: bytes, outputs: list[Output], render_facts: dict | None = None) -> None:
        path = self._path(task, data)
        if path is None or not outputs:
            return
        entry = {"job_id": task.job_id, "image_id": task.image_id, "outputs": [asdict(o) for o in outputs],
                 "render": render_facts or {}}
        try:
            self.blobs.put(path, json.dumps(entry).encode("utf-8"), "application/json")
        except Exception:  # a saving only: the task's own outputs are written
            log.exception("dedupe: could not record %s", path)
