"""Domain rules: names, paths, result folding."""
from __future__ import annotations

from dataclasses import replace

import pytest

from imageflow import domain
from imageflow.domain import Image, Job
from imageflow.messages import Result


@pytest.mark.parametrize("raw, safe", [
    ("photo.jpg", "photo.jpg"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\cat.png", "cat.png"),
    ("holiday pic (1).JPG", "holiday_pic_1_.JPG"),
    ("naïve café.png", "naive_cafe.png"),
    ("evil\r\nname\x00.gif", "evil_name_.gif"),
    ("<script>alert(1)</script>.png", "script_.png"),  # "/" is a separator: only the last part
    ("...", "image"),
    ("", "image"),
    (None, "image"),
])
def test_safe_name(raw, safe):
    assert domain.safe_name(raw) == safe


def test_safe_name_is_bounded_and_keeps_extension():
    name = domain.safe_name("a" * 500 + ".jpeg")
    assert len(name) <= 100 and name.endswith(".jpeg")


def test_blob_paths_follow_the_layout():
    assert domain.input_path("j", "i", "../x y.png") == "j/input/i-x_y.png"
    assert domain.output_path("j", "i", "x y.png", "webp") == "j/output/i-x_y.webp"
    assert domain.output_path("j", "i", "x.png", "jpg", variant="w320") == "j/output/i-x-w320.jpg"
    stem = domain.output_stem("j", "i", "../x y.png")
    assert stem == "j/output/i-x_y"
    assert domain.output_file(stem, "webp", variant="w320-webp") == "j/output/i-x_y-w320-webp.webp"


def test_ids():
    assert domain.is_valid_id(domain.new_id())
    for bad in ("", "../x", "A" * 32, "0" * 31, "0" * 33):
        assert not domain.is_valid_id(bad)


def image(status=domain.IMAGE_QUEUED):
    return Image(job_id="j", image_id="i", filename="a.jpg", input_path="j/input/i-a.jpg", status=status)


def test_apply_result_success_and_failure():
    ok = Result(job_id="j", image_id="i", status="succeeded", output_path="j/output/i-a.jpg", width=5, height=6,
                bytes=7, content_type="image/jpeg")
    done = domain.apply_result(image(), ok, "now")
    assert (done.status, done.width, done.height, done.attempts) == ("succeeded", 5, 6, 1)
    failed = domain.apply_result(image(), Result(job_id="j", image_id="i", status="failed", error="bad"), "now")
    assert (failed.status, failed.error) == ("failed", "bad")


def test_apply_result_ignores_finished_images():
    ok = Result(job_id="j", image_id="i", status="succeeded")
    assert domain.apply_result(image(domain.IMAGE_SUCCEEDED), ok, "now") is None
    assert domain.apply_result(image(domain.IMAGE_FAILED), ok, "now") is None


def test_fold_progress_completes_once():
    job = Job(job_id="j", total=2)
    job = domain.fold_progress(job, [image(domain.IMAGE_SUCCEEDED)], "t1")
    assert (job.status, job.succeeded, job.completed_at) == ("processing", 1, None)
    job = domain.fold_progress(job, [image(domain.IMAGE_FAILED)], "t2")
    assert (job.status, job.failed, job.completed_at) == ("completed_with_errors", 1, "t2")


@pytest.mark.parametrize("total, ok, bad, status", [
    (3, 3, 0, "completed"), (3, 2, 1, "completed_with_errors"), (3, 0, 3, "failed")])
def test_final_status(total, ok, bad, status):
    assert domain.final_status(total, ok, bad) == status


def test_the_results_link_and_the_completion_message_come_from_one_place():
    job = domain.Job(job_id="ab" * 16, status=domain.COMPLETED_WITH_ERRORS, total=3, succeeded=2, failed=1,
                     email="me@example.com")
    assert domain.results_url("https://imageflow.example/", job.job_id) == f"https://imageflow.example/jobs/{job.job_id}"
    event = domain.completed_event(job, "https://imageflow.example")
    assert (event.status, event.total, event.succeeded, event.failed, event.email) == (
        "completed_with_errors", 3, 2, 1, "me@example.com")
    assert event.results_url == f"https://imageflow.example/jobs/{job.job_id}"
    assert event.archive_url == f"https://imageflow.example/api/v1/jobs/{job.job_id}/archive.zip"
    assert event.expires_at is None, "no retention given: kept until deleted"
    kept = domain.completed_event(job, "https://imageflow.example", retention_days=7)
    assert kept.expires_at == domain.retention_expiry(job.created_at, 7)
    nothing = domain.completed_event(domain.Job(job_id=job.job_id, status=domain.FAILED, total=1, failed=1), "https://x")
    assert nothing.archive_url == "", "no zip link when no image succeeded (archive.zip answers 404)"


def test_the_completion_message_carries_the_jobs_name_for_the_email_subject():
    import json

    from functions.email_notifier.main import build_email
    named = domain.Job(job_id="cd" * 16, status=domain.COMPLETED, total=51, succeeded=51, email="me@example.com",
                       name="Spring shoot")
    event = domain.completed_event(named, "https://imageflow.example")
    assert event.name == "Spring shoot"
    email = build_email(json.loads(event.encode()), "from@example.com")
    assert email["Subject"].startswith("Spring shoot: ") and "51" in email["Subject"]


def test_job_transitions_apply_once_and_only_from_their_states():
    job = Job(job_id="j", total=2)
    assert domain.start()(job) == {"status": domain.PROCESSING}
    assert domain.start()(Job(job_id="j", status=domain.PROCESSING)) is None
    assert domain.mark_notified("t1")(job) == {"notified_at": "t1"}
    assert domain.mark_notified("t2")(Job(job_id="j", notified_at="t1")) is None
    # a run that a retry replaced cannot claim the new run's announcement
    assert domain.mark_notified("t1", run=0)(Job(job_id="j", run=1)) is None
    assert domain.mark_notified("t1", run=1)(Job(job_id="j", run=1)) == {"notified_at": "t1"}
    claimed = Job(job_id="j", notified_at="t1")
    assert domain.release_notified()(claimed) == {"notified_at": None}
    assert domain.release_notified()(Job(job_id="j", notified_at="t1", completion_message_id="m")) is None
    assert domain.record_tasks_published()(job) == {"tasks_published": True}
    assert domain.record_tasks_published()(Job(job_id="j", tasks_published=True)) is None
    assert domain.fail("t")(job) == {"status": domain.FAILED, "completed_at": "t"}
    assert domain.fail("t")(Job(job_id="j", status=domain.COMPLETED)) is None


def test_webhook_transitions_claim_one_attempt_at_a_time():
    job = Job(job_id="j", status=domain.COMPLETED, webhook_url="https://h.example/x", webhook_status="pending")
    assert domain.webhook_wait(job, 100.0) == 0
    claim = domain.claim_webhook_attempt(100.0, 30, 0)(job)
    assert claim == {"webhook_next_at": 130.0}
    held = Job(**{**job.to_dict(), **claim})
    assert domain.webhook_wait(held, 110.0) == 20.0
    assert domain.claim_webhook_attempt(110.0, 30, 0)(held) is None          # another replica is on it
    recorded = domain.record_webhook_attempt({"status_code": 500}, "pending", 140.0, 0)(held)
    assert recorded["webhook_attempts"] == [{"status_code": 500, "run": 0, "attempt": 1}]
    done = Job(**{**held.to_dict(), **domain.record_webhook_attempt({"status_code": 200}, "delivered", None, 0)(held)})
    assert domain.webhook_wait(done, 1e9) is None
    assert domain.record_webhook_attempt({}, "failed", None, 0)(done) is None  # finished: no more records
    assert domain.webhook_wait(Job(job_id="j", status=domain.PROCESSING, webhook_url="u",
                                   webhook_status="pending"), 0) is None  # not finished yet


def apply(job: Job, change) -> Job:
    fields = change(job)
    assert fields is not None
    return Job(**{**job.to_dict(), **fields})


def test_a_retry_keeps_the_earlier_runs_pending_webhook_apart_from_the_new_runs():
    job = Job(job_id="j", status=domain.COMPLETED, webhook_url="https://h.example/x", webhook_status="pending",
              completed_at="t0", notified_at="t0", completion_message_id="m0")
    job = apply(job, domain.claim_webhook_attempt(100.0, 30, 0))
    job = apply(job, domain.record_webhook_attempt({"status_code": 500}, "pending", 105.0, 0))
    job = apply(job, domain.claim_webhook_attempt(106.0, 30, 0))           # run 0's second attempt is in flight
    job = apply(job, domain.start_retry(replace(job, status=domain.PROCESSING)))
    assert (job.run, job.status, job.webhook_status, job.webhook_next_at) == (1, "queued", "pending", None)
    assert domain.webhook_wait(job, 200.0, 1) is None                         # run 1 has not finished
    assert domain.webhook_wait(job, 120.0, 0) == 16.0                         # run 0's claim still holds
    # the in-flight attempt lands on run 0, not on the run the job is now at
    job = apply(job, domain.record_webhook_attempt({"status_code": 500}, "pending", 140.0, 0))
    assert job.webhook_status == "pending" and domain.webhook_wait(job, 140.0, 0) == 0
    job = apply(job, domain.record_webhook_attempt({"status_code": 200}, "delivered", None, 0))
    assert domain.record_webhook_attempt({}, "delivered", None, 0)(job) is None   # run 0 is done: once only
    job = replace(job, status=domain.COMPLETED, completed_at="t1")
    job = apply(job, domain.record_webhook_attempt({"status_code": 200}, "delivered", None, 1))
    assert [(a["run"], a["attempt"], a["status_code"]) for a in job.webhook_attempts] == \
        [(0, 1, 500), (0, 2, 500), (0, 3, 200), (1, 1, 200)]
    assert domain.webhook_runs(job) == [{"run": 0, "status": "delivered", "reason": None, "attempts": 3},
                                        {"run": 1, "status": "delivered", "reason": None, "attempts": 1}]
    assert domain.webhook_run(job, 0)["completed_at"] == "t0"


def test_a_retry_before_the_runs_completion_was_published_supersedes_its_webhook_explicitly():
    job = Job(job_id="j", status=domain.COMPLETED, webhook_url="https://h.example/x", webhook_status="pending",
              run=2, webhook_attempts=[{"attempt": 1, "status_code": 500}])   # recorded before runs were labelled
    job = apply(job, domain.start_retry(job))
    [superseded, current] = domain.webhook_runs(job)
    assert superseded == {"run": 2, "status": "superseded", "attempts": 1,
                          "reason": "run 3 started before run 2's job.completed was published"}
    assert current["run"] == 3 and current["status"] == "pending"
    assert domain.webhook_wait(job, 1e9, 2) is None


def test_an_open_job_counts_results_but_completes_only_once_closed():
    job = Job(job_id=domain.new_id(), status=domain.OPEN, total=2)
    done = [Image(job_id=job.job_id, image_id=domain.new_id(), filename="a", input_path="x", status="succeeded")
            for _ in range(2)]
    folded = domain.fold_progress(job, done, domain.utcnow())
    assert (folded.status, folded.succeeded, folded.completed_at) == ("open", 2, None)
    closed = domain.close_job(folded, domain.utcnow())
    assert closed.status == "completed" and closed.closed_at and closed.completed_at
    waiting = domain.close_job(Job(job_id=job.job_id, status=domain.OPEN, total=3, succeeded=1), domain.utcnow())
    assert waiting.status == "processing" and waiting.completed_at is None
    assert domain.close_job(Job(job_id=job.job_id, status=domain.OPEN), domain.utcnow()).status == "failed"
    assert domain.close_job(closed, domain.utcnow()) is closed  # not open: unchanged


def test_previews_live_beside_the_outputs_and_never_collide_with_them():
    job_id, image_id = domain.new_id(), domain.new_id()
    assert domain.preview_path(job_id, image_id, "in") == f"{job_id}/preview/{image_id}-in.webp"
    assert not domain.preview_path(job_id, image_id, "out").startswith(f"{job_id}/output/")
    with pytest.raises(ValueError):
        domain.preview_path(job_id, image_id, "../x")


def test_a_task_carries_what_the_processor_needs():
    job = Job(job_id=domain.new_id(), operations=[{"op": "grayscale"}])
    image = Image(job_id=job.job_id, image_id=domain.new_id(), filename="shoe.jpg",
                  input_path=domain.input_path(job.job_id, "i", "shoe.jpg"), source_url="https://a.example/s.jpg")
    task = domain.task_for(job, image)
    assert (task.source_url, task.operations, task.output_path) == \
        ("https://a.example/s.jpg", [{"op": "grayscale"}], domain.output_stem(job.job_id, image.image_id, "shoe.jpg"))


def test_requeue_clears_the_last_runs_outcome_and_keeps_the_original():
    failed = Image(job_id="j", image_id="i", filename="a.png", input_path="j/input/i-a.png", status="failed",
                   error="boom", error_code=domain.ErrorCode.WORKER_CRASHED, output_path="j/output/i-a.webp",
                   outputs=[{"path": "j/output/i-a.webp"}], content_type="image/webp", width=3, height=4, bytes=9,
                   output_bytes=9, duplicate_of="k/l", output_preview_path="p.webp", blurhash="LKO2",
                   dominant_color="#000000", choices={"quality": 80}, tasked=True, input_bytes=100,
                   preview_path="j/preview/i-input.webp", seq=4, attempts=2)
    again = domain.requeue(failed, "2030-01-01T00:00:00+00:00")
    fresh = Image(job_id="j", image_id="i", filename="a.png", input_path="j/input/i-a.png", input_bytes=100,
                  preview_path="j/preview/i-input.webp", seq=4, attempts=2, updated_at="2030-01-01T00:00:00+00:00")
    assert again == fresh


def test_output_name_is_the_end_of_the_stored_path_and_numbers_repeats():
    path = domain.output_path("j" * 32, "i" * 32, "Summer photo (1).HEIC", "jpg", "w 320")
    assert path.endswith("-" + domain.output_name("Summer photo (1).HEIC", "jpg", "w 320"))
    assert domain.output_name("a.png", ".webp") == "a.webp"             # an extension with its dot, too
    used: set[str] = set()
    assert [domain.output_name("a.png", "png", used=used) for _ in range(3)] == ["a.png", "a-2.png", "a-3.png"]
    assert domain.output_name("a.png", "png", "w320", used) == "a-w320.png" and "a-w320.png" in used


def test_sizes_are_written_one_way_by_the_cli_the_email_and_the_page():
    """Base 1024 everywhere, with the page's formatBytes rules (frontend/src/lib/format.test.js
    expects the same strings): the email function keeps a copy, which must agree."""
    from functions.email_notifier.main import human_bytes as email_bytes
    cases = {500: "500 B", 1536: "1.5 KB", 25 * 1024 * 1024: "25 MB", 923_000_000 - 111_000_000: "774 MB",
             3 * 1024 ** 3: "3 GB"}
    for count, words in cases.items():
        assert domain.human_bytes(count) == words
        assert email_bytes(count) == (words.replace(" B", " bytes") if words.endswith(" B") else words)
