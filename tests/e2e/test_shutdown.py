"""image-processor on SIGTERM: in-flight tasks finish within DRAIN_SECONDS, or are released
at once for another processor, never lost."""
from __future__ import annotations

import time

import requests

from devtools.stack import Stack
from tests.e2e.conftest import make_image, wait_for_job


def start(tmp_path, drain_seconds: float, delay: float) -> Stack:
    return Stack.on_free_ports(tmp_path / "data", env={
        "DRAIN_SECONDS": str(drain_seconds), "PROGRESS_FLUSH_SECONDS": "0.2", "ACK_DEADLINE_SECONDS": "60",
        "IMAGEFLOW_FAULTS": f"processor_delay_on=slow-,processor_delay_seconds={delay}"}).start()


def submit_slow(stack: Stack) -> str:
    response = requests.post(f"{stack.base_url}/api/v1/jobs", timeout=30,
                             files=[("files", ("slow-photo.png", make_image("PNG", (300, 200)), "image/png"))])
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def wait_in_flight(stack: Stack, timeout: float = 30) -> None:
    """Until the processor has picked the task up: it logs the fault delay that then keeps
    the task in flight (a fixed wait was too short on a loaded machine)."""
    log = stack.log_dir / "image-processor.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "fault injection: " in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"the processor did not start the task within {timeout} s")


def test_sigterm_lets_the_in_flight_task_finish(tmp_path):
    stack = start(tmp_path, drain_seconds=20, delay=3)
    try:
        job_id = submit_slow(stack)
        wait_in_flight(stack)
        started = time.monotonic()
        assert stack.stop_process("image-processor", timeout=30) == 0
        assert time.monotonic() - started >= 1, "the processor waited for its task"
        job = wait_for_job(stack.base_url, job_id, timeout=30)
        assert (job["status"], job["succeeded"]) == ("completed", 1)
    finally:
        stack.stop()


def test_sigterm_past_the_drain_releases_the_task_to_another_processor(tmp_path):
    stack = start(tmp_path, drain_seconds=0.5, delay=4)
    try:
        job_id = submit_slow(stack)
        wait_in_flight(stack)
        started = time.monotonic()
        assert stack.stop_process("image-processor", timeout=30) == 0
        assert time.monotonic() - started < 4, "stopped after the drain, not after the task"
        status = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
        assert status["succeeded"] == 0
        stack.start_process("image-processor")  # released at once: no wait for the 60 s ack deadline
        job = wait_for_job(stack.base_url, job_id, timeout=40)
        assert (job["status"], job["succeeded"]) == ("completed", 1)
    finally:
        stack.stop()
