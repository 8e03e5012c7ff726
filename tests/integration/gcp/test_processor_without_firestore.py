"""The processor on GCP needs no Firestore (its service account has no Firestore role): on the
emulators, the image-handler and the interaction manager use Firestore, the processor only
Cloud Storage (fake-gcs-server) and Pub/Sub. Cancel reaches it as the marker object
``<job_id>/control/cancelled``, dedupe scopes by the caller its task carries."""
from __future__ import annotations

import pytest

from imageflow import bootstrap, topology
from imageflow.domain import cancel_marker
from services.image_processor import app as processor_app
from tests.integration.test_lifecycle import Pipeline, png

pytestmark = pytest.mark.emulators


@pytest.fixture
def pipeline(gcs_blobstore, firestore_jobstore, pubsub_bus, gcp_settings, tmp_path, monkeypatch):
    """Empty emulators; the handler and coordinator over every GCP adapter, the processor built by its
    own bootstrap, which fails the test if it builds a job store."""
    settings = gcp_settings.with_overrides(data_dir=tmp_path)
    p = Pipeline(settings)
    topology.ensure(p.backends.bus, settings)

    def refuse(_settings):
        raise AssertionError("the processor built a Firestore client")
    monkeypatch.setattr(bootstrap, "make_jobstore", refuse)
    processor_backends = processor_app.processor_backends(settings)
    assert processor_backends.jobs is None
    p.processor = processor_app.make_processor(settings, processor_backends)
    p.processor.gate.ttl = 0
    yield p
    p.processor.close()
    processor_backends.close()
    p.backends.close()


def test_cancel_through_the_bucket_skips_and_retry_renders_on_the_emulators(pipeline):
    created = pipeline.submit(n=3)
    job_id = created["job_id"]
    pipeline.fan_out()
    pipeline.process(n=1)
    assert pipeline.client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 202
    assert pipeline.backends.blobs.exists(cancel_marker(job_id)), "the marker is an object in the bucket"
    pipeline.process()
    pipeline.fold()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["skipped"]) == ("cancelled", 1, 2)

    assert pipeline.client.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
    assert not pipeline.backends.blobs.exists(cancel_marker(job_id))
    pipeline.run()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["skipped"]) == ("completed", 3, 0)
    assert pipeline.client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert pipeline.backends.blobs.list(f"{job_id}/") == [], "the marker goes with the job's files"


def test_dedupe_across_one_callers_jobs_on_the_emulators(pipeline):
    same = png()
    first = pipeline.submit(images=[same])
    pipeline.run()
    again = pipeline.submit(images=[same])["job_id"]
    pipeline.run()
    source = f"{first['job_id']}/{first['images'][0]['image_id']}"
    assert pipeline.job(again)["images"][0]["duplicate_of"] == source
