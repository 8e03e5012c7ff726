"""Close loses nothing (issue 22), over real processes: a client asks for direct-upload targets,
PUTs every file and closes at once, before the interaction manager has handled the landing
events. Every image is in the finished job, on the local stack and on the emulators (where the
events come from fake-gcs-server's bucket notifications through the Pub/Sub emulator)."""
from __future__ import annotations

import pytest

from bench.close_race import one_round
from devtools.stack import Stack
from tests.gcp_fixtures import BUCKET, PROJECT

ROUNDS, FILES = 3, 20


def _rounds(base_url: str) -> list[tuple[str, int, int]]:
    jobs = [one_round(base_url, FILES) for _ in range(ROUNDS)]
    return [(job["status"], job["total"], job["succeeded"]) for job in jobs]


def _cancelled(base_url: str) -> tuple[str, int, int]:
    """A cancel closes the job too: every acknowledged upload is in it, skipped or rendered
    (found by tests/e2e/test_model_based.py: they were lost)."""
    job = one_round(base_url, FILES, finish="cancel")
    return job["status"], job["total"], job["succeeded"] + job["skipped"]


def test_direct_uploads_closed_at_once_all_complete_locally(stack):
    assert _rounds(stack.base_url) == [("completed", FILES, FILES)] * ROUNDS
    assert _cancelled(stack.base_url) == ("cancelled", FILES, FILES)


@pytest.mark.emulators
def test_direct_uploads_closed_at_once_all_complete_on_the_emulators(gcp_emulators, gcp_env, tmp_path):
    gcp_emulators.wipe(project=PROJECT, bucket=BUCKET)
    stack = Stack.on_free_ports(tmp_path / "data", env={**gcp_env, "PROGRESS_FLUSH_SECONDS": "0.3",
                                                        "PROCESSOR_CONCURRENCY": "2"})
    stack.start(timeout=120)
    try:
        assert _rounds(stack.base_url) == [("completed", FILES, FILES)] * ROUNDS
        assert _cancelled(stack.base_url) == ("cancelled", FILES, FILES)
    finally:
        stack.stop()
