"""Cancel, retry and re-run (services.image_handler.lifecycle) on in-memory ports: what each
records on the job and its images, what it announces, and what it refuses."""
from __future__ import annotations

import json

import pytest

from imageflow import domain
from imageflow.messages import JobSubmitted
from imageflow.settings import Settings
from services.image_handler.errors import ClientError, Refused
from services.image_handler.intake import Intake, JobRequest
from services.image_handler.lifecycle import Lifecycle
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeJobStore, Outage

SETTINGS = Settings(max_files_per_job=10)
TOPICS = SETTINGS.topics


@pytest.fixture
def ports():
    return FakeBlobStore(), FakeJobStore(), FakeBus()


@pytest.fixture
def admitted():
    return []


@pytest.fixture
def lifecycle(ports, admitted):
    blobs, jobs, bus = ports
    return Lifecycle(Intake(SETTINGS, blobs, jobs, bus, admit=lambda job_id, n, cost=0.0: admitted.append((job_id, n))))


def stored_job(jobs: FakeJobStore, status: str, *images: str, **fields) -> domain.Job:
    """A job in the store with one image per status in ``images`` (a succeeded one has its outputs)."""
    job = domain.Job(job_id=domain.new_id(), status=status, operations=[{"op": "grayscale"}], **fields)
    records = []
    for n, image_status in enumerate(images):
        image_id = domain.new_id()
        image = domain.Image(job_id=job.job_id, image_id=image_id, filename=f"p{n}.png",
                             input_path=domain.input_path(job.job_id, image_id, f"p{n}.png"), status=image_status,
                             input_bytes=1000, tasked=True)
        if image_status == domain.IMAGE_SUCCEEDED:
            image.output_path, image.output_bytes, image.content_type = f"{job.job_id}/output/{image_id}.webp", 400, \
                "image/webp"
        if image_status == domain.IMAGE_FAILED:
            image.error, image.error_code = "the processors gave up on it", domain.ErrorCode.WORKER_CRASHED
            image.output_preview_path, image.choices = "old-preview.webp", {"quality": 80}
        records.append(image)
    job.total = len(records)
    job.succeeded = images.count(domain.IMAGE_SUCCEEDED)
    job.failed = images.count(domain.IMAGE_FAILED)
    job.skipped = images.count(domain.IMAGE_SKIPPED)
    jobs.create_job(job, records)
    return jobs.get_job(job.job_id)


def announced(bus: FakeBus) -> list[str]:
    return [m.job_id for m in bus.messages(TOPICS.jobs, JobSubmitted)]


# -- cancel ------------------------------------------------------------------------------------
def test_cancel_writes_the_marker_then_records_the_cancel(lifecycle, ports):
    blobs, jobs, bus = ports
    job = stored_job(jobs, domain.PROCESSING, domain.IMAGE_SUCCEEDED, domain.IMAGE_QUEUED)
    cancelled = lifecycle.cancel(job)
    assert cancelled.cancel_requested_at and jobs.get_job(job.job_id).cancel_requested_at
    marker, content_type = blobs.objects[domain.cancel_marker(job.job_id)]
    assert json.loads(marker)["job_id"] == job.job_id and content_type == "application/json"
    assert announced(bus) == []   # a running job is folded to cancelled as its images finish


def test_cancelling_an_open_job_closes_and_announces_it(lifecycle, ports):
    _, jobs, bus = ports
    job = stored_job(jobs, domain.OPEN, domain.IMAGE_SUCCEEDED)
    cancelled = lifecycle.cancel(job)
    assert cancelled.status == domain.CANCELLED and cancelled.closed_at   # every image had an outcome
    assert announced(bus) == [job.job_id]


def test_cancel_twice_is_the_same_cancel(lifecycle, ports):
    _, jobs, _ = ports
    job = stored_job(jobs, domain.PROCESSING, domain.IMAGE_QUEUED)
    first = lifecycle.cancel(job)
    again = lifecycle.cancel(jobs.get_job(job.job_id))
    assert again.cancel_requested_at == first.cancel_requested_at


def test_a_finished_job_cannot_be_cancelled(lifecycle, ports):
    job = stored_job(ports[1], domain.COMPLETED, domain.IMAGE_SUCCEEDED)
    with pytest.raises(Refused) as err:
        lifecycle.cancel(job)
    assert (err.value.status, err.value.code) == (409, "job_finished")


def test_when_the_marker_cannot_be_written_the_job_is_unchanged(lifecycle, ports):
    blobs, jobs, _ = ports
    job = stored_job(jobs, domain.PROCESSING, domain.IMAGE_QUEUED)
    blobs.down = True
    with pytest.raises(Outage):
        lifecycle.cancel(job)
    assert jobs.get_job(job.job_id).cancel_requested_at is None


# -- retry -------------------------------------------------------------------------------------
def test_retry_requeues_the_failed_and_skipped_images_as_a_new_run(lifecycle, ports, admitted):
    blobs, jobs, bus = ports
    job = stored_job(jobs, domain.CANCELLED, domain.IMAGE_SUCCEEDED, domain.IMAGE_FAILED, domain.IMAGE_SKIPPED)
    blobs.put(domain.cancel_marker(job.job_id), b"{}", "application/json")
    retried, count = lifecycle.retry(job)
    assert count == 2 and admitted == [(job.job_id, 2)]
    assert (retried.status, retried.run, retried.succeeded, retried.failed, retried.skipped) == \
        (domain.QUEUED, 1, 1, 0, 0)
    assert domain.cancel_marker(job.job_id) not in blobs.objects   # lifted: this run's tasks are not skipped
    images = {i.filename: i for i in jobs.list_images(job.job_id)}
    assert images["p0.png"].status == domain.IMAGE_SUCCEEDED and images["p0.png"].output_path
    for name in ("p1.png", "p2.png"):
        image = images[name]
        assert (image.status, image.error, image.error_code, image.output_preview_path, image.choices,
                image.tasked) == (domain.IMAGE_QUEUED, None, None, None, {}, False)
        assert image.input_path and image.input_bytes == 1000   # the original is kept
    assert announced(bus) == [job.job_id]


def test_retry_refuses_an_active_job_and_one_without_failures(lifecycle, ports):
    jobs = ports[1]
    with pytest.raises(Refused) as active:
        lifecycle.retry(stored_job(jobs, domain.PROCESSING, domain.IMAGE_FAILED))
    with pytest.raises(Refused) as nothing:
        lifecycle.retry(stored_job(jobs, domain.COMPLETED, domain.IMAGE_SUCCEEDED))
    assert (active.value.status, active.value.code) == (409, "job_active")
    assert (nothing.value.status, nothing.value.code) == (409, "nothing_to_retry")


def test_a_quota_refusal_leaves_the_job_as_it_was(ports):
    blobs, jobs, bus = ports

    def admit(job_id, n, cost=0.0):
        raise ClientError(429, "quota_exceeded", f"no room for {n}")

    job = stored_job(jobs, domain.COMPLETED_WITH_ERRORS, domain.IMAGE_FAILED)
    with pytest.raises(ClientError, match="no room for 1"):
        Lifecycle(Intake(SETTINGS, blobs, jobs, bus, admit=admit)).retry(job)
    [image] = jobs.list_images(job.job_id)
    assert image.status == domain.IMAGE_FAILED and jobs.get_job(job.job_id).status == domain.COMPLETED_WITH_ERRORS
    assert announced(bus) == []


# -- rerun -------------------------------------------------------------------------------------
def request_of(fields: dict) -> JobRequest:
    return JobRequest(operations=fields["operations"], name=fields.get("name"))


def test_rerun_makes_a_child_job_over_the_parents_originals(lifecycle, ports, admitted):
    _, jobs, bus = ports
    parent = stored_job(jobs, domain.COMPLETED_WITH_ERRORS, domain.IMAGE_SUCCEEDED, domain.IMAGE_FAILED)
    created = lifecycle.rerun(parent, {"operations": [{"op": "blur", "radius": 2}], "name": "again"}, "failed",
                              request_of)
    child = jobs.get_job(created.job.job_id)
    assert (child.parent_job_id, child.total, child.name, child.operations) == \
        (parent.job_id, 1, "again", [{"op": "blur", "radius": 2}])
    [image] = jobs.list_images(child.job_id)
    failed = next(i for i in jobs.list_images(parent.job_id) if i.status == domain.IMAGE_FAILED)
    assert image.input_path == failed.input_path and image.status == domain.IMAGE_QUEUED   # read, not copied
    assert jobs.get_job(parent.job_id).child_job_ids == [child.job_id]
    assert admitted == [(child.job_id, 1)] and announced(bus) == [child.job_id]


def test_rerun_without_operations_runs_the_parents_again(lifecycle, ports):
    parent = stored_job(ports[1], domain.COMPLETED, domain.IMAGE_SUCCEEDED)
    created = lifecycle.rerun(parent, {}, "all", request_of)
    assert created.job.operations == parent.operations


def test_rerun_refuses_an_active_parent_and_an_empty_selection(lifecycle, ports):
    jobs = ports[1]
    with pytest.raises(Refused) as active:
        lifecycle.rerun(stored_job(jobs, domain.PROCESSING, domain.IMAGE_FAILED), {}, "all", request_of)
    with pytest.raises(Refused) as nothing:
        lifecycle.rerun(stored_job(jobs, domain.COMPLETED, domain.IMAGE_SUCCEEDED), {}, "failed", request_of)
    assert (active.value.status, active.value.code) == (409, "job_active")
    assert (nothing.value.status, nothing.value.code) == (409, "nothing_to_rerun")


def test_an_unfetched_url_image_is_fetched_again_into_the_new_job(lifecycle, ports):
    jobs = ports[1]
    parent = stored_job(jobs, domain.COMPLETED_WITH_ERRORS, domain.IMAGE_FAILED)
    [source] = jobs.list_images(parent.job_id)
    jobs.update_images(parent.job_id, [domain.Image(**{**source.to_dict(), "source_url": "https://x.example/a.png"})])
    created = lifecycle.rerun(parent, {}, "failed", request_of)
    [image] = jobs.list_images(created.job.job_id)
    assert image.source_url == "https://x.example/a.png" and image.input_path.startswith(f"{created.job.job_id}/")
