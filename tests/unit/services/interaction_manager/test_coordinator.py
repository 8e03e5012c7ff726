"""The coordinator's rules on in-memory ports: fan-out once, fold results, announce once,
release a failed announcement, repair after a crash, count the outstanding tasks."""
from __future__ import annotations

from dataclasses import replace

import pytest

from imageflow import domain
from imageflow.messages import JobCompleted, JobSubmitted, Result, Task
from imageflow.settings import Settings
from services.interaction_manager.coordinator import Coordinator
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeJobStore, FakeMessage

SETTINGS = Settings(public_base_url="https://imageflow.example")
TOPICS = SETTINGS.topics


@pytest.fixture
def jobs():
    return FakeJobStore()


@pytest.fixture
def bus():
    return FakeBus()


@pytest.fixture
def coordinator(jobs, bus):
    return Coordinator(SETTINGS, jobs, bus, FakeBlobStore())


def make_job(jobs, n=2, **fields) -> tuple[domain.Job, list[domain.Image]]:
    job = domain.Job(job_id=domain.new_id(), total=n, operations=[{"op": "grayscale"}], email="me@example.com",
                     **fields)
    images = [domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename=f"photo {i}.JPG",
                           input_path=f"{job.job_id}/input/x{i}") for i in range(n)]
    jobs.create_job(job, images)
    return job, images


def ok(image):
    return Result(job_id=image.job_id, image_id=image.image_id, status="succeeded", output_path="o",
                  content_type="image/png", width=1, height=1, bytes=1)


def bad(image):
    return Result(job_id=image.job_id, image_id=image.image_id, status="failed", error="corrupt",
                  error_code="corrupt")


def test_job_submitted_fans_out_one_task_per_image_once(coordinator, jobs, bus):
    job, images = make_job(jobs, n=3)
    message = FakeMessage(JobSubmitted(job_id=job.job_id).encode())
    coordinator.handle_job_submitted(message)
    assert message.acked
    tasks = bus.messages(TOPICS.tasks, Task)
    assert [t.image_id for t in tasks] == [i.image_id for i in images]
    assert tasks[0].output_path == f"{job.job_id}/output/{images[0].image_id}-photo_0"
    assert tasks[0].operations == [{"op": "grayscale"}]
    assert [attrs for _, attrs in bus.published[TOPICS.tasks]] == [{"job_id": job.job_id}] * 3
    stored = jobs.get_job(job.job_id)
    assert (stored.status, stored.tasks_published) == (domain.PROCESSING, True)
    coordinator.handle_job_submitted(FakeMessage(JobSubmitted(job_id=job.job_id).encode()))  # redelivered
    assert len(bus.published[TOPICS.tasks]) == 3


def test_a_malformed_or_unknown_job_submitted_publishes_nothing(coordinator, bus):
    garbage = FakeMessage(b"not json")
    coordinator.handle_job_submitted(garbage)
    assert garbage.acked and not bus.published
    assert coordinator.fan_out(domain.new_id()) == 0 and not bus.published


def test_results_complete_the_job_and_announce_it_once(coordinator, jobs, bus):
    job, images = make_job(jobs, n=2)
    coordinator.fold([ok(images[0])])
    assert bus.published[TOPICS.notifications] == []
    coordinator.fold([bad(images[1]), ok(images[0])])
    coordinator.fold([bad(images[1])])  # a duplicate after completion
    [event] = bus.messages(TOPICS.notifications, JobCompleted)
    assert event == JobCompleted(job_id=job.job_id, status=domain.COMPLETED_WITH_ERRORS, total=2, succeeded=1,
                                 failed=1, email="me@example.com",
                                 results_url=f"https://imageflow.example/jobs/{job.job_id}",
                                 bytes_out=1,  # the savings: one output of 1 byte, inputs of unknown size
                                 archive_url=f"https://imageflow.example/api/v1/jobs/{job.job_id}/archive.zip",
                                 expires_at=domain.retention_expiry(job.created_at, 30))  # JOB_RETENTION_DAYS
    stored = jobs.get_job(job.job_id)
    assert stored.notified_at and stored.completion_message_id and (stored.succeeded, stored.failed) == (1, 1)
    assert jobs.get_image(job.job_id, images[1].image_id).error_code == "corrupt"


def test_a_failed_announcement_releases_its_claim_for_the_next_try(coordinator, jobs, bus):
    job, [image] = make_job(jobs, n=1)
    bus.fail_topics.add(TOPICS.notifications)
    with pytest.raises(Exception):
        coordinator.fold([ok(image)])
    assert jobs.get_job(job.job_id).notified_at is None
    bus.fail_topics.clear()
    assert coordinator.announce(jobs.get_job(job.job_id)) is True
    assert len(bus.published[TOPICS.notifications]) == 1


def test_a_dead_lettered_task_becomes_a_failed_image_with_its_code(coordinator, jobs):
    job, [image] = make_job(jobs, n=1)
    task = Task(job_id=job.job_id, image_id=image.image_id, input_path=image.input_path, output_path="o")
    letter = FakeMessage(task.encode(), {"CloudPubSubDeadLetterSourceDeliveryCount": "5"})
    result = coordinator.dead_letter_result(letter)
    assert (result.status, result.error_code) == ("failed", "worker_crashed") and "after 5 attempts" in result.error
    assert not letter.acked  # the batcher acks it once folded
    coordinator.fold([result])
    assert jobs.get_job(job.job_id).status == domain.FAILED


def test_sweep_republishes_a_claim_never_published_and_fans_out_stuck_jobs(coordinator, jobs, bus):
    claimed, [image] = make_job(jobs, n=1)
    jobs.record_results([ok(image)])
    jobs.transition(claimed.job_id, domain.mark_notified("2000-01-01T00:00:00.000Z"))  # crashed right after
    stuck, _ = make_job(jobs, n=2, created_at="2000-01-01T00:00:00.000Z")
    assert coordinator.sweep() == 2
    assert [e.job_id for e in bus.messages(TOPICS.notifications, JobCompleted)] == [claimed.job_id]
    assert len(bus.published[TOPICS.tasks]) == 2 and jobs.get_job(stuck.job_id).status == domain.PROCESSING
    assert coordinator.sweep() == 0


def test_outstanding_tasks_count_every_job_in_progress(coordinator, jobs):
    for _ in range(7):
        job, images = make_job(jobs, n=3, status=domain.PROCESSING, created_at="2026-01-01T00:00:00.000Z")
        jobs.record_results([ok(images[0])])
    make_job(jobs, n=5)  # queued: not published yet
    assert coordinator.outstanding_tasks() == 7 * 2


def test_outstanding_tasks_read_the_counter_without_listing_jobs(coordinator, jobs, monkeypatch):
    job, images = make_job(jobs, n=4, status=domain.PROCESSING)
    jobs.record_results([ok(images[0]), ok(images[0])])
    monkeypatch.setattr(jobs, "list_jobs", lambda **kw: pytest.fail("/outstanding listed the jobs"))
    assert coordinator.outstanding_tasks() == 3


def test_the_sweep_corrects_a_drift_seen_twice_and_logs_it(coordinator, jobs, caplog):
    job, images = make_job(jobs, n=4, status=domain.PROCESSING)
    jobs.outstanding -= 4  # the job's share lost (say, its document deleted by a Firestore TTL and restored)
    assert coordinator.repair_outstanding() == 0       # seen once: it may be a write racing the scan
    assert coordinator.outstanding_tasks() == 0
    assert coordinator.repair_outstanding() == 4       # seen again, the same: corrected
    assert coordinator.outstanding_tasks() == 4
    assert "outstanding-task counter drifted: it read 0, the jobs add up to 4" in caplog.text
    assert coordinator.repair_outstanding() == 0 and coordinator.repair_outstanding() == 0


def test_the_sweep_leaves_a_counter_that_moves_during_its_scan(coordinator, jobs, monkeypatch):
    job, images = make_job(jobs, n=2, status=domain.PROCESSING)
    jobs.outstanding += 5                              # reads 7, the jobs add up to 2
    assert coordinator.repair_outstanding() == 0       # drift -5, seen once
    real_scan = jobs.list_jobs

    def scan_while_results_arrive(**kw):
        jobs.outstanding -= 1  # a result folded meanwhile
        return real_scan(**kw)

    monkeypatch.setattr(jobs, "list_jobs", scan_while_results_arrive)
    assert coordinator.repair_outstanding() == 0       # the counter moved: not trusted this time
    monkeypatch.setattr(jobs, "list_jobs", real_scan)
    assert jobs.outstanding == 5                       # the scan read the jobs twice (processing, open)
    assert coordinator.repair_outstanding() == 0       # drift -3 now: not the one seen before
    assert coordinator.repair_outstanding() == -3      # seen twice: corrected
    assert coordinator.outstanding_tasks() == 2


def test_with_keys_on_the_announced_zip_link_is_signed_until_the_files_are_deleted(jobs, bus):
    """What the email and the webhook pass on opens without a key, at the image-handler, until
    JOB_RETENTION_DAYS after creation; a link that is not the job's zip does not verify."""
    from datetime import datetime
    from urllib.parse import parse_qsl, urlsplit

    from services.image_handler.auth import Auth

    keyed = Settings.from_env({"PUBLIC_BASE_URL": "https://imageflow.example", "API_KEYS": "alice=alice-key-0123456789"})
    job, [image] = make_job(jobs, n=1)
    Coordinator(keyed, jobs, bus, FakeBlobStore()).fold([ok(image)])
    [event] = bus.messages(TOPICS.notifications, JobCompleted)
    link = urlsplit(event.archive_url)
    args = dict(parse_qsl(link.query))
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"https://imageflow.example/api/v1/jobs/{job.job_id}/archive.zip"
    expiry = datetime.fromisoformat(domain.retention_expiry(job.created_at, 30).replace("Z", "+00:00")).timestamp()
    assert int(args["expires"]) == int(expiry)
    handler = Auth.from_settings(keyed)
    assert handler.verify_link(link.path, args)
    assert not handler.verify_link(f"/api/v1/jobs/{domain.new_id()}/archive.zip", args)
    assert not handler.verify_link(link.path, args, now=expiry + 1)
    assert event.results_url == f"https://imageflow.example/jobs/{job.job_id}"  # the page is not a download


def test_a_retry_between_a_runs_end_and_its_announcement_leaves_the_new_run_announceable(coordinator, jobs, bus):
    """Run 0 finishes; a retry starts run 1 before the manager announces run 0. The stale
    announcement must not claim run 1's ``notified_at`` (run 1 would never be announced)."""
    job, [image] = make_job(jobs, n=1)
    finished = jobs.record_results([bad(image)]).jobs[job.job_id]
    assert finished.is_terminal and finished.run == 0
    requeued = replace(image, status=domain.IMAGE_QUEUED)  # as POST /retry does
    jobs.update_images(job.job_id, [requeued])
    jobs.transition(job.job_id, domain.start_retry(domain.recount(finished, [requeued], domain.utcnow())))
    assert coordinator.announce(finished) is False  # run 0's moment passed
    assert jobs.get_job(job.job_id).notified_at is None
    jobs.record_results([ok(image)])
    run_1 = jobs.get_job(job.job_id)
    assert (run_1.run, run_1.status) == (1, domain.COMPLETED)
    assert coordinator.announce(run_1) is True
    assert [(e.job_id, e.status) for e in bus.messages(TOPICS.notifications, JobCompleted)] == \
        [(job.job_id, domain.COMPLETED)]
