"""End-to-end fixtures: the real processes, started as ./scripts.sh up starts them, on free ports."""
from __future__ import annotations

import io
import time

import pytest
import requests
from PIL import Image

from devtools.stack import Stack


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    """The whole system on the local backends; yields the Stack (``.base_url``, ``.data_dir``)."""
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("stack") / "data",
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10",
                                     "PROCESSOR_CONCURRENCY": "2"})
    stack.start()
    yield stack
    stack.stop()


def make_image(fmt: str, size=(640, 480), color=(180, 40, 40), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt)
    return buf.getvalue()


def wait_for_job(base_url: str, job_id: str, timeout: float = 120.0) -> dict:
    """Poll the job until it is finished; returns the last status document."""
    end = time.monotonic() + timeout
    while True:
        job = requests.get(f"{base_url}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] not in ("open", "queued", "processing"):
            return job
        if time.monotonic() > end:
            raise AssertionError(f"job {job_id} not finished after {timeout}s: {job['succeeded']}+{job['failed']}"
                                 f"/{job['total']}")
        time.sleep(0.3)
