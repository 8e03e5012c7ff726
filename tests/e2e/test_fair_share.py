"""Fair share between keys (issue 24), over the real processes with two API keys: key A submits
2,000 images, then key B submits 5. B's job completes while most of A's is still unfinished
(without fair share B's tasks sit behind every one of A's and finish with A's last ones)."""
from __future__ import annotations

import pytest
import requests

from bench.fair_share import KEY_A, race, stack_env
from devtools.stack import Stack
from tests.gcp_fixtures import BUCKET, PROJECT

A_IMAGES, B_IMAGES = 2_000, 5


@pytest.fixture(scope="module")
def stack_options():
    return {"env": stack_env()}


def _cancel(base_url: str, job_id: str) -> None:
    # A's remaining images are not needed: the cancel skips them, so the stack stops promptly
    requests.post(f"{base_url}/api/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {KEY_A}"},
                  timeout=60)


def _check(base_url: str) -> None:
    report = race(base_url, A_IMAGES, B_IMAGES, timeout=600, wait_for_a=False)
    _cancel(base_url, report["a_job"])
    assert (report["b_status"], report["b_succeeded"]) == ("completed", B_IMAGES)
    assert report["a_total"] == A_IMAGES
    assert report["a_done_when_b_done"] < A_IMAGES // 2, report


def test_a_small_job_of_another_key_is_not_stuck_behind_a_big_one(stack):
    _check(stack.base_url)


@pytest.mark.emulators
def test_a_small_job_of_another_key_is_not_stuck_behind_a_big_one_on_the_emulators(gcp_emulators, gcp_env, tmp_path):
    gcp_emulators.wipe(project=PROJECT, bucket=BUCKET)
    stack = Stack.on_free_ports(tmp_path / "data", env={**gcp_env, **stack_env(),
                                                        "URL_SIGNING_SECRET": "fair-share-test-signing-secret-0123456789"})
    stack.start(timeout=120)
    try:
        _check(stack.base_url)
    finally:
        stack.stop()
