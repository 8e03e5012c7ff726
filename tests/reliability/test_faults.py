"""Fault injection on the local stack: every process SIGKILLed in turn during a job, duplicate
deliveries, a poison task, a task slower than the ack deadline, failing storage writes.

One stack serves the module: two processors at concurrency 2, a 4 s ack deadline (so
crashed leases come back quickly), mails going to a SendGrid stand-in that counts them, and
the processors' fault hooks armed for files named ``poison-*`` and ``slowpoke-*`` only.
"""
from __future__ import annotations

import re
import time

import pytest

from imageflow import domain
from imageflow.bus.sqlite import SqliteBus
from imageflow.jobstore.sqlite import SqliteJobStore
from imageflow.messages import JobCompleted, JobSubmitted, Result, Task
from imageflow.settings import Settings
from tests.reliability.harness import (ChaosStack, JobWatcher, Supervisor, fetch_job, make_batch, run_chaos, submit,
                                       verify_job)

ACK_DEADLINE = 4
EMAIL_LEASE = 6  # how long a send in progress keeps other deliveries of the same job's email off
# poison-*: crash the processor; slowpoke-*: 10 s of work; chaos-*: 0.8 s of work, so a chaos job
# lasts long enough for its kills to land mid-job without burning the shared CPU.
PROCESSOR_FAULTS = "processor_crash_on=poison-,processor_delay_on=slowpoke-:10|chaos-:0.8"


@pytest.fixture(scope="module")
def stack_options(sendgrid):
    return dict(
        launcher=ChaosStack, processors=2,
        env={**sendgrid.env(), "PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": str(ACK_DEADLINE),
             "EMAIL_CLAIM_LEASE_SECONDS": str(EMAIL_LEASE),
             "PROCESSOR_CONCURRENCY": "2", "DRAIN_SECONDS": "5", "RATE_LIMIT_PER_SECOND": "0",
             "MAX_FILES_PER_JOB": "1000"},
        process_env={"image-processor*": {"IMAGEFLOW_FAULTS": PROCESSOR_FAULTS},
                     "image-handler": {"GUNICORN_CMD_ARGS": "--worker-class services.image_handler.server.Worker"}})


def _bus(stack) -> SqliteBus:
    return SqliteBus(stack.data_dir / "bus.sqlite3")


def _settings(stack) -> Settings:
    return Settings.from_env({"IMAGEFLOW_DATA_DIR": str(stack.data_dir)})


def _processor_log_count(stack, text: str) -> int:
    return stack.log_text("image-processor").count(text)


def _write_failures(stack) -> int:
    """Injected write failures, one traceback line each."""
    return len(re.findall(r"BlobStoreError: could not write \S+: injected write failure",
                          stack.log_text("image-processor")))


def _slow_starts(stack) -> int:
    return len(re.findall(r"delay on \S*slowpoke-", stack.log_text("image-processor")))


# -- SIGKILL every process, in rounds -------------------------------------------------------
def test_kill_every_process_in_two_rounds_during_a_100_image_job(stack, sendgrid, record):
    """SIGKILL each process (image-handler, interaction-manager, a processor, email function, push bridge) in a
    random order at random moments, 2 rounds, during a 100-image job, while other small jobs are being submitted;
    a supervisor restarts each one as Kubernetes would."""
    run_chaos(stack, sendgrid, record, images=100, rounds=2, seed=8, timeout=240, gap=(0.3, 2.0))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_kill_every_process_in_five_rounds_during_a_500_image_job(stack, sendgrid, record):
    """SIGKILL each process (image-handler, interaction-manager, a processor, email function, push bridge) in a
    random order at random moments, 5 rounds (25 kills), during a 500-image job, while other small jobs are being
    submitted; a supervisor restarts each one as Kubernetes would."""
    run_chaos(stack, sendgrid, record, images=500, rounds=5, seed=500, timeout=900, gap=(1.0, 5.0))


# -- duplicates -----------------------------------------------------------------------------
def test_duplicate_deliveries_change_nothing(stack, sendgrid, record):
    """Publish copies straight onto the bus during a 30-image job: job.submitted 3 more times, every task twice
    more, every result again (and a contradicting 'failed' result for succeeded images), and job.completed twice
    more."""
    batch = make_batch(30, prefix="dup")
    created = submit(stack.base_url, batch)
    job_id = created["job_id"]
    bus, topics = _bus(stack), _settings(stack).topics
    jobs_store = SqliteJobStore(stack.data_dir / "jobs.sqlite3")
    for _ in range(3):
        bus.publish(topics.jobs, JobSubmitted(job_id=job_id).encode(), {"job_id": job_id})
    # Copies of every task, made the way the interaction manager makes them.
    deadline = time.monotonic() + 30
    while not jobs_store.get_job(job_id).tasks_published and time.monotonic() < deadline:
        time.sleep(0.1)
    job_doc = jobs_store.get_job(job_id)
    tasks = [Task(job_id=job_id, image_id=i.image_id, input_path=i.input_path,
                  output_path=domain.output_stem(job_id, i.image_id, i.filename),
                  operations=job_doc.operations) for i in jobs_store.list_images(job_id)]
    for _ in range(2):
        for task in tasks:
            bus.publish(topics.tasks, task.encode(), {"job_id": job_id})
    job = JobWatcher(stack.base_url, job_id, len(batch)).wait(120)
    # Replay every result after the job completed, plus a contradicting one per image.
    for image in job["images"]:
        ok = Result(job_id=job_id, image_id=image["image_id"], status="succeeded",
                    output_path=f"{job_id}/output/{image['image_id']}-elsewhere.png", content_type="image/png",
                    width=1, height=1, bytes=1)
        bad = Result(job_id=job_id, image_id=image["image_id"], status="failed", error="late duplicate")
        bus.publish(topics.results, ok.encode(), {"job_id": job_id})
        bus.publish(topics.results, bad.encode(), {"job_id": job_id})
    completed = JobCompleted(job_id=job_id, status=job["status"], total=job["total"], succeeded=job["succeeded"],
                             failed=job["failed"], email="owner@example.com",
                             results_url=f"{stack.base_url}/jobs/{job_id}")
    for _ in range(2):
        bus.publish(topics.notifications, completed.encode(), {"job_id": job_id})
    time.sleep(3)  # time for the duplicates to be consumed
    record.expect(bus.backlog(topics.results_sub) == 0 and bus.backlog(topics.notifications_sub) == 0,
                  "the duplicates were consumed (acked), not left to pile up")
    after = fetch_job(stack.base_url, job_id)
    record.expect([(i["image_id"], i["status"], i["width"]) for i in after["images"]]
                  == [(i["image_id"], i["status"], i["width"]) for i in job["images"]],
                  "replayed and contradicting results changed no image")
    record.figure("duplicates published", {"job.submitted": 3, "tasks": 2 * len(tasks), "results": 2 * len(tasks),
                                           "job.completed": 2})
    verify_job(stack, after, batch, record, sendgrid=sendgrid)
    bus.close()
    jobs_store.close()


# -- a poison task --------------------------------------------------------------------------
def test_poison_task_fails_on_its_first_attempt_and_the_job_completes(stack, sendgrid, record):
    """A task whose render SIGKILLs the process rendering it (IMAGEFLOW_FAULTS processor_crash_on, as a native
    decoder crash or an OOM kill would), in a job of 12 good images; a supervisor stands by to restart a processor
    that dies."""
    batch = make_batch(12, prefix="good") + make_batch(1, prefix="poison", start=12)
    poison = batch[-1].filename
    crashes_before = _processor_log_count(stack, "fault injection: crashing on")
    created = submit(stack.base_url, batch)
    with Supervisor(stack, seed=3) as supervisor:
        job = JobWatcher(stack.base_url, created["job_id"], len(batch)).wait(180)
        stack.wait_ready(60)
    crashes = _processor_log_count(stack, "fault injection: crashing on") - crashes_before
    max_attempts = _settings(stack).max_delivery_attempts
    record.figure("render worker crashes caused by the poison task", crashes)
    record.figure("processor restarts", sum(supervisor.restarts.values()))
    record.expect(crashes == 1, f"the poison task killed only its render worker, once: it was not retried up to "
                                f"max_delivery_attempts ({max_attempts}) times", crashes)
    record.expect(sum(supervisor.restarts.values()) == 0, "no processor died (only its render worker)",
                  dict(supervisor.restarts))
    verdict = verify_job(stack, job, batch, record, sendgrid=sendgrid, expect_failed={poison})
    [failed] = verdict.failed
    record.expect("crashed its worker process" in failed["error"],
                  "the poison image is failed with a reason (its render crashed its worker)", failed["error"])
    record.expect(job["status"] == "completed_with_errors", "the job completed (with errors)")


# -- a slow task ----------------------------------------------------------------------------
def test_task_slower_than_the_ack_deadline_keeps_its_lease(stack, sendgrid, record):
    """One task takes 10 s (IMAGEFLOW_FAULTS processor_delay_on), 2.5 times the 4 s ack deadline, beside 10
    normal ones, with two processors pulling."""
    batch = make_batch(10, prefix="quick") + make_batch(1, prefix="slowpoke", start=10)
    started_before = _slow_starts(stack)
    began = time.monotonic()
    created = submit(stack.base_url, batch)
    job = JobWatcher(stack.base_url, created["job_id"], len(batch)).wait(120)
    starts = _slow_starts(stack) - started_before
    record.figure("ack deadline (s)", ACK_DEADLINE)
    record.figure("slow task duration (s)", 10)
    record.figure("times the slow task was started", starts)
    record.figure("job wall time (s)", round(time.monotonic() - began, 1))
    record.expect(starts == 1, "the slow task was processed once: its lease was extended, no other processor "
                               "took it", starts)
    verify_job(stack, job, batch, record, sendgrid=sendgrid)


# -- storage errors -------------------------------------------------------------------------
def test_storage_write_failures_are_retried_without_partial_objects(stack, sendgrid, record):
    """30% of the processors' blob writes fail (IMAGEFLOW_FAULTS storage_fail_rate=0.3) during a
    30-image job, with up to 20 delivery attempts per task."""
    # Each attempt writes three objects now (the output and its two previews), so one attempt in
    # three gets through: up to 20 attempts, retried quickly (the subscriptions' backoff, shortened).
    stack.env.update({"MAX_DELIVERY_ATTEMPTS": "20", "RETRY_MIN_BACKOFF_SECONDS": "0.2",
                      "RETRY_MAX_BACKOFF_SECONDS": "1"})
    stack.restart_processors("storage_fail_rate=0.3")
    try:
        failures_before = _write_failures(stack)
        batch = make_batch(30, prefix="flaky")
        created = submit(stack.base_url, batch)
        job = JobWatcher(stack.base_url, created["job_id"], len(batch)).wait(180)
        failures = _write_failures(stack) - failures_before
        record.figure("injected write failures", failures)
        record.expect(failures >= 4, "writes did fail (the fault was really injected)", failures)
        verdict = verify_job(stack, job, batch, record, sendgrid=sendgrid)
        record.expect(verdict.hidden_temp_files == 0, "a failed write leaves no partial object, not even hidden",
                      verdict.hidden_temp_files)
    finally:
        for name in ("MAX_DELIVERY_ATTEMPTS", "RETRY_MIN_BACKOFF_SECONDS", "RETRY_MAX_BACKOFF_SECONDS"):
            stack.env.pop(name)
        stack.restart_processors(PROCESSOR_FAULTS)


# -- the email function dies while sending ----------------------------------------------------
def test_email_function_killed_while_sending_still_mails_once(stack, sendgrid, record):
    """The SendGrid stand-in hangs on a job's mail (and never delivers it); the email function is SIGKILLed while it
    waits, and restarted. Pub/Sub push (here the push bridge) retries the job.completed event."""
    sendgrid.hold_next(30)
    batch = make_batch(3, prefix="mail")
    created = submit(stack.base_url, batch)
    job_id = created["job_id"]
    record.expect(sendgrid.holding.wait(60), "the email function started sending and hung on SendGrid")
    with Supervisor(stack, seed=5) as supervisor:
        stack.kill_process("email-function")
        started = time.monotonic()
        mails = sendgrid.wait_for(job_id, timeout=90, settle=EMAIL_LEASE + 2)
        record.figure("time from the kill to the mail (s)", round(time.monotonic() - started, 1))
        record.figure("email-function restarts", supervisor.restarts["email-function"])
    record.figure("claim lease (EMAIL_CLAIM_LEASE_SECONDS, s)", EMAIL_LEASE)
    record.expect(len(mails) == 1, "the mail was sent exactly once after the crash (not lost behind the crashed "
                                   "attempt's claim)", len(mails))
    job = JobWatcher(stack.base_url, job_id, len(batch)).wait(30)
    verify_job(stack, job, batch, record)
