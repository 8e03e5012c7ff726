"""Dedupe of copies that arrive together (issue 22): identical files of one request, or of jobs
sent at once, are in flight together on one processor (PROCESSOR_MAX_IN_FLIGHT of them) or on
several replicas; exactly one renders, every other copies it and names it in ``duplicate_of``.
The real processor (subscription, handler threads, render workers) on the local adapters and on
the emulators; the job read back through the API."""
from __future__ import annotations

import time

import pytest

from imageflow import topology
from imageflow.messages import Result
from services.image_processor import app as processor_app
from tests.integration.test_lifecycle import Pipeline, png


@pytest.fixture(params=["local", pytest.param("gcp", marks=pytest.mark.emulators)])
def pipeline(request, local_settings, tmp_path):
    if request.param == "gcp":
        for emulator in ("gcs_blobstore", "firestore_jobstore", "pubsub_bus"):  # empty emulators
            request.getfixturevalue(emulator)
        settings = request.getfixturevalue("gcp_settings").with_overrides(data_dir=tmp_path)
    else:
        settings = local_settings
    p = Pipeline(settings)
    topology.ensure(p.backends.bus, settings)
    yield p
    p.backends.close()


def run_processors(pipeline: Pipeline, replicas: int, results: int, timeout: float = 180) -> list[Result]:
    """Start ``replicas`` processors, each with its own handles on the stores (as separate
    replicas have), until ``results`` results are published; fold them into the jobs."""
    settings = pipeline.settings
    running = []
    for _ in range(replicas):
        backends = processor_app.processor_backends(settings)
        running.append((backends, *processor_app.start_processing(settings, backends)))
    collected: list[Result] = []
    try:
        end = time.monotonic() + timeout
        while len(collected) < results and time.monotonic() < end:
            messages = pipeline.backends.bus.pull(settings.topics.results_sub, max_messages=50, timeout=0.5)
            collected += [Result.decode(m.data) for m in messages]
            for m in messages:
                m.ack()
    finally:
        for backends, processor, subscriber in running:
            subscriber.stop(timeout=30)
            processor.close()
            backends.close()
    assert len(collected) == results, f"{len(collected)} of {results} results within {timeout:g} s"
    pipeline.coordinator.fold(collected)
    return collected


def rendered_and_copies(pipeline: Pipeline, job_ids: list[str]) -> tuple[list[dict], list[dict]]:
    """The jobs' images (each with ``source``: its ``<job_id>/<image_id>``): rendered, and copies."""
    images = [{**image, "source": f"{job_id}/{image['image_id']}"}
              for job_id in job_ids for image in pipeline.job(job_id)["images"]]
    assert all(i["status"] == "succeeded" for i in images), [(i["status"], i["error"]) for i in images]
    return [i for i in images if not i["duplicate_of"]], [i for i in images if i["duplicate_of"]]


@pytest.mark.parametrize("copies", [24, 6])
def test_identical_files_of_one_request_render_once(pipeline, copies):
    """24 identical files: more than the 16 tasks one processor holds in flight; 6: fewer."""
    same = png()
    created = pipeline.submit(images=[same] * copies)
    job_id = created["job_id"]
    pipeline.fan_out()
    assert pipeline.settings.processor_in_flight == 16
    run_processors(pipeline, replicas=1, results=copies)
    [rendered], duplicates = rendered_and_copies(pipeline, [job_id])
    assert len(duplicates) == copies - 1
    assert {i["duplicate_of"] for i in duplicates} == {rendered["source"]}
    output = pipeline.client.get(rendered["output_url"]).data
    assert all(pipeline.client.get(i["output_url"]).data == output for i in duplicates), "each copy has the output"
    assert all(i["output_preview_url"] for i in duplicates), "and its previews"
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"]) == ("completed", copies)


def test_identical_files_of_jobs_sent_together_render_once_across_processor_replicas(pipeline):
    """Three jobs of the same eight files, in flight together on two processor replicas, each with
    its own store handles: one render of the file in all, 23 copies."""
    same = png()
    job_ids = [pipeline.submit(images=[same] * 8)["job_id"] for _ in range(3)]
    pipeline.fan_out()
    run_processors(pipeline, replicas=2, results=24)
    [rendered], duplicates = rendered_and_copies(pipeline, job_ids)
    assert len(duplicates) == 23
    assert {i["duplicate_of"] for i in duplicates} == {rendered["source"]}
    assert pipeline.backends.blobs.list("dedupe/claim/") == [], "every claim was released"
