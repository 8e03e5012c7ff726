"""Dedupe: the same input bytes with the same resolved operations, for the same caller, are
rendered once. Later tasks copy the existing outputs into their own job (no render) and
their result names the source in ``duplicate_of``.

The caller is the task's ``caller`` (a digest of the job's owner, domain.caller_scope): the
processor reads no job document. A task without one (queued before the field existed) is
rendered and not recorded.

The index is a small JSON object per (caller, input bytes, operations) in the blob store
itself, under ``dedupe/index/<sha256>.json`` (so it works on every blob store adapter and goes
with the bucket's lifecycle). An entry whose outputs are gone (the job was deleted or has
expired) is ignored and replaced by the next render.

Copies that arrive together (one upload of identical files, or the same file in several jobs,
on one processor or many) are rendered once too: before it renders, a task claims its key with
``dedupe/claim/<sha256>.json``, written by ``BlobStore.transition`` so exactly one of racing
tasks (threads, processes, replicas) gets it. The others wait for the claimant's index entry
and copy it. The claimant renews its claim every CLAIM_SECONDS / 4 while it works and deletes
it when it is done, whether the render succeeded or not: a claimant that failed leaves the key
to the next copy, which renders itself; one that crashed stops renewing, and once its claim is
CLAIM_SECONDS old a waiting copy takes it over. A redelivery of the claimant's own task takes
its claim back at once. The claim lives in the bucket, not the job store, because the processor
has no job store (docs/architecture.md).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field

from imageflow import domain
from imageflow.blobstore import DELETE, BlobNotFound, BlobStore
from imageflow.messages import Output, Task

log = logging.getLogger(__name__)

PREFIX = "dedupe/index/"  # three levels, like the job folders (<job_id>/<kind>/<name>)
CLAIMS = "dedupe/claim/"
CLAIM_SECONDS = 60.0  # a claim not renewed for this long belongs to a claimant that is gone


def dedupe_key(caller: str, data: bytes, operations: list) -> str:
    digest = hashlib.sha256()
    for part in (caller, hashlib.sha256(data).hexdigest(),
                 json.dumps(operations, sort_keys=True, separators=(",", ":"))):
        digest.update(part.encode("utf-8") + b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True)
class Key:
    """Where one task's dedupe state lives: its index entry and its claim, and who the task is."""

    index: str
    claim: str
    holder: str  # "<job_id>/<image_id>" of the task


@dataclass
class OutputIndex:
    blobs: BlobStore
    claim_seconds: float = CLAIM_SECONDS
    clock: object = time.time  # wall clock: claims are compared across machines
    _held: set = field(default_factory=set, init=False, repr=False)  # claims this process renews
    _changed: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _keeper: threading.Thread | None = field(default=None, init=False, repr=False)

    def key(self, task: Task, data: bytes) -> Key | None:
        if not task.caller:  # an older producer's task: whose it is is unknown, so nothing is shared
            return None
        digest = dedupe_key(task.caller, data, task.operations)
        return Key(f"{PREFIX}{digest}.json", f"{CLAIMS}{digest}.json", f"{task.job_id}/{task.image_id}")

    def reuse(self, task: Task, key: Key) -> tuple[list[Output], str, dict] | None:
        """Copy the outputs of an earlier identical task into this task's output paths; the
        copies, ``<job_id>/<image_id>`` of the source and what its render reported (blurhash,
        dominant_color, choices), or None to render."""
        try:
            entry = json.loads(self.blobs.get(key.index))
        except BlobNotFound:
            return None
        except ValueError:
            return None
        source = f"{entry['job_id']}/{entry['image_id']}"
        if source == key.holder:
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
            log.info("dedupe entry %s is stale (outputs of %s are gone)", key.index, source)
            return None
        return copies, source, dict(entry.get("render") or {})

    def remember(self, task: Task, key: Key, outputs: list[Output], render_facts: dict | None = None) -> None:
        if not outputs:
            return
        entry = {"job_id": task.job_id, "image_id": task.image_id, "outputs": [asdict(o) for o in outputs],
                 "render": render_facts or {}}
        try:
            self.blobs.put(key.index, json.dumps(entry).encode("utf-8"), "application/json")
        except Exception:  # a saving only: the task's own outputs are written
            log.exception("dedupe: could not record %s", key.index)

    # -- claims ------------------------------------------------------------------------------

    def claim(self, key: Key) -> bool:
        """Take the key's claim for this task: True when it holds it now (it was free, expired, or
        already this task's: a redelivery), False while another task's live claim holds it."""
        def take(current: bytes | None) -> bytes | None:
            if current:
                try:
                    held = json.loads(current)
                    holder, expires = held["holder"], float(held["expires_at"])
                except (ValueError, KeyError, TypeError):
                    holder, expires = None, 0.0  # unreadable: as good as expired
                if holder != key.holder and expires > self.clock():
                    return None
                if holder != key.holder:
                    log.warning("dedupe: %s takes over the claim of %s (not renewed: it crashed or hung)",
                                key.holder, holder)
            return self._claim_bytes(key)

        if not self.blobs.transition(key.claim, take, "application/json"):
            return False
        with self._changed:
            self._held.add(key)
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._renew, name="dedupe-claims", daemon=True)
                self._keeper.start()
        return True

    def release(self, key: Key) -> None:
        """Give the claim up (the render is done, or failed): a copy waiting for it goes on at once.
        Never raises: a claim left behind expires."""
        with self._changed:
            self._held.discard(key)
        try:
            self.blobs.transition(key.claim, lambda current: DELETE if self._holds(current, key) else None,
                                  "application/json")
        except Exception:
            log.exception("dedupe: could not release %s (it expires in %.0f s)", key.claim, self.claim_seconds)
        with self._changed:
            self._changed.notify_all()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, or until a claim of this process is released."""
        with self._changed:
            self._changed.wait(seconds)

    def _claim_bytes(self, key: Key) -> bytes:
        return json.dumps({"holder": key.holder, "expires_at": self.clock() + self.claim_seconds}).encode()

    @staticmethod
    def _holds(current: bytes | None, key: Key) -> bool:
        try:
            return bool(current) and json.loads(current).get("holder") == key.holder
        except ValueError:
            return False

    def _renew(self) -> None:
        """The keeper: pushes the expiry of every claim this process holds, so a long render (or
        one waiting for a render slot) keeps its claim, and only a dead claimant's expires. It
        runs only while claims are held (a processor that stops, or a test's, leaves no thread)."""
        pause = threading.Event()  # never set: a timed wait that does not go through time.sleep
        while True:
            pause.wait(self.claim_seconds / 4)
            with self._changed:
                held = list(self._held)
                if not held:
                    self._keeper = None  # the next claim starts a new keeper
                    return
            for key in held:
                try:
                    self.blobs.transition(
                        key.claim, lambda current, key=key: self._claim_bytes(key) if self._holds(current, key) else None,
                        "application/json")
                except Exception:
                    log.exception("dedupe: could not renew %s", key.claim)
