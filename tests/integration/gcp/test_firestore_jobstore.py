"""Firestore adapter specifics, on the emulator: the documents of ARCHITECTURE.md, one
job-document write per batch, and racing writers that never count an image twice."""
from __future__ import annotations

import threading

import pytest
from google.cloud.firestore_v1.transaction import Transaction

from imageflow import domain
from imageflow.domain import Image, Job, new_id
from imageflow.jobstore.firestore import FirestoreJobStore
from imageflow.messages import Result

pytestmark = pytest.mark.emulators


def make_job(store, n):
    job = Job(job_id=new_id(), total=n, operations=[{"op": "grayscale"}], email="a@example.com")
    images = [Image(job_id=job.job_id, image_id=new_id(), filename=f"p{i}.jpg",
                    input_path=domain.input_path(job.job_id, f"{i:032x}", f"p{i}.jpg")) for i in range(n)]
    store.create_job(job, images)
    return job, images


def ok(image):
    return Result(job_id=image.job_id, image_id=image.image_id, status="succeeded",
                  output_path=f"{image.job_id}/output/{image.image_id}-x.webp", content_type="image/webp",
                  width=10, height=20, bytes=123)


def failed(image):
    return Result(job_id=image.job_id, image_id=image.image_id, status="failed", error="dead-lettered")


def test_documents_follow_the_architecture(firestore_jobstore):
    job, images = make_job(firestore_jobstore, 2)
    firestore_jobstore.record_results([ok(images[0])])
    db = firestore_jobstore.client
    doc = db.collection("jobs").document(job.job_id).get().to_dict()
    for name in ("status", "created_at", "updated_at", "completed_at", "total", "succeeded", "failed",
                 "operations", "email", "webhook_url", "notified_at"):
        assert name in doc, name
    assert (doc["total"], doc["succeeded"], doc["status"]) == (2, 1, "processing")
    image = db.collection("jobs").document(job.job_id).collection("images").document(images[0].image_id).get()
    data = image.to_dict()
    for name in ("filename", "status", "input_path", "output_path", "content_type", "width", "height",
                 "bytes", "error", "attempts"):
        assert name in data, name
    assert (data["status"], data["filename"], data["attempts"]) == ("succeeded", "p0.jpg", 1)


def test_a_batch_of_results_writes_the_job_document_once(firestore_jobstore, monkeypatch):
    job, images = make_job(firestore_jobstore, 40)
    writes = []
    original = Transaction.update

    def spy(self, reference, field_updates, option=None):
        writes.append(reference.path)
        return original(self, reference, field_updates, option)

    monkeypatch.setattr(Transaction, "update", spy)
    outcome = firestore_jobstore.record_results([ok(i) for i in images])
    assert outcome.jobs[job.job_id].status == "completed"
    assert writes.count(f"jobs/{job.job_id}") == 1
    assert len(writes) == 41  # 40 image documents + the job, in one commit
    assert firestore_jobstore.get_job(job.job_id).succeeded == 40


def test_big_jobs_span_several_commits_and_keep_upload_order(firestore_jobstore):
    job, images = make_job(firestore_jobstore, 520)  # over one commit's 500 writes
    assert [i.image_id for i in firestore_jobstore.list_images(job.job_id)] == [i.image_id for i in images]
    firestore_jobstore.record_results([ok(i) for i in images])
    stored = firestore_jobstore.get_job(job.job_id)
    assert (stored.succeeded, stored.status) == (520, "completed")
    assert firestore_jobstore.delete_job(job.job_id) is True
    assert firestore_jobstore.list_images(job.job_id) == []


def test_racing_writers_count_each_image_once(gcp_settings, firestore_jobstore):
    """Results and dead letters for the same images, folded by two interaction-manager
    replicas at once (each with its own client)."""
    job, images = make_job(firestore_jobstore, 12)
    stores = [FirestoreJobStore(gcp_settings) for _ in range(2)]
    batches = [[ok(i) for i in images], [failed(i) for i in images[::-1]]]
    outcomes, errors = [], []

    def run(store, batch):
        try:
            for start in range(0, len(batch), 4):
                outcomes.append(store.record_results(batch[start:start + 4]))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, b)) for s, b in zip(stores, batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in stores:
        s.close()
    assert not errors, errors
    stored = firestore_jobstore.get_job(job.job_id)
    assert stored.succeeded + stored.failed == 12
    assert sum(len(o.changed_images) for o in outcomes) == 12
    assert sum(o.ignored for o in outcomes) == 12
    statuses = [i.status for i in firestore_jobstore.list_images(job.job_id)]
    assert statuses.count("succeeded") == stored.succeeded and statuses.count("failed") == stored.failed
    assert stored.status in ("completed", "completed_with_errors", "failed") and stored.completed_at


def test_only_one_of_many_racing_callers_marks_a_job_notified(gcp_settings, firestore_jobstore):
    job, _ = make_job(firestore_jobstore, 1)
    stores = [FirestoreJobStore(gcp_settings) for _ in range(4)]
    wins = []
    barrier = threading.Barrier(len(stores))

    def claim(store):
        barrier.wait()
        wins.append(store.mark_notified(job.job_id, domain.utcnow()))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert sorted(wins) == [False, False, False, True]


def test_update_job_leaves_other_fields_alone(firestore_jobstore):
    job, images = make_job(firestore_jobstore, 2)
    firestore_jobstore.record_results([ok(images[0])])
    updated = firestore_jobstore.update_job(job.job_id, tasks_published=True, not_a_field="ignored")
    assert updated.tasks_published is True and updated.succeeded == 1
    raw = firestore_jobstore.client.collection("jobs").document(job.job_id).get().to_dict()
    assert "not_a_field" not in raw


def test_documents_expire_after_the_retention_period(gcp_settings):
    """Firestore's TTL policy (deploy.sh, on expires_at of jobs and images) deletes a job's
    documents JOB_RETENTION_DAYS after creation, when the bucket's lifecycle deletes its files."""
    from datetime import datetime, timedelta, timezone

    store = FirestoreJobStore(gcp_settings.with_overrides(job_retention_days=9))
    try:
        job, images = make_job(store, 2)
        ref = store.client.collection("jobs").document(job.job_id)
        expected = datetime.now(timezone.utc) + timedelta(days=9)
        for doc in (ref.get(), ref.collection("images").document(images[1].image_id).get()):
            expires_at = doc.to_dict()["expires_at"]
            assert abs((expires_at - expected).total_seconds()) < 120
        assert store.get_job(job.job_id).job_id == job.job_id  # the extra field stays out of the domain
    finally:
        store.close()
