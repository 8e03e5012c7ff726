"""The manager's ``job.completed`` (services.interaction_manager.lifecycle): its zip link is signed
when keys are on, for as long as the job's files are kept, and left alone when they are off."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

from imageflow import domain
from imageflow.links import LinkSigner
from imageflow.settings import Settings
from services.interaction_manager import lifecycle, webhooks

BASE = "https://imageflow.example"
KEYS = {"PUBLIC_BASE_URL": BASE, "API_KEYS": "alice=alice-key-0123456789"}
CREATED = "2026-03-01T10:00:00.000Z"
COMPLETED = "2026-03-02T12:30:00.000Z"


def done_job(**fields) -> domain.Job:
    values = dict(job_id=domain.new_id(), status=domain.COMPLETED, total=1, succeeded=1, created_at=CREATED,
                  completed_at=COMPLETED)
    return domain.Job(**{**values, **fields})


def expires_of(url: str) -> datetime:
    return datetime.fromtimestamp(int(dict(parse_qsl(urlsplit(url).query))["expires"]), timezone.utc)


def test_keys_off_leave_the_zip_link_unsigned():
    job = done_job()
    event = lifecycle.completed_event(job, Settings.from_env({"PUBLIC_BASE_URL": BASE}))
    assert event.archive_url == f"{BASE}/api/v1/jobs/{job.job_id}/archive.zip"


def test_the_link_lasts_until_the_retention_deletes_the_files():
    job = done_job()
    settings = Settings.from_env({**KEYS, "JOB_RETENTION_DAYS": "7"})
    event = lifecycle.completed_event(job, settings)
    assert expires_of(event.archive_url) == datetime(2026, 3, 8, 10, 0, tzinfo=timezone.utc)
    assert event.expires_at == "2026-03-08T10:00:00.000Z", "the email's 'kept until' date is the same moment"
    path = urlsplit(event.archive_url).path
    assert LinkSigner.from_settings(settings).verify(path, dict(parse_qsl(urlsplit(event.archive_url).query)),
                                                     now=datetime(2026, 3, 8, 9, 59, tzinfo=timezone.utc).timestamp())


def test_kept_until_deleted_the_link_lasts_notification_link_days_from_completion():
    job = done_job()
    default = lifecycle.completed_event(job, Settings.from_env({**KEYS, "JOB_RETENTION_DAYS": "0"}))
    assert expires_of(default.archive_url) == datetime(2026, 3, 2, 12, 30, tzinfo=timezone.utc) + timedelta(days=30)
    longer = lifecycle.completed_event(job, Settings.from_env({**KEYS, "JOB_RETENTION_DAYS": "0",
                                                               "NOTIFICATION_LINK_DAYS": "90"}))
    assert expires_of(longer.archive_url) == datetime(2026, 3, 2, 12, 30, tzinfo=timezone.utc) + timedelta(days=90)


def test_no_zip_link_to_sign_when_nothing_succeeded():
    event = lifecycle.completed_event(done_job(status=domain.FAILED, succeeded=0, failed=1), Settings.from_env(KEYS))
    assert event.archive_url == ""


def test_the_webhook_built_from_the_job_carries_the_same_signed_link():
    """A webhook sent from the stored job (no event at hand) links the zip exactly as the email does."""
    job = done_job()
    settings = Settings.from_env(KEYS)
    body = json.loads(webhooks.payload(job, None, settings))
    assert body["archive_url"] == lifecycle.completed_event(job, settings).archive_url
    assert "sig=" in body["archive_url"]
