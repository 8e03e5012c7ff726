"""The job page's lifecycle actions in a real browser against the running stack: Cancel on a
running job, then "Run again with other steps" (frontend/e2e/lifecycle.mjs does the clicking).

Needs what tests/e2e/browser_support.py says (Chromium, frontend packages and build)."""
from __future__ import annotations

import json

import pytest
import requests

from devtools.browser_scripts import ARTIFACTS, run_script
from devtools.stack import Stack
from tests.e2e.conftest import make_image
from tests.e2e.browser_support import require_browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_browser()
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("browser-lifecycle") / "data",
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "PROCESSOR_CONCURRENCY": "1",
                                     "RATE_LIMIT_PER_SECOND": "0",
                                     "IMAGEFLOW_FAULTS": "processor_delay_on=slow-:1.5"})
    stack.start()
    yield stack
    stack.stop()


def test_cancel_then_run_again_with_other_steps_from_the_page(stack):
    files = [("files", (f"slow-{i}.png", make_image("PNG", (300 + i, 200), (30 * i, 80, 160)), "image/png"))
             for i in range(6)]
    response = requests.post(f"{stack.base_url}/api/v1/jobs", files=files, timeout=30,
                             data={"operations": json.dumps([{"op": "grayscale"}])})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    result = run_script("lifecycle.mjs", "--base-url", stack.base_url, "--artifacts", str(ARTIFACTS), "--job-id", job_id)
    job = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "cancelled" and job["skipped"] >= 1
    assert f"{job['skipped']} photo" in result["skipped_text"]
    child = requests.get(f"{stack.base_url}/api/v1/jobs/{result['new_job_id']}", timeout=10).json()
    assert child["parent_job_id"] == job_id and child["status"] == "completed" and child["total"] == 6
    assert all(i["content_type"] == "image/webp" and i["width"] == 120 for i in child["images"])
