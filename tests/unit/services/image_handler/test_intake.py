"""Intake on in-memory ports: validation before storage, a bad file refused alone, the job
recorded and announced, and nothing left behind when a port fails."""
from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from imageflow import domain
from imageflow.messages import JobSubmitted
from imageflow.settings import Settings
from services.image_handler.errors import ClientError
from services.image_handler.intake import Intake, JobRequest, validate_email, validate_operations
from services.image_handler.url_lists import UrlEntry
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeJobStore

SETTINGS = Settings(max_upload_bytes=50_000, max_files_per_job=3)
TOPICS = SETTINGS.topics


class Upload:
    def __init__(self, filename, data):
        self.filename, self._data = filename, data

    def read(self, limit):
        return self._data[:limit]


def png(size=(16, 12)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, (0, 90, 200)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def ports():
    return FakeBlobStore(), FakeJobStore(), FakeBus()


@pytest.fixture
def intake(ports):
    blobs, jobs, bus = ports
    return Intake(SETTINGS, blobs, jobs, bus)


REQUEST = JobRequest(operations=[{"op": "grayscale"}], email="me@example.com")


def test_good_files_are_stored_recorded_and_announced_bad_ones_refused_alone(intake, ports):
    blobs, jobs, bus = ports
    created = intake.create_job([Upload("../../etc/Holiday photo.png", png()), Upload("notes.txt", b"hello"),
                                 Upload("huge.png", b"\x89PNG" + b"0" * 60_000)], REQUEST)
    [image] = created.images
    assert image.filename == "Holiday photo.png"
    assert image.input_path == f"{created.job.job_id}/input/{image.image_id}-Holiday_photo.png"
    assert blobs.objects[image.input_path] == (png(), "image/png")
    assert [(r.filename, r.code) for r in created.rejected] == [("notes.txt", "unsupported_image"),
                                                                ("huge.png", "file_too_large")]
    stored = jobs.get_job(created.job.job_id)
    assert (stored.status, stored.total, stored.email) == (domain.QUEUED, 1, "me@example.com")
    assert [m.job_id for m in bus.messages(TOPICS.jobs, JobSubmitted)] == [created.job.job_id]


def test_nothing_is_stored_when_no_file_is_an_image(intake, ports):
    blobs, jobs, bus = ports
    with pytest.raises(ClientError) as err:
        intake.create_job([Upload("a.txt", b"text"), Upload("b.bin", b"\x00\x01")], REQUEST)
    assert (err.value.status, err.value.code) == (415, "no_valid_images")
    assert len(err.value.details) == 2
    assert not blobs.objects and not jobs.jobs and not bus.published


@pytest.mark.parametrize("uploads, status, code", [([], 400, "no_files"),
                                                    ([Upload("a.png", png())] * 4, 413, "too_many_files")])
def test_the_file_count_is_checked_before_anything_is_read(intake, ports, uploads, status, code):
    with pytest.raises(ClientError) as err:
        intake.create_job(uploads, REQUEST)
    assert (err.value.status, err.value.code) == (status, code) and not ports[0].objects


def test_a_quota_refusal_stores_nothing(ports):
    blobs, jobs, bus = ports

    def admit(job_id, n, cost=0.0):
        raise ClientError(429, "quota_exceeded", f"no room for {n}")

    with pytest.raises(ClientError, match="no room for 1"):
        Intake(SETTINGS, blobs, jobs, bus, admit=admit).create_job([Upload("a.png", png())], REQUEST)
    assert not blobs.objects and not jobs.jobs


def test_a_cost_refusal_once_the_files_are_probed_keeps_no_original(ports):
    """The job is reserved by its image count first, then with the cost its files' headers give
    (QUOTA_ACTIVE_COST); refused there, the originals stored meanwhile are deleted."""
    blobs, jobs, bus = ports
    calls = []

    def admit(job_id, n, cost=0.0):
        calls.append((n, cost))
        if cost:
            raise ClientError(429, "quota_exceeded", f"over the budget by {cost}")

    with pytest.raises(ClientError, match="over the budget"):
        Intake(SETTINGS, blobs, jobs, bus, admit=admit).create_job([Upload("a.png", png())], REQUEST)
    [(n, first), (_, probed)] = calls
    assert (n, first) == (1, 0.0) and probed > 0
    assert not [path for path in blobs.objects if "/input/" in path] and not jobs.jobs


def test_storage_down_answers_503_and_keeps_nothing(intake, ports):
    blobs, jobs, _ = ports
    blobs.down = True
    with pytest.raises(ClientError) as err:
        intake.create_job([Upload("a.png", png())], REQUEST)
    assert err.value.status == 503 and not jobs.jobs


def test_a_job_that_cannot_be_queued_is_failed_visibly_and_its_originals_deleted(intake, ports):
    blobs, jobs, bus = ports
    bus.fail_topics.add(TOPICS.jobs)
    with pytest.raises(ClientError) as err:
        intake.create_job([Upload("a.png", png())], REQUEST)
    assert err.value.status == 503 and "queue the job" in err.value.message
    [job] = jobs.jobs.values()
    assert job.status == domain.FAILED and job.completed_at
    assert not blobs.objects


def test_a_url_job_stores_nothing_and_queues_one_image_per_url(intake, ports):
    blobs, jobs, bus = ports
    created = intake.create_url_job([UrlEntry("https://images.example/a.jpg", {"sku": "A1"})], [], REQUEST)
    [image] = jobs.list_images(created.job.job_id)
    assert (image.source_url, image.meta, image.status) == ("https://images.example/a.jpg", {"sku": "A1"}, "queued")
    assert not blobs.objects and len(bus.published[TOPICS.jobs]) == 1


def test_a_webhook_job_is_pending_with_a_secret_from_the_start():
    job = JobRequest(operations=[], webhook_url="https://hooks.example/x").new_job()
    assert job.webhook_status == "pending" and len(job.webhook_secret) == 64


def test_validation_names_the_problem():
    assert validate_email("  me@example.com ") == "me@example.com" and validate_email("") is None
    with pytest.raises(ClientError, match="not a valid address"):
        validate_email("me@example.com\r\nBcc: x@y.z")
    with pytest.raises(ClientError) as err:
        validate_operations(None, [{"op": "resize", "width": -3}])
    assert (err.value.status, err.value.code) == (422, "invalid_operations") and "width" in err.value.message


def open_job(jobs, **fields):
    job = domain.Job(job_id=domain.new_id(), status=domain.OPEN, **fields)
    jobs.create_job(job, [])
    return job


def test_files_for_a_job_closed_meanwhile_are_refused_and_deleted(intake, ports):
    blobs, jobs, _ = ports
    seen_open = open_job(jobs)
    jobs.close_job(seen_open.job_id, domain.utcnow())   # another request closed it after we read it
    with pytest.raises(ClientError) as err:
        intake.add_files(seen_open, [Upload("a.png", png())])
    assert (err.value.status, err.value.code) == (409, "job_closed") and not blobs.objects


def test_files_for_a_job_filled_meanwhile_are_refused_with_the_room_left(intake, ports):
    blobs, jobs, _ = ports
    seen_empty = open_job(jobs)
    jobs.add_images(seen_empty.job_id, [domain.Image(job_id=seen_empty.job_id, image_id=domain.new_id(),
                                                     filename="x.png", input_path="x") for _ in range(3)],
                    max_total=3, now=domain.utcnow())
    with pytest.raises(ClientError) as err:
        intake.add_files(seen_empty, [Upload("a.png", png())])
    assert (err.value.status, err.value.code) == (413, "too_many_files")
    assert (err.value.details["held"], err.value.details["room"]) == (3, 0) and not blobs.objects
