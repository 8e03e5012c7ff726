"""The whole pipeline over HTTP on the local backends, as a user runs it."""
from __future__ import annotations

import email
import io
import json
import time
import zipfile
from email import policy

import requests
from PIL import Image

from imageflow.blobstore.local import LocalBlobStore
from tests.e2e.conftest import make_image, wait_for_job

FORMATS = [("JPEG", "jpg", "image/jpeg"), ("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp"),
           ("GIF", "gif", "image/gif"), ("TIFF", "tiff", "image/tiff"), ("BMP", "bmp", "image/bmp")]


def batch_of(n: int):
    files = []
    for i in range(n):
        fmt, ext, mime = FORMATS[i % len(FORMATS)]
        size = (400 + 37 * i, 300 + 11 * i)
        files.append(("files", (f"photo {i:02d}.{ext}", make_image(fmt, size, (10 * i, 100, 200)), mime)))
    return files


def test_batch_of_mixed_formats_with_bad_files(stack):
    base = stack.base_url
    files = batch_of(20)
    files.append(("files", ("notes.jpg", b"this is a text file pretending to be a JPEG", "image/jpeg")))
    files.append(("files", ("truncated.png", make_image("PNG", (300, 300))[:60], "image/png")))
    operations = [{"op": "resize", "width": 200, "height": 200, "fit": "contain"}, {"op": "format", "format": "webp"}]
    started = time.monotonic()
    response = requests.post(f"{base}/api/v1/jobs", files=files,
                             data={"operations": json.dumps(operations), "email": "user@example.com"}, timeout=60)
    assert response.status_code == 202, response.text
    created = response.json()
    # The text file is refused at once (its bytes are not an image); the truncated PNG has a
    # valid header, so it is accepted and fails in processing with a readable reason.
    assert [r["filename"] for r in created["rejected"]] == ["notes.jpg"]
    assert "not an image" in created["rejected"][0]["error"]["message"]
    assert len(created["images"]) == 21

    job = wait_for_job(base, created["job_id"])
    elapsed = time.monotonic() - started
    print(f"\n21-image e2e batch: {21 / elapsed:.1f} images/s ({elapsed:.2f}s from POST to completed)")
    assert (job["status"], job["total"], job["succeeded"], job["failed"]) == ("completed_with_errors", 21, 20, 1)
    [broken] = [i for i in job["images"] if i["filename"] == "truncated.png"]
    assert broken["status"] == "failed" and "truncated" in broken["error"].lower()
    assert broken["output_url"] is None
    for image in job["images"]:
        if image is broken:
            continue
        assert image["status"] == "succeeded", image
        out = requests.get(image["output_url"], timeout=10)
        assert out.status_code == 200 and out.headers["Content-Type"] == "image/webp"
        picture = Image.open(io.BytesIO(out.content))
        assert picture.format == "WEBP"
        assert max(picture.size) == 200 and (image["width"], image["height"]) == picture.size
        original = requests.get(image["input_url"], timeout=10)
        assert original.status_code == 200 and Image.open(io.BytesIO(original.content)).size[0] >= 400

    archive = requests.get(job["links"]["archive"], timeout=30)
    assert archive.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert len(names) == 20 and all(n.endswith(".webp") for n in names)

    eml = stack.data_dir / "outbox" / f"{created['job_id']}.eml"
    deadline = time.monotonic() + 30
    while not eml.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["To"] == "user@example.com"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    link = f"{base}/jobs/{created['job_id']}"
    assert link in text and link in html
    assert "20 of your 21" in message["Subject"]
    assert len(list((stack.data_dir / "outbox").glob(f"{created['job_id']}*.eml"))) == 1


def test_processor_killed_mid_batch_still_completes_every_image_once(stack):
    base = stack.base_url
    files = [("files", (f"big {i}.jpg", make_image("JPEG", (2000, 1500), (i * 7 % 255, 50, 90)), "image/jpeg"))
             for i in range(24)]
    operations = [{"op": "resize", "width": 1200}, {"op": "sharpen"}, {"op": "format", "format": "png"}]
    response = requests.post(f"{base}/api/v1/jobs", files=files, data={"operations": json.dumps(operations)},
                             timeout=60)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    # Wait until processing is under way, then crash the processor.
    end = time.monotonic() + 60
    while time.monotonic() < end:
        status = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()
        if status["succeeded"] >= 2:
            break
        time.sleep(0.1)
    assert status["succeeded"] < 24, "the batch finished before the processor could be killed"
    stack.kill_process("image-processor")
    time.sleep(1)
    stack.start_process("image-processor")
    job = wait_for_job(base, job_id, timeout=180)
    assert (job["status"], job["succeeded"], job["failed"]) == ("completed", 24, 0)
    blobs = LocalBlobStore(stack.data_dir / "blobs")
    outputs = [name for name in blobs.list(f"{job_id}/output/") if ".preview-" not in name]  # previews aside
    assert len(outputs) == 24, "one output per image: none missing, none duplicated"
    assert all(name.endswith(".png") for name in outputs)
    for image in job["images"]:
        assert Image.open(io.BytesIO(requests.get(image["output_url"], timeout=10).content)).size == (1200, 900)


def test_unknown_job_and_bad_requests(stack):
    base = stack.base_url
    missing = requests.get(f"{base}/api/v1/jobs/{'0' * 32}", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    bad_ops = requests.post(f"{base}/api/v1/jobs", files=[("files", ("a.png", make_image("PNG"), "image/png"))],
                            data={"operations": '[{"op": "resize", "width": -5}]'}, timeout=10)
    assert bad_ops.status_code == 422 and "width" in bad_ops.json()["error"]["message"]
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200

