"""The processor on GCP needs no Firestore (its service account has no Firestore role): on the
emulators, the image-handler and the interaction manager use Firestore, the processor only
Cloud Storage (fake-gcs-server) and Pub/Sub. Cancel reaches it as the marker object
``<job_id>/control/cancelled``, dedupe scopes by the caller its task carries."""
from __future__ import annotations

import signal
from pathlib import Path

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


def test_the_processor_process_serves_tasks_with_firestore_unreachable(gcs_blobstore, pubsub_bus, gcp_env,
                                                                       gcp_settings, tmp_path):
    """The real service process on the GCP adapters, its Firestore pointed at a closed port: it comes up
    ready, skips a task whose job has the cancel marker, and renders the other."""
    import os
    import subprocess
    import sys
    import time

    import requests

    from devtools.stack import free_port
    from imageflow import domain
    from imageflow.messages import Result

    topology.ensure(pubsub_bus, gcp_settings)
    port = free_port()
    env = {**os.environ, **gcp_env, "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{free_port()}", "PORT": str(port),
           "BIND_HOST": "127.0.0.1", "IMAGEFLOW_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    cancelled, running = domain.new_id(), domain.new_id()
    tasks = []
    for job_id in (cancelled, running):
        image_id = domain.new_id()
        path = domain.input_path(job_id, image_id, "a.png")
        gcs_blobstore.put(path, png(), "image/png")
        tasks.append(domain.task_for(domain.Job(job_id=job_id, operations=[{"op": "grayscale"}]),
                                     domain.Image(job_id=job_id, image_id=image_id, filename="a.png", input_path=path)))
    gcs_blobstore.put(domain.cancel_marker(cancelled), b"{}", "application/json")
    log = open(tmp_path / "processor.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "services.image_processor"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[3])
    try:
        end = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < end, (tmp_path / "processor.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        for task in tasks:
            pubsub_bus.publish(gcp_settings.topics.tasks, task.encode(), {"job_id": task.job_id})
        results: dict[str, Result] = {}
        while len(results) < 2:
            assert time.monotonic() < end + 60, (tmp_path / "processor.log").read_text()[-3000:]
            for message in pubsub_bus.pull(gcp_settings.topics.results_sub, max_messages=10, timeout=1):
                result = Result.decode(message.data)
                results[result.job_id] = result
                message.ack()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert (results[cancelled].status, results[cancelled].error) == (
        "skipped", "skipped: the job was cancelled before this image started")
    assert results[running].status == "succeeded" and gcs_blobstore.exists(results[running].output_path)
