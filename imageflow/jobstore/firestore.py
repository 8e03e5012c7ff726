"""Firestore job store; honours ``FIRESTORE_EMULATOR_HOST``.

Documents (ARCHITECTURE.md): ``jobs/<job_id>`` and ``jobs/<job_id>/images/<image_id>``.
Image documents carry a ``seq`` field so they list in upload order.

Firestore sustains about one write per second on one document, so the job document is
never written once per image: ``record_results`` folds a whole batch of results into one
write per job. That fold is the one place where two writers race (results and dead letters
arrive on different subscriptions, possibly in several interaction-manager replicas), so it
runs in a transaction; ``mark_notified`` is a conditional update on the document's
``update_time``. Everything else is a plain write.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import datetime

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..domain import Image, Job, apply_result, fold_progress, retention_expiry, utcnow
from ..messages import Result
from ..settings import Settings
from . import FoldOutcome, JobNotFound, JobStore

log = logging.getLogger(__name__)

JOBS = "jobs"
IMAGES = "images"
MAX_BATCH_WRITES = 450      # Firestore allows 500 writes per commit; keep a margin
MAX_FOLD_RESULTS = 400      # results of one job per transaction (each may write one image)
CONDITIONAL_ROUNDS = 10


class FirestoreJobStore(JobStore):
    """Jobs and images as Firestore documents in the ``(default)`` database."""

    def __init__(self, settings: Settings, *, client: firestore.Client | None = None):
        self._settings = settings
        self._client = client
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
        ttl = _expire_at(job, self._settings.job_retention_days)
        docs = [(self._images(job.job_id).document(image.image_id), {**image.to_dict(), "seq": seq, **ttl})
                for seq, image in enumerate(images)]
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

    def update_images(self, job_id: str, images: list[Image]) -> None:
        """Batched updates of the fields a result may change (``seq`` and identity stay)."""
        images = [i for i in images if i.job_id == job_id]
        for start in range(0, len(images), MAX_BATCH_WRITES):
            batch = self.client.batch()
            for image in images[start:start + MAX_BATCH_WRITES]:
                batch.update(self._images(job_id).document(image.image_id), _image_fields(image))
            try:
                batch.commit()
            except gexc.NotFound:  # an image that is not in the job: write the others one by one
                for image in images[start:start + MAX_BATCH_WRITES]:
                    try:
                        self._images(job_id).document(image.image_id).update(_image_fields(image))
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

    def mark_notified(self, job_id: str, now: str) -> bool:
        """Conditional on the document not having changed since we read it, so of two racing
        callers exactly one sets ``notified_at``."""
        ref = self._job_ref(job_id)
        for _ in range(CONDITIONAL_ROUNDS):
            snap = ref.get()
            if not snap.exists:
                raise JobNotFound(job_id)
            if snap.get("notified_at"):
                return False
            try:
                ref.update({"notified_at": now}, option=self.client.write_option(last_update_time=snap.update_time))
                return True
            except (gexc.FailedPrecondition, gexc.Aborted):
                continue  # someone else wrote the job meanwhile: look again
        raise RuntimeError(f"job {job_id} kept changing; could not mark it notified")

    def list_jobs(self, *, owner: str | None = None, status: str | None = None,
                  limit: int = 50, before: str | None = None) -> list[Job]:
        query = self.client.collection(JOBS)
        if owner is not None:
            query = query.where(filter=FieldFilter("owner", "==", owner))
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        if before is not None:
            query = query.where(filter=FieldFilter("created_at", "<", before))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [Job.from_dict(snap.to_dict()) for snap in query.stream()]

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

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


TTL_FIELD = "expire_at"  # the Firestore TTL policy's field (deploy.sh), on the jobs and images collection groups


def _expire_at(job: Job, retention_days: int) -> dict:
    """The TTL field: a timestamp (Firestore TTL ignores strings) at created_at + JOB_RETENTION_DAYS."""
    expiry = retention_expiry(job.created_at, retention_days)
    return {TTL_FIELD: datetime.fromisoformat(expiry.replace("Z", "+00:00"))} if expiry else {}


def _image_fields(image: Image) -> dict:
    """The fields a result may change (identity and ``seq`` stay as created)."""
    data = image.to_dict()
    for key in ("job_id", "image_id", "filename", "input_path"):
        data.pop(key, None)
    return data
