"""Firestore retention on the emulator: every job and image document carries the TTL
timestamp (``expires_at``) that deploy.sh's Firestore TTL policy deletes them by."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from imageflow import domain
from imageflow.domain import Image, Job, new_id
from imageflow.jobstore.firestore import TTL_FIELD, FirestoreJobStore
from imageflow.messages import Result
from services.interaction_manager import lifecycle

pytestmark = pytest.mark.emulators


def test_job_and_image_documents_carry_the_ttl_timestamp(firestore_jobstore, gcp_settings):
    job = Job(job_id=new_id(), total=1, created_at="2026-03-01T10:00:00.000Z")
    image = Image(job_id=job.job_id, image_id=new_id(), filename="a.jpg",
                  input_path=domain.input_path(job.job_id, "x", "a.jpg"))
    firestore_jobstore.create_job(job, [image])
    firestore_jobstore.record_results([Result(job_id=job.job_id, image_id=image.image_id, status="failed",
                                              error="x")])
    db = firestore_jobstore.client
    job_doc = db.collection("jobs").document(job.job_id).get().to_dict()
    image_doc = db.collection("jobs").document(job.job_id).collection("images").document(image.image_id).get()
    expected = datetime.fromisoformat("2026-03-01T10:00:00+00:00") + timedelta(days=gcp_settings.job_retention_days)
    assert isinstance(job_doc[TTL_FIELD], datetime) and job_doc[TTL_FIELD] == expected
    assert image_doc.to_dict()[TTL_FIELD] == expected, "kept through the fold"
    assert firestore_jobstore.get_job(job.job_id).status == "failed", "the field does not leak into the domain"


def test_no_ttl_field_when_retention_is_off(gcp_emulators, gcp_settings):
    store = FirestoreJobStore(gcp_settings.with_overrides(job_retention_days=0))
    try:
        job = Job(job_id=new_id(), total=0)
        store.create_job(job, [])
        assert TTL_FIELD not in store.client.collection("jobs").document(job.job_id).get().to_dict()
    finally:
        store.close()


def test_input_retention_on_firestore_and_gcs(firestore_jobstore, gcs_blobstore, gcp_settings):
    """INPUT_RETENTION_HOURS on the GCP backends: the finished job's originals go, its outputs stay,
    and the job records when (what the API's retry and re-run answer 410 from)."""
    settings = gcp_settings.with_overrides(input_retention_hours=2)
    job = Job(job_id=new_id(), total=1, created_at="2026-03-01T10:00:00.000Z")
    image = Image(job_id=job.job_id, image_id=new_id(), filename="a.jpg",
                  input_path=domain.input_path(job.job_id, "x", "a.jpg"))
    firestore_jobstore.create_job(job, [image])
    firestore_jobstore.record_results([Result(job_id=job.job_id, image_id=image.image_id, status="succeeded",
                                              output_path=f"{job.job_id}/output/x-a.jpg")])
    finished = firestore_jobstore.get_job(job.job_id)
    assert finished.is_terminal and finished.completed_at
    gcs_blobstore.put(image.input_path, b"original", "image/jpeg")
    gcs_blobstore.put(f"{job.job_id}/output/x-a.jpg", b"output", "image/jpeg")
    done = datetime.fromisoformat(finished.completed_at.replace("Z", "+00:00"))
    assert lifecycle.expire_inputs(settings, firestore_jobstore, gcs_blobstore, now=done + timedelta(hours=1)) == 0
    assert lifecycle.expire_inputs(settings, firestore_jobstore, gcs_blobstore, now=done + timedelta(hours=3)) == 1
    assert gcs_blobstore.list(f"{job.job_id}/") == [f"{job.job_id}/output/x-a.jpg"]
    assert firestore_jobstore.get_job(job.job_id).inputs_deleted_at
    assert lifecycle.expire_inputs(settings, firestore_jobstore, gcs_blobstore, now=done + timedelta(hours=4)) == 0
