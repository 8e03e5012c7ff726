"""Direct-upload targets (services.image_handler.upload_targets) on in-memory ports: a target per
acceptable file, a reason per refused one, and the job's state checked before any."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from imageflow import domain
from imageflow.blobstore import UploadTarget
from imageflow.settings import Settings
from services.image_handler.errors import ClientError, Refused
from services.image_handler.intake import Intake
from services.image_handler.upload_targets import MAX_DIRECT_UPLOADS, UploadTargets
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeJobStore

SETTINGS = Settings(max_upload_bytes=1024 * 1024, max_files_per_job=3, signed_url_ttl_seconds=600)


class SessionStore(FakeBlobStore):
    """A store that hands out its own upload sessions (as Cloud Storage does), or is down."""

    def __init__(self, down=False):
        super().__init__()
        self.sessions, self.down_for_targets = [], down

    def upload_target(self, path, content_type, size, metadata, expires_seconds, origin=None):
        if self.down_for_targets:
            raise OSError("storage unavailable")
        self.sessions.append((path, content_type, size, metadata, origin))
        return UploadTarget(url=f"https://storage.example/session/{len(self.sessions)}", method="PUT",
                            headers={"Content-Type": content_type})


def targets_for(blobs, jobs, **settings) -> UploadTargets:
    intake = Intake(SETTINGS.with_overrides(**settings) if settings else SETTINGS, blobs, jobs, FakeBus())
    return UploadTargets(intake, sign=lambda url, ttl: f"{url}&ttl={ttl}&sig=s", base_url="http://handler.test")


def open_job(jobs: FakeJobStore, total=0) -> domain.Job:
    job = domain.Job(job_id=domain.new_id(), status=domain.OPEN, total=total)
    jobs.create_job(job, [])
    return job


def test_a_local_store_gets_signed_links_to_the_handler_and_nothing_joins_yet():
    blobs, jobs = FakeBlobStore(), FakeJobStore()
    job = open_job(jobs)
    answer = targets_for(blobs, jobs).create(job, [{"filename": "../Cat photo.png", "bytes": 2048}])
    [upload] = answer["uploads"]
    assert answer["job_id"] == job.job_id and answer["rejected"] == []
    assert (upload["filename"], upload["method"], upload["headers"]) == ("Cat photo.png", "PUT",
                                                                        {"Content-Type": "image/png"})
    url = urlsplit(upload["url"])
    assert url.path == f"/api/v1/jobs/{job.job_id}/uploads/{upload['image_id']}"
    assert {k: v[0] for k, v in parse_qs(url.query).items()} == {"name": "Cat photo.png", "bytes": "2048",
                                                                  "type": "image/png", "ttl": "600", "sig": "s"}
    assert upload["expires_at"] and jobs.get_job(job.job_id).total == 0 and not blobs.objects


def test_a_store_with_upload_sessions_hands_them_out_with_the_files_metadata():
    blobs, jobs = SessionStore(), FakeJobStore()
    job = open_job(jobs)
    answer = targets_for(blobs, jobs).create(job, [{"filename": "a.jpg", "bytes": 10, "content_type": "image/jpeg"}],
                                             origin="https://app.example")
    [upload] = answer["uploads"]
    [(path, content_type, size, metadata, origin)] = blobs.sessions
    assert upload["url"] == "https://storage.example/session/1"
    assert path == domain.input_path(job.job_id, upload["image_id"], "a.jpg")
    assert (content_type, size, origin) == ("image/jpeg", 10, "https://app.example")
    assert metadata == domain.direct_upload_metadata("a.jpg")


def test_each_refused_file_says_why_and_the_others_get_targets():
    blobs, jobs = FakeBlobStore(), FakeJobStore()
    answer = targets_for(blobs, jobs).create(open_job(jobs), [
        {"filename": "big.png", "bytes": 2 * 1024 * 1024}, {"filename": "empty.png", "bytes": 0},
        {"filename": "notes.txt", "bytes": 10}])
    assert answer["uploads"] == []
    assert [(r["filename"], r["error"]["code"]) for r in answer["rejected"]] == [
        ("big.png", "file_too_large"), ("empty.png", "empty_file"), ("notes.txt", "unsupported_image")]
    assert "1 MB (MAX_UPLOAD_BYTES)" in answer["rejected"][0]["error"]["message"]


@pytest.mark.parametrize("files, message", [
    ([], "with 1 to"), ("a.png", "with 1 to"), ([{"filename": "a.png"}], "files[0] needs"),
    ([{"filename": "a.png", "bytes": True}], "files[0] needs"),
    ([{"filename": "a.png", "bytes": 1}] * (MAX_DIRECT_UPLOADS + 1), f"with 1 to {MAX_DIRECT_UPLOADS}")])
def test_a_malformed_list_is_a_400_naming_the_problem(files, message):
    blobs, jobs = FakeBlobStore(), FakeJobStore()
    with pytest.raises(ClientError, match=message.replace("[", r"\[")) as err:
        targets_for(blobs, jobs).create(open_job(jobs), files)
    assert (err.value.status, err.value.code) == (400, "malformed_request")


def test_an_unknown_field_of_a_file_is_named():
    blobs, jobs = FakeBlobStore(), FakeJobStore()
    with pytest.raises(ClientError) as err:
        targets_for(blobs, jobs).create(open_job(jobs), [{"filename": "a.png", "bytes": 1, "size": 1}])
    assert err.value.code == "unknown_field" and err.value.details[0]["field"] == "files[0].size"


def test_a_closed_or_full_job_gets_no_targets():
    blobs, jobs = FakeBlobStore(), FakeJobStore()
    closed = domain.Job(job_id=domain.new_id(), status=domain.QUEUED)
    jobs.create_job(closed, [])
    one = [{"filename": "a.png", "bytes": 1}]
    with pytest.raises(Refused) as shut:
        targets_for(blobs, jobs).create(closed, one)
    with pytest.raises(Refused) as full:
        targets_for(blobs, jobs).create(open_job(jobs, total=3), one)
    assert (shut.value.status, shut.value.code) == (409, "job_closed")
    assert (full.value.status, full.value.code, full.value.details["room"]) == (413, "too_many_files", 0)


def test_storage_down_is_a_503():
    jobs = FakeJobStore()
    with pytest.raises(ClientError) as err:
        targets_for(SessionStore(down=True), jobs).create(open_job(jobs), [{"filename": "a.png", "bytes": 1}])
    assert (err.value.status, err.value.code) == (503, "unavailable")
