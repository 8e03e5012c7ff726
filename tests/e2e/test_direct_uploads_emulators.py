"""Direct uploads on the emulators (issue 12): the API hands out resumable upload sessions on
fake-gcs-server, the client sends the bytes straight to the bucket (part-way, then resumed),
fake-gcs-server publishes the object-finalize event to the Pub/Sub emulator as a bucket
notification would, and the interaction manager adds each image to its open job."""
from __future__ import annotations

import io
import random
import time

import pytest
import requests

from PIL import Image

from devtools.stack import Stack
from tests.e2e.conftest import make_image, wait_for_job
from tests.gcp_fixtures import BUCKET, PROJECT

pytestmark = pytest.mark.emulators

CHUNK = 256 * 1024  # resumable uploads go in multiples of 256 KiB


@pytest.fixture
def stack(gcp_emulators, gcp_env, tmp_path):
    # fake-gcs-server announces the objects of the session's bucket on the session's project.
    gcp_emulators.wipe(project=PROJECT, bucket=BUCKET)
    stack = Stack.on_free_ports(tmp_path / "data", env={**gcp_env, "PROGRESS_FLUSH_SECONDS": "0.3",
                                                        "PROCESSOR_CONCURRENCY": "2"})
    stack.start(timeout=90)
    yield stack
    stack.stop()


def test_direct_uploads_go_to_the_bucket_and_join_the_open_job(stack):
    base = stack.base_url
    job = requests.post(f"{base}/api/v1/jobs", json={"open": True, "preset": "thumbnail"}, timeout=30).json()
    small = make_image("PNG", (300, 200))
    large = noisy_png((500, 400))  # noise does not compress: over one chunk
    assert len(large) > CHUNK
    answer = requests.post(job["links"]["files"], timeout=30, json={"files": [
        {"filename": "small.png", "bytes": len(small), "content_type": "image/png"},
        {"filename": "large.png", "bytes": len(large), "content_type": "image/png"}]}).json()
    small_up, large_up = answer["uploads"]
    assert small_up["url"].startswith(gcp_host(stack)) and "upload_id=" in small_up["url"]  # the bucket, not the API
    assert requests.put(small_up["url"], data=small, headers=small_up["headers"], timeout=30).status_code == 200

    # The large file: one chunk, as if the connection then dropped; the session keeps it and the
    # client carries on from where the session says it is (fake-gcs-server does not answer the
    # "bytes */<size>" status query that Cloud Storage does; its chunk answer carries the Range).
    first = requests.put(large_up["url"], data=large[:CHUNK], timeout=30,
                         headers={**large_up["headers"], "Content-Range": f"bytes 0-{CHUNK - 1}/{len(large)}"})
    assert first.status_code == 308 and first.headers["Range"] == f"bytes=0-{CHUNK - 1}"
    rest = requests.put(large_up["url"], data=large[CHUNK:], timeout=30, headers={
        **large_up["headers"], "Content-Range": f"bytes {CHUNK}-{len(large) - 1}/{len(large)}"})
    assert rest.status_code == 200, rest.text

    end = time.monotonic() + 60
    while requests.get(job["links"]["self"], timeout=10).json()["total"] < 2:
        assert time.monotonic() < end, "the uploads never joined the job"
        time.sleep(0.3)
    assert requests.post(job["links"]["close"], timeout=30).status_code == 200
    done = wait_for_job(base, job["job_id"], timeout=90)
    assert (done["status"], done["succeeded"]) == ("completed", 2)
    assert sorted(i["filename"] for i in done["images"]) == ["large.png", "small.png"]
    large_image = next(i for i in done["images"] if i["filename"] == "large.png")
    assert large_image["input_bytes"] == len(large)


def noisy_png(size) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", size, random.Random(7).randbytes(size[0] * size[1] * 3)).save(buf, "PNG")
    return buf.getvalue()


def gcp_host(stack: Stack) -> str:
    return stack.base_env()["STORAGE_EMULATOR_HOST"]
