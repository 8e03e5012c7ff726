"""Webhooks against a receiver on 127.0.0.1: signature, retries with backoff, the record on
the job, the final outcome, recovery after a restart, and SSRF refusal."""
from __future__ import annotations

import json
import time

import pytest

from imageflow import domain
from imageflow.messages import Result
from imageflow.safe_http import FetchPolicy, parse_networks
from services.interaction_manager.coordinator import Coordinator
from services.interaction_manager.webhooks import (
    SIGNATURE_HEADER,
    WebhookDispatcher,
    sign,
    verify,
)
from tests.peers_servers import WebhookReceiver

SECRET = "whsec-test-0123456789abcdef"


# Every connection these tests make must stay on 127.0.0.1 (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture
def settings(local_settings):
    return local_settings.with_overrides(webhook_backoff_seconds=0.1, webhook_max_attempts=3,
                                         public_base_url="https://imageflow.example")


def policy():
    return FetchPolicy(timeout=2.0, max_redirects=0, allow=parse_networks("127.0.0.1/32"),
                       hosts={"internal.test": ["10.9.8.7"]})


def finished_job(backends, url, status=domain.COMPLETED, secret=SECRET) -> domain.Job:
    job = domain.Job(job_id=domain.new_id(), status=status, total=1, succeeded=1, webhook_url=url,
                     webhook_secret=secret, webhook_status="pending", name="spring catalogue")
    backends.jobs.create_job(job, [])
    return job


def wait_status(backends, job_id, wanted, timeout=10.0) -> domain.Job:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = backends.jobs.get_job(job_id)
        if job.webhook_status == wanted:
            return job
        time.sleep(0.05)
    raise AssertionError(f"webhook_status is {job.webhook_status}, not {wanted}")


def test_signed_delivery_retried_with_backoff_until_accepted(settings, backends):
    receiver = WebhookReceiver(statuses=[500, 503])
    dispatcher = WebhookDispatcher(settings, backends.jobs, policy()).start()
    try:
        job = finished_job(backends, receiver.url("/hooks/imageflow"))
        dispatcher.schedule(job.job_id)
        calls = receiver.wait_for(3)
        job = wait_status(backends, job.job_id, "delivered")
    finally:
        dispatcher.stop()
        receiver.stop()
    for call in calls:
        assert call["path"] == "/hooks/imageflow"
        assert verify(SECRET, call["body"], call["headers"][SIGNATURE_HEADER])
        assert not verify("another-secret-0123456789", call["body"], call["headers"][SIGNATURE_HEADER])
        assert call["headers"]["X-ImageFlow-Delivery"] == job.job_id
        assert call["headers"]["X-ImageFlow-Event"] == "job.completed"
    body = json.loads(calls[-1]["body"])
    assert body["event"] == "job.completed" and body["job_id"] == job.job_id and body["status"] == "completed"
    assert body["report_url"] == f"https://imageflow.example/api/v1/jobs/{job.job_id}/report.csv"
    gaps = [b["at"] - a["at"] for a, b in zip(calls, calls[1:])]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2                        # 0.1 s, then 0.2 s: exponential
    assert [(a["attempt"], a["status_code"]) for a in job.webhook_attempts] == [(1, 500), (2, 503), (3, 200)]
    assert job.webhook_attempts[0]["error"] == "the receiver answered 500" and job.webhook_attempts[2]["error"] is None


def test_gives_up_after_the_last_attempt_and_records_it(settings, backends):
    receiver = WebhookReceiver(statuses=[500, 500, 500, 500])
    dispatcher = WebhookDispatcher(settings, backends.jobs, policy()).start()
    try:
        job = finished_job(backends, receiver.url("/h"))
        dispatcher.schedule(job.job_id)
        job = wait_status(backends, job.job_id, "failed")
        time.sleep(0.5)
        assert len(receiver.received) == 3
    finally:
        dispatcher.stop()
        receiver.stop()
    assert [a["status_code"] for a in job.webhook_attempts] == [500, 500, 500]


def test_webhook_to_a_private_address_is_refused_without_connecting(settings, backends):
    dispatcher = WebhookDispatcher(settings.with_overrides(webhook_max_attempts=1), backends.jobs, policy()).start()
    try:
        job = finished_job(backends, "http://internal.test/hook")
        dispatcher.schedule(job.job_id)
        job = wait_status(backends, job.job_id, "failed")
    finally:
        dispatcher.stop()
    [attempt] = job.webhook_attempts
    assert attempt["status_code"] is None and "10.9.8.7" in attempt["error"] and "private" in attempt["error"]


def test_recover_resumes_pending_webhooks_of_finished_jobs_only(settings, backends):
    receiver = WebhookReceiver()
    try:
        finished = finished_job(backends, receiver.url("/h"))
        running = domain.Job(job_id=domain.new_id(), status=domain.PROCESSING, total=1,
                             webhook_url=receiver.url("/h"), webhook_secret=SECRET, webhook_status="pending")
        backends.jobs.create_job(running, [])
        dispatcher = WebhookDispatcher(settings, backends.jobs, policy())
        assert dispatcher.recover() == 1
        dispatcher.start()
        wait_status(backends, finished.job_id, "delivered")
        dispatcher.stop()
    finally:
        receiver.stop()
    assert [json.loads(c["body"])["job_id"] for c in receiver.received] == [finished.job_id]
    assert backends.jobs.get_job(running.job_id).webhook_status == "pending"


def test_completion_of_a_job_triggers_its_webhook_through_the_coordinator(settings, backends):
    receiver = WebhookReceiver()
    dispatcher = WebhookDispatcher(settings, backends.jobs, policy()).start()
    coordinator = Coordinator(settings, backends.jobs, backends.bus, backends.blobs,
                              on_completed=dispatcher.on_completed)
    try:
        job = domain.Job(job_id=domain.new_id(), status=domain.PROCESSING, total=1, webhook_url=receiver.url("/h"),
                         webhook_secret=SECRET, webhook_status="pending", email="me@example.com")
        image = domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename="a.png",
                             input_path=f"{job.job_id}/input/a.png")
        backends.jobs.create_job(job, [image])
        coordinator.fold([Result(job_id=job.job_id, image_id=image.image_id, status="failed", error="corrupt")])
        [call] = receiver.wait_for(1)
        wait_status(backends, job.job_id, "delivered")
    finally:
        dispatcher.stop()
        receiver.stop()
    body = json.loads(call["body"])
    assert (body["status"], body["total"], body["failed"]) == ("failed", 1, 1)


def test_signature_rejects_old_timestamps():
    header = sign(SECRET, b"{}", 1000)
    assert verify(SECRET, b"{}", header, now=1100)
    assert not verify(SECRET, b"{}", header, now=1000 + 301)
    assert not verify(SECRET, b"{ }", header, now=1100)
    assert not verify(SECRET, b"{}", "garbage", now=1100)
