"""``./scripts.sh up`` (python -m devtools.stack up) heals like Kubernetes: a process that dies is restarted,
with a log line, and only ``down`` (or Ctrl-C) stops the stack."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from devtools.stack import REPO_ROOT, free_port


def _wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _pids(data_dir: Path) -> dict:
    try:
        return json.loads((data_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return {}


def _ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_process_that_dies_is_restarted_and_only_down_stops_the_stack(tmp_path):
    data_dir = tmp_path / "data"
    port, im_port = free_port(), free_port()
    env = {**os.environ, "IMAGEFLOW_DATA_DIR": str(data_dir), "IMAGEFLOW_PORT": str(port), "IM_PORT": str(im_port),
           "PROCESSOR_PORT": str(free_port()), "FUNCTION_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    out = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "devtools.stack", "up"], cwd=REPO_ROOT, env=env, stdout=out,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: "supervisor" in _pids(data_dir) and _ready(f"http://127.0.0.1:{im_port}/readyz"), 90,
              "the stack to come up")
        first = _pids(data_dir)["interaction-manager"]
        os.killpg(first, signal.SIGKILL)  # as a crash would
        second = _wait(lambda: _pids(data_dir).get("interaction-manager") not in (None, first)
                       and _pids(data_dir)["interaction-manager"], 30, "the restart")
        _wait(lambda: _ready(f"http://127.0.0.1:{im_port}/readyz"), 60, "the restarted manager to be ready")
        assert up.poll() is None, "the stack kept running"
        log = (tmp_path / "up.log").read_text()
        assert "interaction-manager exited with -9; restarting it in 1 s" in log
        assert f"interaction-manager restarted (pid {second}" in log
        down = subprocess.run([sys.executable, "-m", "devtools.stack", "down"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0
        assert _pids(data_dir) == {}, "every process stopped and the pid file removed"
        assert "restarting" not in (tmp_path / "up.log").read_text().split("stopping ImageFlow")[-1]
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGTERM)
            up.wait(timeout=60)
        out.close()
