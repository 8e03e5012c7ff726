"""Reliability fixtures, and the recorder that turns each run into .test-artifacts/reliability.json.

Every test here gets ``record`` (a :class:`Record`): ``record.expect(condition, "what must
hold")`` asserts and notes what held; ``record.figure(name, value)`` keeps a measured figure.
After each test its outcome, duration, figures and held statements are written to
``.test-artifacts/reliability.json``, merged by test id with earlier runs (so the slow run
and the default run add up), and ``python -m tests.reliability.report`` renders
docs/reliability.md from that file. A test skipped in this run keeps its last real result.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.harness import FakeSendGrid

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = REPO_ROOT / ".test-artifacts" / "reliability.json"
SUITES = {"test_faults": "Fault injection (local stack)", "test_faults_emulators": "Fault injection (GCP emulators)",
          "test_load": "Load", "test_abuse": "Abuse", "test_fault_hooks": "Fault-injection hooks",
          "test_budgets": "Budgets"}


@dataclass
class Record:
    """What one test tried, what held and the figures it measured."""

    held: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    def expect(self, condition: bool, statement: str, detail: object = "") -> None:
        """Assert ``condition``; on success note ``statement`` as held."""
        assert condition, f"{statement} -- did not hold: {detail}" if detail != "" else statement
        if statement not in self.held:
            self.held.append(statement)

    def figure(self, name: str, value: object) -> None:
        self.figures[name] = value


_KEY = pytest.StashKey[Record]()


@pytest.fixture
def record(request) -> Record:
    rec = Record()
    request.node.stash[_KEY] = rec
    return rec


@pytest.fixture(scope="session")
def sendgrid():
    """A stand-in for SendGrid's v3 API on 127.0.0.1 that counts the mails per job."""
    server = FakeSendGrid().start()
    yield server
    server.stop()


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _load() -> dict:
    try:
        return json.loads(ARTIFACT.read_text())
    except (OSError, ValueError):
        return {"checks": {}}


def _save(entry: dict) -> None:
    data = _load()
    data.setdefault("checks", {})[entry["id"]] = entry
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    tmp = ARTIFACT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, ARTIFACT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup" and report.outcome == "passed":
        return
    if report.when == "teardown" and report.outcome == "passed":
        return
    xfail = hasattr(report, "wasxfail")
    if report.skipped and not xfail and item.nodeid in _load().get("checks", {}):
        return  # skipped in this run (e.g. slow without IMAGEFLOW_SLOW_TESTS): keep the last real result
    rec = item.stash.get(_KEY, Record())
    tried = " ".join((item.function.__doc__ or "").split())
    title = item.name.removeprefix("test_").replace("_", " ").replace("zz ", "").capitalize()
    module = item.module.__name__.rsplit(".", 1)[-1]
    failure = ""
    if xfail:
        failure = report.wasxfail.removeprefix("reason: ")
    elif report.skipped:
        failure = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if report.failed:
        failure = str(getattr(report.longrepr, "reprcrash", None) and report.longrepr.reprcrash.message
                      or report.longrepr)[:600]
    _save({
        "id": item.nodeid, "suite": SUITES.get(module, module), "title": title, "tried": tried,
        "outcome": ("xfailed" if report.skipped else "xpassed") if xfail
        else "error" if report.when == "teardown" else report.outcome,
        "failure": failure, "duration_s": round(report.duration, 1), "held": rec.held, "figures": rec.figures,
        "slow": item.get_closest_marker("slow") is not None,
        "run_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _git_commit(),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python "
                   f"{sys.version.split()[0]}",
        "command": ("IMAGEFLOW_SLOW_TESTS=1 " if os.environ.get("IMAGEFLOW_SLOW_TESTS") == "1" else "")
        + "pytest " + " ".join(item.config.invocation_params.args),
    })
