"""Webhooks against a receiver on 127.0.0.1, delivered by the webhook sender subscribed to the
notifications topic: signature, retries with backoff through the bus, the record on the job,
the final outcome, once-only delivery across replicas, dead-lettering, and SSRF refusal."""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import pytest

from imageflow import domain
from imageflow.messages import Result
from imageflow.safe_http import FetchPolicy, parse_networks
from services.interaction_manager.coordinator import Coordinator
from services.interaction_manager.webhooks import (
    SIGNATURE_HEADER,
    WebhookSender,
    sign,
    verify,
)
from tests.http_servers import WebhookReceiver

SECRET = "whsec-test-0123456789abcdef"


# Every connection these tests make must stay on 127.0.0.1 (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture
def settings(local_settings):
    return local_settings.with_overrides(webhook_backoff_seconds=0.1, webhook_max_attempts=3,
                                         webhook_timeout_seconds=1.0, public_base_url="https://imageflow.example")


def policy():
    return FetchPolicy(timeout=2.0, max_redirects=0, allow=parse_networks("127.0.0.1/32"),
                       hosts={"internal.test": ["10.9.8.7"]})


@contextmanager
def running_sender(settings, backends, jobs=None, replicas=1):
    """The interaction manager's two webhook subscribers, as ``main`` starts them (``replicas``
    times, as with several interaction-manager pods)."""
    topics = settings.topics
    subscribers = []
    for _ in range(replicas):
        sender = WebhookSender(settings, jobs or backends.jobs, policy())
        subscribers.append(backends.bus.subscribe(topics.webhooks_sub, sender.handle, max_messages=4,
                                                  ack_deadline_seconds=60))
        dead_letters = WebhookSender(settings, backends.jobs, policy())
        subscribers.append(backends.bus.subscribe(topics.webhooks_dlq_sub, dead_letters.handle_dead_letter,
                                                  max_messages=4, ack_deadline_seconds=60))
    try:
        yield
    finally:
        for subscriber in subscribers:
            subscriber.stop(timeout=5)


def finished_job(backends, url, status=domain.COMPLETED, secret=SECRET) -> domain.Job:
    job = domain.Job(job_id=domain.new_id(), status=status, total=1, succeeded=1, webhook_url=url,
                     webhook_secret=secret, webhook_status="pending", name="spring catalogue")
    backends.jobs.create_job(job, [])
    return job


def announce(settings, backends, job) -> None:
    """What Coordinator.announce publishes when the job finishes."""
    event = domain.completed_event(job, settings.public_base_url)
    backends.bus.publish(settings.topics.notifications, event.encode(), {"job_id": job.job_id})


def wait_status(backends, job_id, wanted, timeout=10.0) -> domain.Job:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = backends.jobs.get_job(job_id)
        if job.webhook_status == wanted:
            return job
        time.sleep(0.05)
    raise AssertionError(f"webhook_status is {job.webhook_status}, not {wanted}")


def wait_settled(settings, backends, timeout=10.0) -> None:
    """Until the webhooks subscription holds no message (every delivery acked)."""
    end = time.monotonic() + timeout
    while backends.bus.backlog(settings.topics.webhooks_sub) and time.monotonic() < end:
        time.sleep(0.05)
    assert backends.bus.backlog(settings.topics.webhooks_sub) == 0


def test_signed_delivery_retried_with_backoff_until_accepted(settings, backends):
    receiver = WebhookReceiver(statuses=[500, 503])
    try:
        with running_sender(settings, backends):
            job = finished_job(backends, receiver.url("/hooks/imageflow"))
            announce(settings, backends, job)
            calls = receiver.wait_for(3)
            job = wait_status(backends, job.job_id, "delivered")
            wait_settled(settings, backends)
    finally:
        receiver.stop()
    for call in calls:
        assert call["path"] == "/hooks/imageflow"
        assert verify(SECRET, call["body"], call["headers"][SIGNATURE_HEADER])
        assert not verify("another-secret-0123456789", call["body"], call["headers"][SIGNATURE_HEADER])
        assert call["headers"]["X-ImageFlow-Delivery"] == job.job_id
        assert call["headers"]["X-ImageFlow-Event"] == "job.completed"
    body = json.loads(calls[-1]["body"])
    assert body["event"] == "job.completed" and body["job_id"] == job.job_id and body["status"] == "completed"
    assert body["results_url"] == f"https://imageflow.example/jobs/{job.job_id}"
    assert body["report_url"] == f"https://imageflow.example/api/v1/jobs/{job.job_id}/report.csv"
    gaps = [b["at"] - a["at"] for a, b in zip(calls, calls[1:])]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2                        # 0.1 s, then 0.2 s: exponential
    assert [(a["attempt"], a["status_code"]) for a in job.webhook_attempts] == [(1, 500), (2, 503), (3, 200)]
    assert job.webhook_attempts[0]["error"] == "the receiver answered 500" and job.webhook_attempts[2]["error"] is None


def test_gives_up_after_the_last_attempt_and_records_it(settings, backends):
    receiver = WebhookReceiver(statuses=[500, 500, 500, 500])
    try:
        with running_sender(settings, backends):
            job = finished_job(backends, receiver.url("/h"))
            announce(settings, backends, job)
            job = wait_status(backends, job.job_id, "failed")
            wait_settled(settings, backends)
            time.sleep(0.5)
            assert len(receiver.received) == 3
    finally:
        receiver.stop()
    assert [a["status_code"] for a in job.webhook_attempts] == [500, 500, 500]


def test_webhook_to_a_private_address_is_refused_without_connecting(settings, backends):
    with running_sender(settings.with_overrides(webhook_max_attempts=1), backends):
        job = finished_job(backends, "http://internal.test/hook")
        announce(settings, backends, job)
        job = wait_status(backends, job.job_id, "failed")
    [attempt] = job.webhook_attempts
    assert attempt["status_code"] is None and "10.9.8.7" in attempt["error"] and "private" in attempt["error"]


def test_two_replicas_and_a_repeated_announcement_deliver_once(settings, backends):
    receiver = WebhookReceiver()
    try:
        with running_sender(settings, backends, replicas=2):
            jobs = [finished_job(backends, receiver.url("/h")) for _ in range(5)]
            for job in jobs:
                announce(settings, backends, job)
                announce(settings, backends, job)  # e.g. the sweep re-announced it after a crash
            for job in jobs:
                wait_status(backends, job.job_id, "delivered")
            wait_settled(settings, backends)
            time.sleep(0.3)
    finally:
        receiver.stop()
    delivered = sorted(json.loads(c["body"])["job_id"] for c in receiver.received)
    assert delivered == sorted(j.job_id for j in jobs)
    for job in jobs:
        assert len(backends.jobs.get_job(job.job_id).webhook_attempts) == 1


def test_concurrent_attempts_claim_the_job_so_only_one_posts(settings, backends):
    """Two replicas handed the same job.completed at the same moment (a redelivery racing a
    slow attempt): the conditional claim lets one post; the other is told when to look again."""
    receiver = WebhookReceiver()
    try:
        job = finished_job(backends, receiver.url("/h"))
        event = domain.completed_event(job, settings.public_base_url)
        senders = [WebhookSender(settings, backends.jobs, policy()) for _ in range(4)]
        barrier = threading.Barrier(len(senders))
        waits = []

        def race(sender):
            barrier.wait()
            waits.append(sender.deliver(event))

        threads = [threading.Thread(target=race, args=(s,)) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        receiver.stop()
    assert len(receiver.received) == 1
    stored = backends.jobs.get_job(job.job_id)
    assert stored.webhook_status == "delivered" and len(stored.webhook_attempts) == 1
    assert waits.count(None) >= 1


def test_a_job_without_a_pending_webhook_is_acked_without_posting(settings, backends):
    receiver = WebhookReceiver()
    try:
        with running_sender(settings, backends):
            running = domain.Job(job_id=domain.new_id(), status=domain.PROCESSING, total=1,
                                 webhook_url=receiver.url("/h"), webhook_secret=SECRET, webhook_status="pending")
            no_hook = domain.Job(job_id=domain.new_id(), status=domain.COMPLETED, total=1, succeeded=1)
            for job in (running, no_hook):
                backends.jobs.create_job(job, [])
                announce(settings, backends, job)
            announce(settings, backends, domain.Job(job_id=domain.new_id()))  # deleted since
            wait_settled(settings, backends)
    finally:
        receiver.stop()
    assert receiver.received == []
    assert backends.jobs.get_job(running.job_id).webhook_status == "pending"


class BrokenJobStore:
    """The job store as the webhook handler sees it during an outage."""

    def get_job(self, job_id):
        raise RuntimeError("job store unavailable")


def test_a_webhook_the_handler_keeps_failing_on_is_dead_lettered_and_marked_failed(settings, backends):
    job = finished_job(backends, "http://127.0.0.1:9/never")
    with running_sender(settings, backends, jobs=BrokenJobStore()):
        announce(settings, backends, job)
        job = wait_status(backends, job.job_id, "failed", timeout=20)
    [attempt] = job.webhook_attempts
    limit = backends.bus.subscription_config(settings.topics.webhooks_sub).max_delivery_attempts
    assert attempt["error"] == (f"gave up after {limit} deliveries: "
                                "the webhook could not be attempted")


def test_completion_of_a_job_triggers_its_webhook_through_the_coordinator(settings, backends):
    receiver = WebhookReceiver()
    coordinator = Coordinator(settings, backends.jobs, backends.bus, backends.blobs)
    try:
        with running_sender(settings, backends):
            job = domain.Job(job_id=domain.new_id(), status=domain.PROCESSING, total=1,
                             webhook_url=receiver.url("/h"), webhook_secret=SECRET, webhook_status="pending",
                             email="me@example.com")
            image = domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename="a.png",
                                 input_path=f"{job.job_id}/input/a.png")
            backends.jobs.create_job(job, [image])
            coordinator.fold([Result(job_id=job.job_id, image_id=image.image_id, status="failed", error="corrupt")])
            [call] = receiver.wait_for(1)
            wait_status(backends, job.job_id, "delivered")
    finally:
        receiver.stop()
    body = json.loads(call["body"])
    assert (body["status"], body["total"], body["failed"]) == ("failed", 1, 1)
    # the email function's subscription got the same message
    assert backends.bus.backlog(settings.topics.notifications_sub) == 1


def test_signature_rejects_old_timestamps():
    header = sign(SECRET, b"{}", 1000)
    assert verify(SECRET, b"{}", header, now=1100)
    assert not verify(SECRET, b"{}", header, now=1000 + 301)
    assert not verify(SECRET, b"{ }", header, now=1100)
    assert not verify(SECRET, b"{}", "garbage", now=1100)


# -- a retry while the previous run's webhook is still being delivered (issue 22) ------------
@pytest.fixture(params=["local", pytest.param("gcp", marks=pytest.mark.emulators)])
def stack(request, local_settings, tmp_path):
    """Settings, backends, the image-handler app and the coordinator over the local adapters or
    the emulators (Firestore, Pub/Sub, fake-gcs-server). Run 0's second webhook attempt waits
    2 s (Pub/Sub holds a message back in whole seconds), time enough to retry before it."""
    from imageflow import topology
    from imageflow.bootstrap import Backends, make_backends
    from services.image_handler.app import create_app

    overrides = dict(webhook_backoff_seconds=2.0, webhook_max_attempts=3, webhook_timeout_seconds=2.0,
                     public_base_url="https://imageflow.example")
    if request.param == "gcp":
        settings = request.getfixturevalue("gcp_settings").with_overrides(data_dir=tmp_path / "data", **overrides)
        backends = Backends(request.getfixturevalue("gcs_blobstore"), request.getfixturevalue("firestore_jobstore"),
                            request.getfixturevalue("pubsub_bus"))
        topology.ensure(backends.bus, settings)
    else:
        settings = local_settings.with_overrides(**overrides)
        backends = make_backends(settings)
    app = create_app({"data_dir": settings.data_dir, "public_base_url": settings.public_base_url}, backends=backends)
    yield settings, backends, app.test_client(), Coordinator(settings, backends.jobs, backends.bus, backends.blobs)
    if request.param == "local":
        backends.close()


def wait_for(predicate, what: str, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_retry_keeps_delivering_the_previous_runs_webhook_once_per_run(stack):
    """Run 0's webhook gets a 500; the client retries the job at once. Run 0's delivery goes on
    until the receiver takes it, run 1's is delivered too: one delivery per run (two sender
    replicas), and the job's webhook_attempts show both runs' attempts, labelled by run."""
    settings, backends, client, coordinator = stack
    receiver = WebhookReceiver(statuses=[500])
    try:
        with running_sender(settings, backends, replicas=2):
            job = domain.Job(job_id=domain.new_id(), status=domain.PROCESSING, total=1, webhook_url=receiver.url("/h"),
                             webhook_secret=SECRET, webhook_status="pending", name="spring catalogue")
            image = domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename="a.png",
                                 input_path=f"{job.job_id}/input/a.png")
            backends.jobs.create_job(job, [image])
            coordinator.fold([Result(job_id=job.job_id, image_id=image.image_id, status="failed", error="corrupt")])
            run0_completed_at = backends.jobs.get_job(job.job_id).completed_at
            wait_for(lambda: backends.jobs.get_job(job.job_id).webhook_attempts, "run 0's first attempt")

            answer = client.post(f"/api/v1/jobs/{job.job_id}/retry")     # at once, run 0's webhook still pending
            assert answer.status_code == 202, answer.get_json()
            assert answer.get_json()["run"] == 1
            coordinator.fan_out(job.job_id)
            coordinator.fold([Result(job_id=job.job_id, image_id=image.image_id, status="succeeded",
                                     output_path=f"{job.job_id}/output/a.webp", content_type="image/webp",
                                     width=10, height=10, bytes=10)])

            def delivered_runs():
                with receiver.lock:
                    return {c["headers"]["X-ImageFlow-Delivery"] for c in receiver.received if c["status"] == 200}
            wait_for(lambda: delivered_runs() >= {job.job_id, f"{job.job_id}.1"},
                     "run 0's and run 1's webhooks to be delivered", timeout=45)

            def both_settled():
                view = client.get(f"/api/v1/jobs/{job.job_id}").get_json()
                return view if all(r["status"] != "pending" for r in view["webhook_runs"]) else None
            view = wait_for(both_settled, "both runs' webhooks to settle")
            time.sleep(0.5)  # a duplicate would be posted now, if a claim let one through
            calls = list(receiver.received)
    finally:
        receiver.stop()
    assert view["run"] == 1 and view["status"] == "completed"
    assert view["webhook_runs"] == [{"run": 0, "status": "delivered", "reason": None, "attempts": 2},
                                    {"run": 1, "status": "delivered", "reason": None, "attempts": 1}]
    assert view["webhook_status"] == "delivered"
    attempts = sorted((a["run"], a["attempt"], a["status_code"]) for a in view["webhook_attempts"])
    assert attempts == [(0, 1, 500), (0, 2, 200), (1, 1, 200)]
    delivered = sorted((c["headers"]["X-ImageFlow-Delivery"], c["status"]) for c in calls)
    assert delivered == sorted([(job.job_id, 500), (job.job_id, 200), (f"{job.job_id}.1", 200)])
    bodies = {c["headers"]["X-ImageFlow-Delivery"]: json.loads(c["body"]) for c in calls if c["status"] == 200}
    for call in calls:
        assert verify(SECRET, call["body"], call["headers"][SIGNATURE_HEADER])
    run0, run1 = bodies[job.job_id], bodies[f"{job.job_id}.1"]
    assert (run0["run"], run0["status"], run0["failed"], run0["completed_at"]) == (0, "failed", 1, run0_completed_at)
    assert (run1["run"], run1["status"], run1["succeeded"]) == (1, "completed", 1)
