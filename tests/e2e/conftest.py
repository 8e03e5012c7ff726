"""End-to-end helpers; the real processes are the shared ``stack`` fixture (tests/conftest.py)."""
from __future__ import annotations

import io
import time

import requests
from PIL import Image



# The system itself is tests/conftest.py's ``stack`` fixture (one per module, configured by
# ``stack_options``).


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
