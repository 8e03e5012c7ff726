"""Firestore job store; honours ``FIRESTORE_EMULATOR_HOST``.

Documents (ARCHITECTURE.md): ``jobs/<job_id>`` and ``jobs/<job_id>/images/<image_id>``.
Image documents carry a ``seq`` field so they list in upload order.

Firestore sustains about one write per second on one document, so the job document is
never written once per image: ``record_results`` folds a whole batch of results into one
write per job. That fold is the one place where two writers race (results and dead letters
arrive on different subscriptions, possibly in several interaction-manager replicas), so it
runs in a transaction; ``transition`` (``mark_notified``, webhook claims) is a conditional
update on the document's ``update_time``. Creating, joining, closing and deleting a job and
the updates of a counted field are transactions too (they move the outstanding counter below);
everything else is a plain write.

The outstanding-task count (GET /outstanding, polled by KEDA) is a sharded counter:
``counters/outstanding_tasks-NN``, OUTSTANDING_SHARDS documents with a ``count`` each. Every
write of a job document that changes ``jobstore.outstanding_of`` increments one shard, picked at
random, in the same transaction or batch (a commit is atomic, so a crash loses neither half),
and /outstanding sums the shards with one batched read.
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import defaultdict
from datetime import datetime
from typing import Iterator

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from .. import domain
from ..domain import Image, Job, apply_result, fold_progress, retention_expiry, utcnow
from ..messages import Result
from ..settings import Settings
from . import (
    OUTSTANDING_FIELDS,
    REPAIR_COMPLETION,
    REPAIR_WEBHOOK,
    Admit,
    AdmitImages,
    Cursor,
    FoldOutcome,
    Joined,
    JobNotFound,
    JobStore,
    SavedPreset,
    check_room_for,
    fresh_fold_queue,
    held_reservations,
    outstanding_of,
    place_images,
    stale_fold_queues,
    with_job,
)

log = logging.getLogger(__name__)

JOBS = "jobs"
QUOTAS = "quotas"  # quotas/<owner digest>: {"reservations": {job_id: {"images", "at"}}}
IMAGES = "images"
PRESETS = "presets"      # presets/<hash of owner and name>: {owner, name, operations, created_at, updated_at}
MAX_BATCH_WRITES = 450      # Firestore allows 500 writes per commit; keep a margin
MAX_FOLD_RESULTS = 400      # results of one job per transaction (each may write one image)
CONDITIONAL_ROUNDS = 10
_CHANGED_MEANWHILE = object()
COUNTERS = "counters"
FOLD_QUEUES = "fold_queues"  # fold_queues/<manager replica>: {size, at}, each written by its replica about once a second
# Firestore sustains about one write per second on one document. The counter moves with every
# result fold (one per job per batch, about 1/s per busy job and manager replica), every upload
# request or batch of upload events and every status change: tens per second across many busy jobs.
# 16 shards take about 16 sustained writes/s (bursts above that only queue), and GET /outstanding
# stays one batched read of 16 small documents, far inside KEDA's 3 s timeout.
OUTSTANDING_SHARDS = 16
# Transactions of this process on one document queue behind one of these locks (keyed by the job or
# owner), so its own threads never abort each other; only other processes' transactions contend.
TRANSACTION_LOCKS = 64
# When the client library's own attempts all abort (the emulator's "Transaction lock timeout", or a
# hot document on Firestore), the whole transaction runs again after a jittered, growing pause.
TRANSACTION_ROUNDS = 6
TRANSACTION_PAUSE_S = 0.05


class FirestoreJobStore(JobStore):
    """Jobs and images as Firestore documents in the ``(default)`` database."""

    def __init__(self, settings: Settings, *, client: firestore.Client | None = None):
        self._settings = settings
        self._client = client
        self._transaction_locks = [threading.RLock() for _ in range(TRANSACTION_LOCKS)]
        self._lock = threading.Lock()

    @property
    def client(self) -> firestore.Client:
        with self._lock:
            if self._client is None:
                self._client = firestore.Client(project=self._settings.gcp_project or None)
            return self._client

    def _job_ref(self, job_id: str):
        return self.client.collection(JOBS).document(job_id)

    def _images(self, job_id: str):
        return self._job_ref(job_id).collection(IMAGES)

    def _shard_refs(self):
        return [self.client.collection(COUNTERS).document(f"outstanding_tasks-{n:02d}")
                for n in range(OUTSTANDING_SHARDS)]

    def _lock_for(self, key: str) -> threading.RLock:
        return self._transaction_locks[int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % TRANSACTION_LOCKS]

    def _transact(self, body, *, key: str, max_attempts: int = 5):
        """``body(transaction)`` in a Firestore transaction, retried as a whole on contention. The
        transaction holds this process's lock for ``key`` (the document it is about) while it runs."""
        run = firestore.transactional(body)
        lock = self._lock_for(key)
        for round_ in range(TRANSACTION_ROUNDS):
            try:
                with lock:
                    return run(self.client.transaction(max_attempts=max_attempts))
            except ValueError as exc:  # the library's "Failed to commit transaction in N attempts"
                if not isinstance(exc.__cause__, gexc.Aborted) or round_ == TRANSACTION_ROUNDS - 1:
                    raise
                log.info("transaction on %s aborted %d times; running it again", key, max_attempts)
                time.sleep(random.uniform(0.5, 1.0) * TRANSACTION_PAUSE_S * 2 ** round_)
        raise AssertionError("unreachable")

    def _count(self, writer, delta: int) -> None:
        """Add ``delta`` to one shard of the outstanding counter in ``writer`` (a transaction or a
        batch, committed with the job document's write). A blind increment: it reads nothing,
        so it adds no read contention to the transaction."""
        if delta:
            shard = self._shard_refs()[random.randrange(OUTSTANDING_SHARDS)]
            writer.set(shard, {"count": firestore.Increment(delta)}, merge=True)

    # -- port ------------------------------------------------------------------------------

    def create_job(self, job: Job, images: list[Image]) -> None:
        """Write the images first and the job document last (in the same commit when they
        fit), so a visible job always has all its images."""
        # Firestore's TTL policy on expires_at (scripts/deploy.sh) deletes the documents
        # when the bucket's lifecycle rule deletes the files: both JOB_RETENTION_DAYS after creation.
        ttl = _expires_at(job, self._settings.job_retention_days)
        for seq, image in enumerate(images):
            image.seq = seq
        docs = [(self._images(job.job_id).document(image.image_id), {**image.to_dict(), **ttl})
                for image in images]
        job_ref = self._job_ref(job.job_id)
        last = max(0, len(docs) - (MAX_BATCH_WRITES - 1))  # the last chunk commits with the job document
        for start in range(0, last, MAX_BATCH_WRITES):
            batch = self.client.batch()
            for ref, data in docs[start:min(start + MAX_BATCH_WRITES, last)]:
                batch.set(ref, data)
            batch.commit()

        def create(transaction):
            snap = job_ref.get(transaction=transaction)  # a job written again (a tombstone) replaces its count
            before = Job.from_dict(snap.to_dict()) if snap.exists else None
            for ref, data in docs[last:]:
                transaction.set(ref, data)
            transaction.set(job_ref, {**job.to_dict(), **ttl})
            self._count(transaction, outstanding_of(job) - outstanding_of(before))

        self._transact(create, key=job.job_id)

    def get_job(self, job_id: str) -> Job | None:
        snap = self._job_ref(job_id).get()
        return Job.from_dict(snap.to_dict()) if snap.exists else None

    def get_image(self, job_id: str, image_id: str) -> Image | None:
        snap = self._images(job_id).document(image_id).get()
        return Image.from_dict(snap.to_dict()) if snap.exists else None

    def list_images(self, job_id: str) -> list[Image]:
        return [Image.from_dict(snap.to_dict()) for snap in self._images(job_id).order_by("seq").stream()]

    def page_images(self, job_id: str, *, status: str | None = None, after: int | None = None,
                    limit: int = 100) -> list[Image]:
        """With ``status``, the query needs the composite index (status, seq) on ``images``."""
        query = self._images(job_id)
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        if after is not None:
            query = query.where(filter=FieldFilter("seq", ">", after))
        query = query.order_by("seq").limit(limit)
        return [Image.from_dict(snap.to_dict()) for snap in query.stream()]

    def join_images(self, job_id: str, images: list[Image], *, max_total: int, now: str,
                    admit: AdmitImages | None = None) -> Joined:
        """One transaction per chunk of images (Firestore commits at most 500 writes): the job
        document and the chunk's image documents are read (one batched read: which are there
        already), checked and written with the images, so a close or another upload in between
        retries it. With ``admit``, the owner's quota document and the job documents it names
        are read in the transaction too. Chunks before a refusal stay added."""
        joined = None
        for start in range(0, len(images), MAX_FOLD_RESULTS):
            chunk = self._join_chunk(job_id, images[start:start + MAX_FOLD_RESULTS], max_total, now, admit)
            joined = chunk if joined is None else Joined(chunk.job, joined.added + chunk.added,
                                                         joined.present + chunk.present)
        return joined if joined is not None else Joined(self._existing(job_id))

    def _join_chunk(self, job_id: str, images: list[Image], max_total: int, now: str,
                    admit: AdmitImages | None) -> Joined:
        refs = {image.image_id: self._images(job_id).document(image.image_id) for image in images}

        def add(transaction, before: Job):
            held = sorted(s.id for s in transaction.get_all(list(refs.values())) if s.exists)
            fresh = [i for i in images if i.image_id not in held]
            if not fresh:  # all there already (a redelivery): nothing to check or write
                return None, Joined(before, [], held)
            check_room_for(before, len(fresh), max_total)
            if admit is not None:
                fresh = admit(with_job(self._active_jobs(transaction, before.owner), before), fresh)
            job = place_images(before, fresh, now)
            ttl = _expires_at(job, self._settings.job_retention_days)
            for image in fresh:
                transaction.set(refs[image.image_id], {**image.to_dict(), **ttl})
            return job, Joined(job, fresh, held)

        return self._change_job(job_id, add)

    def close_job(self, job_id: str, now: str) -> Job:
        def close(transaction, job: Job):
            closed = domain.close_job(job, now) if job.is_open else None
            return closed, closed or job

        return self._change_job(job_id, close)

    def untasked_images(self, job_id: str, limit: int = 500) -> list[Image]:
        query = (self._images(job_id).where(filter=FieldFilter("tasked", "==", False))
                 .where(filter=FieldFilter("status", "==", domain.IMAGE_QUEUED)).limit(limit))
        return [Image.from_dict(snap.to_dict()) for snap in query.stream()]

    def count_in_flight(self, job_id: str) -> int:
        """A count aggregation (one read per 1,000 index entries), never the documents."""
        query = (self._images(job_id).where(filter=FieldFilter("tasked", "==", True))
                 .where(filter=FieldFilter("status", "==", domain.IMAGE_QUEUED)))
        return int(query.count().get()[0][0].value)

    def mark_tasked(self, job_id: str, image_ids: list[str]) -> None:
        for start in range(0, len(image_ids), MAX_BATCH_WRITES):
            batch = self.client.batch()
            for image_id in image_ids[start:start + MAX_BATCH_WRITES]:
                batch.update(self._images(job_id).document(image_id), {"tasked": True})
            batch.commit()

    def _existing(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def update_images(self, job_id: str, images: list[Image]) -> None:
        """Batched updates of the fields a result may change (``seq`` and identity stay)."""
        images = [i for i in images if i.job_id == job_id]
        for start in range(0, len(images), MAX_BATCH_WRITES):
            batch = self.client.batch()
            for image in images[start:start + MAX_BATCH_WRITES]:
                batch.update(self._images(job_id).document(image.image_id), _requeue_fields(image))
            try:
                batch.commit()
            except gexc.NotFound:  # an image that is not in the job: write the others one by one
                for image in images[start:start + MAX_BATCH_WRITES]:
                    try:
                        self._images(job_id).document(image.image_id).update(_requeue_fields(image))
                    except gexc.NotFound:
                        continue

    def update_job(self, job_id: str, **fields) -> Job:
        """Set only the given fields (no read-modify-write, so concurrent counters are safe).
        Names that are not job fields are dropped, as in the SQLite store."""
        known = set(Job.__dataclass_fields__) - {"job_id"}
        changes = {k: v for k, v in fields.items() if k in known}
        changes["updated_at"] = fields.get("updated_at") or utcnow()
        if OUTSTANDING_FIELDS & set(changes):
            return self._update_counted(job_id, changes)
        try:
            self._job_ref(job_id).update(changes)
        except gexc.NotFound:
            raise JobNotFound(job_id) from None
        job = self.get_job(job_id)
        if job is None:  # deleted between the two calls
            raise JobNotFound(job_id)
        return job

    def _update_counted(self, job_id: str, changes: dict) -> Job:
        """``update_job`` of a field the outstanding counter follows (a status, a count): read and
        written in a transaction, with the counter's shard."""
        def update(transaction, before: Job):
            job = Job.from_dict({**before.to_dict(), **changes})
            return job, job

        return self._change_job(job_id, update)

    def _change_job(self, job_id: str, change):
        """One transaction: read the job (JobNotFound if it is not there), then ``change(transaction,
        job)`` (which may write other documents in it) gives back the job to write, or None for no
        change, and what to return; the job is written with the outstanding counter's shard moved
        by the difference. Retried as a whole on contention."""
        ref = self._job_ref(job_id)

        def run(transaction):
            snap = ref.get(transaction=transaction)
            if not snap.exists:
                raise JobNotFound(job_id)
            before = Job.from_dict(snap.to_dict())
            after, answer = change(transaction, before)
            if after is not None:
                transaction.update(ref, _job_fields(after))
                self._count(transaction, outstanding_of(after) - outstanding_of(before))
            return answer

        return self._transact(run, key=job_id)

    def record_results(self, results: list[Result]) -> FoldOutcome:
        outcome = FoldOutcome()
        now = utcnow()
        by_job: dict[str, list[Result]] = defaultdict(list)
        for result in results:
            by_job[result.job_id].append(result)
        for job_id, job_results in by_job.items():
            for start in range(0, len(job_results), MAX_FOLD_RESULTS):
                job, changed, ignored = self._fold(job_id, job_results[start:start + MAX_FOLD_RESULTS], now)
                outcome.ignored += ignored
                outcome.changed_images.extend(changed)
                if job is not None:
                    outcome.jobs[job_id] = job
        return outcome

    def _fold(self, job_id: str, results: list[Result], now: str) -> tuple[Job | None, list[Image], int]:
        """One transaction: read the job and the images the results name, apply the results,
        write the changed images and the job once. Retried as a whole on contention."""
        job_ref = self._job_ref(job_id)
        image_refs = {r.image_id: self._images(job_id).document(r.image_id) for r in results}

        def fold(transaction):
            job_snap = job_ref.get(transaction=transaction)
            if not job_snap.exists:
                return None, [], len(results)
            current = {snap.id: Image.from_dict(snap.to_dict())
                       for snap in transaction.get_all(list(image_refs.values())) if snap.exists}
            changed: dict[str, Image] = {}
            ignored = 0
            for result in results:
                image = current.get(result.image_id)
                updated = apply_result(image, result, now) if image else None
                if updated is None:
                    ignored += 1
                    continue
                current[result.image_id] = changed[result.image_id] = updated
            job = Job.from_dict(job_snap.to_dict())
            if changed:
                before, job = job, fold_progress(job, changed.values(), now)
                for image_id, image in changed.items():
                    transaction.update(image_refs[image_id], _image_fields(image))
                transaction.update(job_ref, _job_fields(job))
                self._count(transaction, outstanding_of(job) - outstanding_of(before))  # only the images finished now
            return job, list(changed.values()), ignored

        return self._transact(fold, key=job_id)

    def transition(self, job_id: str, change) -> Job | None:
        """Conditional on the document's ``update_time`` being the one we read, so of two
        racing callers exactly one writes; the other sees the newer job and decides again."""
        ref = self._job_ref(job_id)
        for round_ in range(CONDITIONAL_ROUNDS):
            if round_:  # another writer (or a transaction holding the document) got there first
                time.sleep(random.uniform(0.5, 1.0) * TRANSACTION_PAUSE_S * 2 ** min(round_, TRANSACTION_ROUNDS))
            with self._lock_for(job_id):
                after = self._transition_once(ref, change)
            if after is not _CHANGED_MEANWHILE:
                return after
        raise RuntimeError(f"job {job_id} kept changing; could not update it")

    def _transition_once(self, ref, change):
        """One conditional write of ``transition``: the job after it, None for no change wanted,
        or _CHANGED_MEANWHILE when someone else wrote the document since it was read."""
        snap = ref.get()
        if not snap.exists:
            raise JobNotFound(ref.id)
        job = Job.from_dict(snap.to_dict())
        fields = change(job)
        if fields is None:
            return None
        changes = {k: v for k, v in fields.items() if k != "job_id"}
        changes["updated_at"] = fields.get("updated_at") or utcnow()
        after = Job.from_dict({**job.to_dict(), **changes})
        batch = self.client.batch()  # one atomic commit: the conditional update and the counter's shard
        batch.update(ref, changes, option=self.client.write_option(last_update_time=snap.update_time))
        self._count(batch, outstanding_of(after) - outstanding_of(job))
        try:
            batch.commit()
        except (gexc.FailedPrecondition, gexc.Aborted):
            return _CHANGED_MEANWHILE
        return after

    def list_jobs(self, *, owner: str | None = None, status: str | None = None,
                  limit: int = 50, after: Cursor | None = None) -> list[Job]:
        query = self.client.collection(JOBS)
        if owner is not None:
            query = query.where(filter=FieldFilter("owner", "==", owner))
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING) \
            .order_by("job_id", direction=firestore.Query.DESCENDING)
        if after is not None:
            query = query.start_after({"created_at": after[0], "job_id": after[1]})
        query = query.limit(limit)
        return [Job.from_dict(snap.to_dict()) for snap in query.stream()]

    def outstanding_tasks(self) -> int:
        """One batched read of the OUTSTANDING_SHARDS shard documents (never a scan of the jobs)."""
        return _shard_sum(self.client.get_all(self._shard_refs()))

    def set_fold_queue(self, replica: str, size: int, now: float) -> None:
        self.client.collection(FOLD_QUEUES).document(replica).set({"size": size, "at": now})

    def fold_queue(self, now: float) -> int:
        """One read of the replicas' few documents; those stopped long ago are deleted."""
        snaps = list(self.client.collection(FOLD_QUEUES).stream())
        entries = {snap.id: (int(snap.get("size") or 0), float(snap.get("at") or 0)) for snap in snaps}
        for replica in stale_fold_queues(entries, now):
            self.client.collection(FOLD_QUEUES).document(replica).delete()
        return fresh_fold_queue(entries, now)

    def adjust_outstanding(self, delta: int, *, expected: int | None = None) -> bool:
        """A transaction that reads every shard (so a write to any of them meanwhile retries it)."""
        def adjust(transaction) -> bool:
            if expected is not None and _shard_sum(transaction.get_all(self._shard_refs())) != expected:
                return False
            self._count(transaction, delta)
            return True

        return self._transact(adjust, key=COUNTERS)

    def _quota_ref(self, owner: str | None):
        return self.client.collection(QUOTAS).document(hashlib.sha256((owner or "").encode()).hexdigest()[:40])

    def _active_jobs(self, transaction, owner: str | None) -> list[Job]:
        """The owner's active jobs behind its reservations, read in ``transaction`` (so a reservation
        or another join racing this one retries one of them)."""
        snap = self._quota_ref(owner).get(transaction=transaction)
        stored = (snap.to_dict() or {}).get("reservations", {}) if snap.exists else {}
        held = {j: (int(e["images"]), float(e["at"]), float(e.get("cost", 0))) for j, e in stored.items()}
        docs = {s.id: Job.from_dict(s.to_dict()) for s in
                transaction.get_all([self._job_ref(j) for j in held]) if s.exists} if held else {}
        return held_reservations(held, docs, time.time())[0]

    def reserve_quota(self, owner: str | None, job_id: str, images: int, admit: Admit, *, cost: float = 0.0) -> None:
        """A transaction on the owner's quota document (and the job documents it names)."""
        ref = self._quota_ref(owner)

        def reserve(transaction) -> None:
            snap = ref.get(transaction=transaction)
            stored = (snap.to_dict() or {}).get("reservations", {}) if snap.exists else {}
            held = {j: (int(e["images"]), float(e["at"]), float(e.get("cost", 0))) for j, e in stored.items()}
            docs = {s.id: Job.from_dict(s.to_dict()) for s in
                    transaction.get_all([self._job_ref(j) for j in held]) if s.exists} if held else {}
            active, kept = held_reservations(held, docs, time.time())
            admit(active, images)
            kept[job_id] = (images, time.time(), cost)
            transaction.set(ref, {"reservations": {j: {"images": n, "at": at, "cost": c}
                                                   for j, (n, at, c) in kept.items()}})

        # One owner's submissions contend on one document.
        self._transact(reserve, key=f"quota:{owner or ''}", max_attempts=10)

    def release_quota(self, owner: str | None, job_id: str) -> None:
        try:
            self._quota_ref(owner).update({f"reservations.{job_id}": firestore.DELETE_FIELD})
        except gexc.NotFound:
            pass

    def iter_repairs(self, need: str) -> Iterator[Job]:
        """Streamed (Firestore pages the answer). The completion query needs the composite index
        jobs (completion_message_id ASC, notified_at ASC); the webhook one, the automatic index of
        webhook_status."""
        jobs = self.client.collection(JOBS)
        if need == REPAIR_COMPLETION:
            query = jobs.where(filter=FieldFilter("completion_message_id", "==", None)) \
                .where(filter=FieldFilter("notified_at", ">", ""))
        elif need == REPAIR_WEBHOOK:
            query = jobs.where(filter=FieldFilter("webhook_status", "==", "pending"))
        else:
            raise ValueError(f"unknown repair {need!r}")
        for snap in query.stream():
            yield Job.from_dict(snap.to_dict())

    def delete_job(self, job_id: str) -> bool:
        """Delete the image documents, then the job document (with its unfinished images taken
        off the outstanding counter, in one transaction)."""
        job_ref = self._job_ref(job_id)
        refs = list(self._images(job_id).list_documents())
        for start in range(0, len(refs), MAX_BATCH_WRITES):
            batch = self.client.batch()
            for ref in refs[start:start + MAX_BATCH_WRITES]:
                batch.delete(ref)
            batch.commit()

        def delete(transaction) -> bool:
            snap = job_ref.get(transaction=transaction)
            if not snap.exists:
                return False
            transaction.delete(job_ref)
            self._count(transaction, -outstanding_of(Job.from_dict(snap.to_dict())))
            return True

        return self._transact(delete, key=job_id)

    def check(self) -> None:
        try:
            self.client.collection(JOBS).document("_readyz").get(timeout=5)
        except Exception as exc:
            raise RuntimeError(f"Firestore unreachable: {exc}") from exc

    def _preset_ref(self, owner: str, name: str):
        # Owners and names may hold characters a document id cannot ("/"): the id is a hash.
        key = hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:40]
        return self.client.collection(PRESETS).document(key)

    def save_preset(self, preset: SavedPreset) -> SavedPreset:
        ref = self._preset_ref(preset.owner, preset.name)
        existing = ref.get()
        if existing.exists:
            preset = SavedPreset(**{**preset.to_dict(), "created_at": existing.to_dict()["created_at"]})
        ref.set(preset.to_dict())
        return preset

    def list_presets(self, owner: str) -> list[SavedPreset]:
        # Sorted here: ordering by name after an equality filter would need a composite index.
        query = self.client.collection(PRESETS).where(filter=FieldFilter("owner", "==", owner))
        return sorted((SavedPreset.from_dict(snap.to_dict()) for snap in query.stream()), key=lambda p: p.name)

    def delete_preset(self, owner: str, name: str) -> bool:
        ref = self._preset_ref(owner, name)
        existed = ref.get().exists
        ref.delete()
        return existed

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


TTL_FIELD = "expires_at"  # the Firestore TTL policy's field (deploy.sh), on the jobs and images collection groups


def _expires_at(job: Job, retention_days: int) -> dict:
    """The TTL field: a timestamp (Firestore TTL ignores strings) at created_at + JOB_RETENTION_DAYS."""
    expiry = retention_expiry(job.created_at, retention_days)
    return {TTL_FIELD: datetime.fromisoformat(expiry.replace("Z", "+00:00"))} if expiry else {}


def _shard_sum(snapshots) -> int:
    return sum(int((snap.to_dict() or {}).get("count") or 0) for snap in snapshots if snap.exists)


def _job_fields(job: Job) -> dict:
    """A job's document fields (its id is the document's name)."""
    return {k: v for k, v in job.to_dict().items() if k != "job_id"}


def _image_fields(image: Image) -> dict:
    """The fields a result may change (identity and ``seq`` stay as created)."""
    data = image.to_dict()
    for key in ("job_id", "image_id", "filename", "input_path", "seq", "tasked"):
        data.pop(key, None)
    return data


def _requeue_fields(image: Image) -> dict:
    """What ``update_images`` writes: a result's fields and ``tasked`` (a retried image is fanned out again)."""
    return {**_image_fields(image), "tasked": image.tasked}
