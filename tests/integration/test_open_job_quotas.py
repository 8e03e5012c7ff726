"""Quotas count the images that join an open job after it opened (issue 12): multipart uploads
and direct uploads, checked in the job store's transaction that adds them. The image-handler
serves its real HTTP API on 127.0.0.1 (a threaded WSGI server, so parallel requests really
run at once); the interaction manager's coordinator and the processor run in-process on the
same local backends."""
from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server

from imageflow.messages import Task
from services.image_handler.app import create_app
from services.image_processor.processing import Processor
from services.interaction_manager.coordinator import Coordinator

QUOTA = 5


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (seed * 40 % 256, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "max_files_per_job": 50, "quota_active_images": QUOTA,
                      "public_base_url": "https://imageflow.example"})
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def base_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/v1"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def coordinator(app):
    c = app.extensions["imageflow"]
    return Coordinator(c.settings, c.backends.jobs, c.backends.bus, c.backends.blobs)


def open_job(base_url) -> str:
    response = requests.post(f"{base_url}/jobs", json={"open": True, "preset": "thumbnail"}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["job_id"]


def upload(base_url, job_id, n, seed=0):
    files = [("files", (f"photo-{seed}-{i}.png", png(seed + i), "image/png")) for i in range(n)]
    return requests.post(f"{base_url}/jobs/{job_id}/files", files=files, timeout=60)


def inputs(app, job_id) -> int:
    return len(app.extensions["imageflow"].backends.blobs.list(f"{job_id}/input/"))


def run_tasks(app, coordinator) -> int:
    c = app.extensions["imageflow"]
    processor = Processor(c.settings, c.backends.blobs, c.backends.bus)
    for message in c.backends.bus.pull(c.settings.topics.jobs_sub, max_messages=100):
        coordinator.handle_job_submitted(message)  # the manager releases what joined (fair share)
    messages = c.backends.bus.pull(c.settings.topics.tasks_sub, max_messages=100)
    coordinator.fold([processor.process(Task.decode(m.data)) for m in messages])
    for message in messages:
        message.ack()
    return len(messages)


def test_files_added_to_an_open_job_count_against_the_image_quota(app, base_url, coordinator):
    job_id = open_job(base_url)
    assert upload(base_url, job_id, 3).status_code == 200
    refused = upload(base_url, job_id, 3, seed=10)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and "QUOTA_ACTIVE_IMAGES" in error["message"]
    assert "3 images waiting and these files add 3; the limit is 5 unfinished images" in error["message"]
    assert error["details"] == {"limit": "active_images", "quota": QUOTA, "active": 3, "requested": 3, "room": 2}
    job = requests.get(f"{base_url}/jobs/{job_id}", timeout=30).json()
    assert job["total"] == 3 and inputs(app, job_id) == 3           # nothing of the refused request is kept
    assert upload(base_url, job_id, 2, seed=20).status_code == 200  # what fits still joins
    assert run_tasks(app, coordinator) == 5                          # finished images free the quota
    assert upload(base_url, job_id, 5, seed=30).status_code == 200
    assert requests.get(f"{base_url}/jobs/{job_id}", timeout=30).json()["total"] == 10


def test_parallel_uploads_cannot_pass_the_quota_together(app, base_url):
    """Eight requests of 2 files at once against a quota of 5: exactly two fit. Each request on
    its own is under the quota, so only a check in the transaction that adds them refuses the rest."""
    job_id = open_job(base_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda seed: upload(base_url, job_id, 2, seed=seed * 2), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200] + [429] * 6, [a.text[:200] for a in answers]
    assert requests.get(f"{base_url}/jobs/{job_id}", timeout=30).json()["total"] == 4
    assert inputs(app, job_id) == 4


def test_the_quota_spans_the_callers_open_jobs(base_url):
    first, second = open_job(base_url), open_job(base_url)
    assert upload(base_url, first, 4).status_code == 200
    refused = upload(base_url, second, 2, seed=5)
    assert refused.status_code == 429 and refused.json()["error"]["details"]["active"] == 4
    assert upload(base_url, second, 1, seed=7).status_code == 200


def test_direct_uploads_past_the_quota_are_refused_by_name(app, base_url, coordinator):
    job_id = open_job(base_url)
    assert upload(base_url, job_id, 4).status_code == 200
    over = requests.post(f"{base_url}/jobs/{job_id}/files", timeout=30, json={"files": [
        {"filename": f"d{i}.png", "bytes": 100, "content_type": "image/png"} for i in range(2)]})
    assert over.status_code == 429 and "QUOTA_ACTIVE_IMAGES" in over.json()["error"]["message"]
    # One fits when the targets are asked for; a multipart upload takes that room before both land.
    direct = png(40)
    targets = requests.post(f"{base_url}/jobs/{job_id}/files", timeout=30, json={"files": [
        {"filename": "direct.png", "bytes": len(direct), "content_type": "image/png"}]})
    assert targets.status_code == 200, targets.text
    assert upload(base_url, job_id, 1, seed=60).status_code == 200   # quota now full (5)
    [target] = targets.json()["uploads"]
    assert urlsplit(target["url"]).netloc == urlsplit(base_url).netloc  # the local target: this server
    put = requests.put(target["url"], data=direct, headers=target["headers"], timeout=30)
    assert put.status_code == 200, put.text
    c = app.extensions["imageflow"]
    messages = c.backends.bus.pull(c.settings.topics.uploads_sub, max_messages=10)
    outcomes = coordinator.join_uploads([coordinator.upload_event(m.attributes, m.data) for m in messages])
    assert list(outcomes.values()) == ["failed"]
    job = requests.get(f"{base_url}/jobs/{job_id}?limit=50", timeout=30).json()
    joined = next(i for i in job["images"] if i["filename"] == "direct.png")
    assert joined["status"] == "failed" and joined["error_code"] == "quota_exceeded" and "QUOTA_ACTIVE_IMAGES" in joined["error"]
    assert (job["total"], job["failed"]) == (6, 1)
