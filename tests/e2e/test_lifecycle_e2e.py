"""The job lifecycle over HTTP against the real processes (issue 16): cancel during a run,
retry after a dead-lettered image, a re-run with new operations.

The processors run with fault injection (devtools.faults): ``slow-`` images take a second
and a half each, so a cancel lands mid-run; a ``poison-`` image SIGKILLs the processor on
every delivery until it is dead-lettered.
"""
from __future__ import annotations

import email
import itertools
import io
import json
import subprocess
import sys
import time
from email import policy
from pathlib import Path

import pytest
import requests
from PIL import Image

from devtools.stack import Stack
from tests.e2e.conftest import make_image, wait_for_job

REPO = Path(__file__).resolve().parents[2]
FAULTS = "processor_crash_on=poison-,processor_delay_on=slow-:1.5"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("lifecycle") / "data",
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "3",
                                     "MAX_DELIVERY_ATTEMPTS": "2", "PROCESSOR_CONCURRENCY": "2",
                                     "RATE_LIMIT_PER_SECOND": "0", "IMAGEFLOW_FAULTS": FAULTS})
    stack.start()
    yield stack
    stack.stop()


_made = itertools.count()


def submit(base, names, operations=None, **data):
    """A job of distinct PNGs (never the bytes of an earlier job: dedupe would copy instead of render)."""
    files = [("files", (name, make_image("PNG", (320 + next(_made), 240), (20 * i, 90, 160)), "image/png"))
             for i, name in enumerate(names)]
    response = requests.post(f"{base}/api/v1/jobs", files=files, timeout=60,
                             data={"operations": json.dumps(operations or [{"op": "grayscale"}]), **data})
    assert response.status_code == 202, response.text
    return response.json()


def mail(stack, name):
    path = stack.data_dir / "outbox" / name
    end = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < end, f"no email {name}"
        time.sleep(0.2)
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)


def test_cancel_during_a_run_skips_what_has_not_started(stack):
    base = stack.base_url
    created = submit(base, [f"slow-{i:02d}.png" for i in range(12)], email="user@example.com")
    job_id = created["job_id"]
    end = time.monotonic() + 60
    while requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()["succeeded"] < 2:
        assert time.monotonic() < end, "the job never got going"
        time.sleep(0.2)
    response = requests.post(f"{base}/api/v1/jobs/{job_id}/cancel", timeout=10)
    assert response.status_code == 202, response.text
    job = wait_for_job(base, job_id, timeout=60)
    assert job["status"] == "cancelled", job["status"]
    assert job["failed"] == 0 and job["succeeded"] >= 2 and job["skipped"] >= 4
    assert job["succeeded"] + job["skipped"] == 12
    for image in job["images"]:
        if image["status"] == "succeeded":  # the ones in flight finished, with their outputs
            assert requests.get(image["output_url"], timeout=10).status_code == 200
        else:
            assert image["status"] == "skipped" and image["output_url"] is None
    message = mail(stack, f"{job_id}.eml")
    assert "cancelled" in message["Subject"]
    assert f"{job['skipped']} skipped" in message.get_body(("plain",)).get_content()


def test_retry_after_a_cancel_renders_the_skipped_images(stack):
    """The processors read no job document: the cancel reaches them as the marker object
    ``<job_id>/control/cancelled`` in the blob store, and the retry lifts it before re-queueing."""
    base = stack.base_url
    job_id = submit(base, [f"slow-r{i}.png" for i in range(6)])["job_id"]
    end = time.monotonic() + 60
    while requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()["succeeded"] < 1:
        assert time.monotonic() < end, "the job never got going"
        time.sleep(0.2)
    assert requests.post(f"{base}/api/v1/jobs/{job_id}/cancel", timeout=10).status_code == 202
    marker = stack.data_dir / "blobs" / job_id / "control" / "cancelled"
    assert marker.is_file()
    job = wait_for_job(base, job_id, timeout=60)
    assert job["status"] == "cancelled" and job["skipped"] >= 1, job
    response = requests.post(f"{base}/api/v1/jobs/{job_id}/retry", timeout=10)
    assert response.status_code == 202 and response.json()["retried"] == job["skipped"], response.text
    assert not marker.exists()
    job = wait_for_job(base, job_id, timeout=90)
    assert (job["status"], job["succeeded"], job["skipped"], job["run"]) == ("completed", 6, 0, 1)
    assert all(requests.get(i["output_url"], timeout=10).status_code == 200 for i in job["images"])


def test_rerun_with_new_operations_reads_the_stored_originals(stack):
    base = stack.base_url
    parent = submit(base, ["a.png", "b.png"])
    wait_for_job(base, parent["job_id"])
    response = requests.post(f"{base}/api/v1/jobs/{parent['job_id']}/rerun", timeout=10,
                             json={"operations": [{"op": "resize", "width": 100}, {"op": "format", "format": "webp"}],
                                   "only": "all"})
    assert response.status_code == 202, response.text
    child = wait_for_job(base, response.json()["job_id"])
    assert child["status"] == "completed" and child["parent_job_id"] == parent["job_id"]
    for image in child["images"]:
        out = requests.get(image["output_url"], timeout=10)
        picture = Image.open(io.BytesIO(out.content))
        assert (picture.format, picture.width) == ("WEBP", 100)
    again = requests.get(f"{base}/api/v1/jobs/{parent['job_id']}", timeout=10).json()
    assert again["child_job_ids"] == [child["job_id"]]
    assert child["bytes_in"] == again["bytes_in"], "the same originals were read"


def cli(stack, *args):
    proc = subprocess.run([sys.executable, "-m", "imageflow_cli", "--server", stack.base_url, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_estimate_cancel_and_rerun(stack, tmp_path):
    paths = []
    for name, size in (("big.png", (1200, 900)), ("small.png", (300, 200))):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(make_image("PNG", size))
    (tmp_path / "notes.png").write_text("not an image")
    before = requests.get(f"{stack.base_url}/api/v1/jobs", timeout=10).json()["jobs"]
    code, out, err = cli(stack, "estimate", *map(str, paths), str(tmp_path / "notes.png"), "--preset", "web")
    assert code == 0, err
    assert "accepted big.png" in out and "refused  notes.png" in out and "2 image(s) accepted, 1 refused" in out
    assert requests.get(f"{stack.base_url}/api/v1/jobs", timeout=10).json()["jobs"] == before, "created nothing"

    slow = submit(stack.base_url, [f"slow-{i}.png" for i in range(8)])["job_id"]
    end = time.monotonic() + 60  # one must have finished, for the re-run of the succeeded ones
    while requests.get(f"{stack.base_url}/api/v1/jobs/{slow}", timeout=10).json()["succeeded"] < 1:
        assert time.monotonic() < end, "the job never got going"
        time.sleep(0.2)
    code, out, err = cli(stack, "cancel", slow, "--wait")
    assert code == 0, err
    assert f"job {slow} cancelled" in err and "skipped" in err

    code, out, err = cli(stack, "rerun", slow, "--only", "succeeded", "--operations",
                         '[{"op": "format", "format": "jpeg", "quality": 60}]', "--out", str(tmp_path / "out"))
    assert code == 0, err
    child = out.strip()
    job = requests.get(f"{stack.base_url}/api/v1/jobs/{child}", timeout=10).json()
    assert job["parent_job_id"] == slow and job["status"] == "completed"
    saved = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(saved) == job["total"] and all(name.endswith(".jpg") for name in saved)


def test_retry_after_a_dead_lettered_image(stack):
    base = stack.base_url
    created = submit(base, ["good-1.png", "poison-1.png", "good-2.png"], email="user@example.com")
    job_id = created["job_id"]
    end = time.monotonic() + 120
    while True:  # restart the processor after each crash, as Kubernetes would
        if stack.procs["image-processor"].poll() is not None:
            stack.start_process("image-processor")
        job = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] not in ("queued", "processing"):
            break
        assert time.monotonic() < end, "the poison image was never dead-lettered"
        time.sleep(0.3)
    assert (job["status"], job["succeeded"], job["failed"]) == ("completed_with_errors", 2, 1)
    [poisoned] = [i for i in job["images"] if i["status"] == "failed"]
    # the crash kills a render worker (RenderPool): the image fails as worker_crashed (a crash of
    # the processor itself would end dead-lettered with the same code)
    assert poisoned["error_code"] == "worker_crashed", poisoned
    assert "1 failed" in mail(stack, f"{job_id}.eml")["Subject"]

    stack.env.pop("IMAGEFLOW_FAULTS")  # the bug that crashed the worker is fixed and deployed
    stack.stop_process("image-processor")
    stack.start_process("image-processor")
    stack.wait_ready(60)
    code, out, err = cli(stack, "retry", job_id, "--wait")  # the CLI, over the API
    assert code == 0, err
    assert "1 image(s) queued again (run 1)" in err
    job = wait_for_job(base, job_id)
    assert (job["status"], job["succeeded"], job["failed"], job["run"]) == ("completed", 3, 0, 1)
    assert requests.get(next(i["output_url"] for i in job["images"] if i["image_id"] == poisoned["image_id"]),
                        timeout=10).status_code == 200
    assert "All 3 of your images are ready" in mail(stack, f"{job_id}.1.eml")["Subject"], "notified again"
