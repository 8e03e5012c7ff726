"""The completion email's zip link and "kept until" sentence (issue 18), end to end: the
interaction manager's ``job.completed`` (built from its settings, JOB_RETENTION_DAYS included)
is POSTed as a Pub/Sub CloudEvent to the real function running under functions-framework, and
SendGrid is a local stand-in of its v3 HTTP API."""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from devtools.stack import free_port
from functions.email_notifier import main as fn
from imageflow import domain
from imageflow.settings import Settings
from services.interaction_manager import lifecycle
from tests.integration.test_email_function import SendGridStandIn

REPO = Path(__file__).resolve().parents[2]
BASE = "https://photos.example"


@pytest.fixture(scope="module")
def function(tmp_path_factory):
    """functions-framework serving functions/email_notifier/main.py, sending through a SendGrid stand-in."""
    sendgrid = SendGridStandIn([])
    port = free_port()
    data = tmp_path_factory.mktemp("email-data")
    env = {**os.environ, "IMAGEFLOW_DATA_DIR": str(data), "SENDGRID_API_KEY": "SG.test-key",
           "SENDGRID_API_HOST": sendgrid.url, "EMAIL_FROM": "ImageFlow <robot@photos.example>"}
    env.pop("IMAGEFLOW_BACKEND", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "functions-framework"), "--source",
                             str(REPO / "functions" / "email_notifier" / "main.py"), "--target", "notify",
                             "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"functions-framework did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", sendgrid
    os.killpg(proc.pid, 15)
    proc.wait(timeout=10)
    sendgrid.close()


def announce(job: domain.Job, retention_days: str) -> dict:
    """The manager's job.completed for ``job`` with JOB_RETENTION_DAYS as given."""
    settings = Settings.from_env({"PUBLIC_BASE_URL": BASE, "JOB_RETENTION_DAYS": retention_days})
    return lifecycle.completed_event(job, settings).to_dict()


def mail_of(function, event: dict) -> tuple[str, str]:
    """POST ``event`` as Eventarc does (binary CloudEvent of a Pub/Sub message); the text and HTML
    SendGrid received."""
    url, sendgrid = function
    before = len(sendgrid.requests)
    body = {"message": {"data": base64.b64encode(json.dumps(event).encode()).decode(), "messageId": "1"},
            "subscription": "projects/p/subscriptions/eventarc-imageflow-notifications"}
    answer = requests.post(url, json=body, timeout=30, headers={
        "ce-specversion": "1.0", "ce-id": event["job_id"], "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/imageflow-notifications"})
    assert answer.status_code == 200, answer.text
    [(_, _, mail)] = sendgrid.requests[before:]
    parts = {c["type"]: c["value"] for c in mail["content"]}
    return parts["text/plain"], parts["text/html"]


def job(**fields) -> domain.Job:
    return domain.Job(job_id=domain.new_id(), email="me@example.com", **fields)


def in_days(days: int) -> str:
    moment = datetime.now(timezone.utc) + timedelta(days=days)
    return f"{moment.day} {moment:%B %Y}"


@pytest.mark.parametrize("fields", [dict(status=domain.COMPLETED, total=3, succeeded=3),
                                    dict(status=domain.COMPLETED_WITH_ERRORS, total=3, succeeded=2, failed=1),
                                    dict(status=domain.CANCELLED, total=9, succeeded=2, skipped=7)])
def test_the_email_links_the_zip_and_says_until_when_results_are_kept(function, fields):
    done = job(**fields)
    text, page = mail_of(function, announce(done, "14"))
    zip_url = f"{BASE}/api/v1/jobs/{done.job_id}/archive.zip"
    kept = f"Your results are kept for 14 days, until {in_days(14)}."
    assert f"Download them all in one zip file:\n{zip_url}" in text
    assert f'<a href="{zip_url}">Download them all in one zip file</a>' in page
    assert kept in text and kept in page
    assert f"{BASE}/jobs/{done.job_id}" in text  # the results page stays the first link


def test_a_job_with_nothing_to_download_gets_neither(function):
    failed = job(status=domain.FAILED, total=2, failed=2)
    text, page = mail_of(function, announce(failed, "14"))
    assert "None of your 2 images could be processed" in text
    assert "archive.zip" not in text + page and "kept" not in text + page


def test_without_retention_the_email_promises_no_date(function):
    kept_forever = job(status=domain.COMPLETED, total=1, succeeded=1)
    text, page = mail_of(function, announce(kept_forever, "0"))
    assert "archive.zip" in text and "kept" not in text + page


def test_a_retried_run_mailed_later_counts_the_days_left():
    """A job created 10 days ago and retried today: 4 of its 14 days are left, same date."""
    created = datetime.now(timezone.utc) - timedelta(days=10)
    expires = domain.retention_expiry(created.isoformat().replace("+00:00", "Z"), 14)
    assert fn.retention_line(expires) == f"Your results are kept for 4 days, until {in_days(4)}."
    assert fn.retention_line(domain.retention_expiry(domain.utcnow(), 1), datetime.now(timezone.utc)
                             + timedelta(hours=23, minutes=30)).startswith("Your results are kept until ")
    assert fn.retention_line(None) == "" and fn.retention_line("not a date") == ""
