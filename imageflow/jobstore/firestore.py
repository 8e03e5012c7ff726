"""Firestore job store; honours ``FIRESTORE_EMULATOR_HOST``.

Documents (ARCHITECTURE.md): ``jobs/<job_id>`` and ``jobs/<job_id>/images/<image_id>``.
Image documents carry a ``seq`` field so they list in upload order.

Firestore sustains about one write per second on one document, so the job document is
never written once per image: ``record_results`` folds a whole batch of results into one
write per job. That fold is the one place where two writers race (results and dead letters
arrive on different subscriptions, possibly in several interaction-manager replicas), so it
runs in a transaction; ``transition`` (``mark_notified``, webhook claims) is a conditional
update on the document's ``update_time``. Everything else is a plain write.
"""
from __future__ import annotations

import hashlib
import logging
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
    REPAIR_COMPLETION,
    REPAIR_WEBHOOK,
    Admit,
    Cursor,
    FoldOutcome,
    JobNotFound,
    JobStore,
    SavedPreset,
    check_room_for,
    held_reservations,
)

log = logging.getLogger(__name__)

JOBS = "jobs"
QUOTAS = "quotas"  # quotas/<owner digest>: {"reservations": {job_id: {"images", "at"}}}
IMAGES = "images"
PRESETS = "presets"      # presets/<hash of owner and name>: {owner, name, operations, created_at, updated_at}
MAX_BATCH_WRITES = 450      # Firestore allows 500 writes per commit; keep a margin
MAX_FOLD_RESULTS = 400      # results of one job per transaction (each may write one image)
CONDITIONAL_ROUNDS = 10


class FirestoreJobStore(JobStore):
    """Jobs and images as Firestore documents in the ``(default)`` database."""

    def __init__(self, settings: Settings, *, client: firestore.Client | None = None):
        self._settings = settings
        self._client = client
        self._quota_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
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
        docs.append((self._job_ref(job.job_id), {**job.to_dict(), **ttl}))
        for start in range(0, len(docs), MAX_BATCH_WRITES):
            batch = self.client.batch()
            for ref, data in docs[start:start + MAX_BATCH_WRITES]:
                batch.set(ref, data)
            batch.commit()

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

    def add_images(self, job_id: str, images: list[Image], *, max_total: int, now: str) -> Job:
        """One transaction per chunk of images (Firestore commits at most 500 writes): the job
        document is read, checked and written with the images, so a close or another upload
        in between retries it. Chunks before a refusal stay added."""
        job = None
        for start in range(0, len(images), MAX_FOLD_RESULTS):
            job = self._add_chunk(job_id, images[start:start + MAX_FOLD_RESULTS], max_total, now)
        return job if job is not None else self._existing(job_id)

    def _add_chunk(self, job_id: str, images: list[Image], max_total: int, now: str) -> Job:
        job_ref = self._job_ref(job_id)

        @firestore.transactional
        def add(transaction):
            snap = job_ref.get(transaction=transaction)
            if not snap.exists:
                raise JobNotFound(job_id)
            job = Job.from_dict(snap.to_dict())
            check_room_for(job, len(images), max_total)
            for offset, image in enumerate(images):
                image.seq = job.total + offset
                transaction.set(self._images(job_id).document(image.image_id),
                                {**image.to_dict(), **_expires_at(job, self._settings.job_retention_days)})
            job.total += len(images)
            job.last_file_at = job.updated_at = now
            transaction.update(job_ref, {"total": job.total, "last_file_at": now, "updated_at": now})
            return job

        return add(self.client.transaction())

    def close_job(self, job_id: str, now: str) -> Job:
        job_ref = self._job_ref(job_id)

        @firestore.transactional
        def close(transaction):
            snap = job_ref.get(transaction=transaction)
            if not snap.exists:
                raise JobNotFound(job_id)
            job = Job.from_dict(snap.to_dict())
            if job.is_open:
                job = domain.close_job(job, now)
                transaction.update(job_ref, {k: v for k, v in job.to_dict().items() if k != "job_id"})
            return job

        return close(self.client.transaction())

    def untasked_images(self, job_id: str, limit: int = 500) -> list[Image]:
        query = (self._images(job_id).where(filter=FieldFilter("tasked", "==", False))
                 .where(filter=FieldFilter("status", "==", domain.IMAGE_QUEUED)).limit(limit))
        return [Image.from_dict(snap.to_dict()) for snap in query.stream()]

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
        try:
            self._job_ref(job_id).update(changes)
        except gexc.NotFound:
            raise JobNotFound(job_id) from None
        job = self.get_job(job_id)
        if job is None:  # deleted between the two calls
            raise JobNotFound(job_id)
        return job

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

        @firestore.transactional
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
                job = fold_progress(job, changed.values(), now)
                for image_id, image in changed.items():
                    transaction.update(image_refs[image_id], _image_fields(image))
                transaction.update(job_ref, {k: v for k, v in job.to_dict().items() if k != "job_id"})
            return job, list(changed.values()), ignored

        return fold(self.client.transaction())

    def transition(self, job_id: str, change) -> Job | None:
        """Conditional on the document's ``update_time`` being the one we read, so of two
        racing callers exactly one writes; the other sees the newer job and decides again."""
        ref = self._job_ref(job_id)
        for _ in range(CONDITIONAL_ROUNDS):
            snap = ref.get()
            if not snap.exists:
                raise JobNotFound(job_id)
            job = Job.from_dict(snap.to_dict())
            fields = change(job)
            if fields is None:
                return None
            changes = {k: v for k, v in fields.items() if k != "job_id"}
            changes["updated_at"] = fields.get("updated_at") or utcnow()
            try:
                ref.update(changes, option=self.client.write_option(last_update_time=snap.update_time))
            except (gexc.FailedPrecondition, gexc.Aborted):
                continue  # someone else wrote the job meanwhile: look again
            return Job.from_dict({**job.to_dict(), **changes})
        raise RuntimeError(f"job {job_id} kept changing; could not update it")

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

    def _quota_ref(self, owner: str | None):
        return self.client.collection(QUOTAS).document(hashlib.sha256((owner or "").encode()).hexdigest()[:40])

    def reserve_quota(self, owner: str | None, job_id: str, images: int, admit: Admit) -> None:
        """A transaction on the owner's quota document (and the job documents it names)."""
        ref = self._quota_ref(owner)

        @firestore.transactional
        def reserve(transaction) -> None:
            snap = ref.get(transaction=transaction)
            stored = (snap.to_dict() or {}).get("reservations", {}) if snap.exists else {}
            held = {j: (int(e["images"]), float(e["at"])) for j, e in stored.items()}
            docs = {s.id: Job.from_dict(s.to_dict()) for s in
                    transaction.get_all([self._job_ref(j) for j in held]) if s.exists} if held else {}
            active, kept = held_reservations(held, docs, time.time())
            admit(active, images)
            kept[job_id] = (images, time.time())
            transaction.set(ref, {"reservations": {j: {"images": n, "at": at} for j, (n, at) in kept.items()}})

        # One owner's submissions contend on one document: this process's threads queue for it, so only
        # other processes' transactions can abort ours (and then the client library retries).
        with self._quota_locks[owner or ""]:
            reserve(self.client.transaction(max_attempts=10))

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
        """Delete the image documents, then the job document."""
        job_ref = self._job_ref(job_id)
        existed = job_ref.get().exists
        refs = list(self._images(job_id).list_documents())
        for start in range(0, len(refs), MAX_BATCH_WRITES):
            batch = self.client.batch()
            for ref in refs[start:start + MAX_BATCH_WRITES]:
                batch.delete(ref)
            batch.commit()
        job_ref.delete()
        return existed

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


def _image_fields(image: Image) -> dict:
    """The fields a result may change (identity and ``seq`` stay as created)."""
    data = image.to_dict()
    for key in ("job_id", "image_id", "filename", "input_path", "seq", "tasked"):
        data.pop(key, None)
    return data


def _requeue_fields(image: Image) -> dict:
    """What ``update_images`` writes: a result's fields and ``tasked`` (a retried image is fanned out again)."""
    return {**_image_fields(image), "tasked": image.tasked}
