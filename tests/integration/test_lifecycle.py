"""The job lifecycle (issue 16) through the REST API, with the interaction manager's and the
processor's handlers driven in-process over the same real local adapters."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from imageflow import domain
from imageflow.bootstrap import Backends, make_backends
from imageflow.domain import Job, cancel_marker, new_id
from imageflow.messages import JobCompleted
from imageflow.settings import Settings
from services.image_handler.app import create_app
from services.image_processor.app import make_processor
from services.interaction_manager import lifecycle
from services.interaction_manager.coordinator import Coordinator


def png(size=(200, 150), color=(0, 128, 255)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buf, "PNG")  # noise: PNG does not shrink it to nothing
    return buf.getvalue()


class RefusingJobStore:
    """What the processor gets for a job store: any use is recorded and raises (it must have none)."""

    def __init__(self):
        self.used: list[str] = []

    def __getattr__(self, name):
        self.used.append(name)
        raise AssertionError(f"the processor used the job store ({name})")


class Pipeline:
    """The three services' handlers over one set of backends, pumped by hand. The processor is
    built as its service builds it, over the blob store and the bus, with a job store that refuses."""

    def __init__(self, settings: Settings, **app_config):
        self.settings = settings
        self.backends = make_backends(settings)
        self.app = create_app({"data_dir": settings.data_dir, "public_base_url": "https://imageflow.example",
                               **app_config}, backends=self.backends)
        self.client = self.app.test_client()
        self.coordinator = Coordinator(settings, self.backends.jobs, self.backends.bus, self.backends.blobs)
        self.refusing_jobs = RefusingJobStore()
        self.processor = make_processor(settings, Backends(self.backends.blobs, self.refusing_jobs, self.backends.bus))
        self.processor.gate.ttl = 0
        self.topics = settings.topics

    def pull(self, sub, n=100):
        return self.backends.bus.pull(sub, max_messages=n, timeout=0.1)

    def fan_out(self):
        for message in self.pull(self.topics.jobs_sub):
            self.coordinator.handle_job_submitted(message)

    def process(self, n=100):
        for message in self.pull(self.topics.tasks_sub, n):
            self.processor.handle_message(message)

    def fold(self):
        from imageflow.messages import Result
        messages = self.pull(self.topics.results_sub, 500)
        if messages:
            self.coordinator.fold([Result.decode(m.data) for m in messages])
        for m in messages:
            m.ack()

    def run(self):
        self.fan_out()
        self.process()
        self.fold()

    def notifications(self):
        messages = self.pull(self.topics.notifications_sub)
        for m in messages:
            m.ack()
        return [JobCompleted.decode(m.data) for m in messages]

    def submit(self, n=3, operations='[{"op": "grayscale"}]', images=None, headers=None, **data):
        files = [(io.BytesIO(data), f"p{i}.png") for i, data in enumerate(images or [png() for _ in range(n)])]
        response = self.client.post("/api/v1/jobs", data={"files": files, "operations": operations, **data},
                                    content_type="multipart/form-data", headers=headers)
        assert response.status_code == 202, response.get_json()
        return response.get_json()

    def job(self, job_id, headers=None):
        return self.client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()


@pytest.fixture
def pipeline(local_settings):
    p = Pipeline(local_settings)
    yield p
    p.app.extensions["imageflow"].estimator.close()
    p.backends.close()
    assert p.refusing_jobs.used == [], "the processor read or wrote job documents"


def test_cancel_skips_the_images_not_started_and_ends_cancelled_with_counts(pipeline):
    created = pipeline.submit(n=4, email="u@example.com")
    job_id = created["job_id"]
    pipeline.fan_out()
    pipeline.process(n=1)  # one image finished before the cancel
    response = pipeline.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.get_json()["cancel_requested_at"]
    assert pipeline.client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 202, "idempotent"
    pipeline.process()
    pipeline.fold()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["failed"], job["skipped"], job["pending"]) == \
        ("cancelled", 1, 0, 3, 0)
    skipped = [i for i in job["images"] if i["status"] == "skipped"]
    assert len(skipped) == 3 and all("cancelled" in i["error"] for i in skipped)
    assert not pipeline.backends.blobs.list(f"{job_id}/output/{skipped[0]['image_id']}")
    [event] = pipeline.notifications()
    assert (event.status, event.succeeded, event.skipped, event.total) == ("cancelled", 1, 3, 4)
    again = pipeline.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "job_finished"


def test_retry_requeues_failed_and_dead_lettered_images_and_notifies_again(pipeline):
    created = pipeline.submit(n=3)
    job_id = created["job_id"]
    [first, second, third] = [i["image_id"] for i in created["images"]]
    stored = {i.image_id: i for i in pipeline.backends.jobs.list_images(job_id)}
    original = pipeline.backends.blobs.get(stored[first].input_path)
    pipeline.backends.blobs.delete_prefix(stored[first].input_path)  # the processor fails it: missing original
    pipeline.fan_out()
    tasks = pipeline.pull(pipeline.topics.tasks_sub)
    for message in tasks:
        if second in message.data.decode():  # the worker crashes on it every time: dead-lettered
            dead = message
        else:
            pipeline.processor.handle_message(message)
    for _ in range(pipeline.settings.max_delivery_attempts):
        dead.nack()
        dead = (pipeline.pull(pipeline.topics.tasks_sub) or [dead])[0]
    [letter] = pipeline.pull(pipeline.topics.tasks_dlq_sub)
    pipeline.coordinator.fold([pipeline.coordinator.dead_letter_result(letter)])
    pipeline.fold()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["failed"]) == ("completed_with_errors", 1, 2)
    [done] = pipeline.notifications()
    assert done.run == 0 and done.failed == 2
    pipeline.backends.blobs.put(stored[first].input_path, original, "image/png")

    response = pipeline.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["retried"] == 2 and body["status"] == "queued" and body["run"] == 1
    assert (body["succeeded"], body["failed"], body["pending"]) == (1, 0, 2)
    pipeline.run()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["failed"]) == ("completed", 3, 0)
    assert {i["image_id"]: i["status"] for i in job["images"]} == {first: "succeeded", second: "succeeded",
                                                                   third: "succeeded"}
    [again] = pipeline.notifications()
    assert (again.status, again.run, again.succeeded, again.delivery_id) == ("completed", 1, 3, f"{job_id}.1")
    nothing = pipeline.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert nothing.status_code == 409 and nothing.get_json()["error"]["code"] == "nothing_to_retry"


def test_retry_and_rerun_wait_for_the_job_to_finish(pipeline):
    job_id = pipeline.submit(n=1)["job_id"]
    for action in ("retry", "rerun"):
        response = pipeline.client.post(f"/api/v1/jobs/{job_id}/{action}", json={})
        assert response.status_code == 409 and response.get_json()["error"]["code"] == "job_active"


def test_rerun_reads_the_parent_originals_with_new_operations(pipeline):
    parent_id = pipeline.submit(n=2)["job_id"]
    pipeline.run()
    inputs_before = pipeline.backends.blobs.list("")
    response = pipeline.client.post(f"/api/v1/jobs/{parent_id}/rerun",
                                    json={"operations": [{"op": "resize", "width": 50},
                                                         {"op": "format", "format": "webp"}], "only": "all"})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    child_id = body["job_id"]
    assert body["parent_job_id"] == parent_id and body["total"] == 2
    assert [p for p in pipeline.backends.blobs.list("") if "/input/" in p] == \
        [p for p in inputs_before if "/input/" in p], "no original was uploaded or copied"
    pipeline.run()
    child = pipeline.job(child_id)
    assert child["status"] == "completed" and child["parent_job_id"] == parent_id
    assert all(i["width"] == 50 and i["content_type"] == "image/webp" for i in child["images"])
    # outputs and their previews only: no original was uploaded or copied
    assert all(o.startswith((f"{child_id}/output/", f"{child_id}/preview/"))
               for o in pipeline.backends.blobs.list(f"{child_id}/"))
    assert pipeline.job(parent_id)["child_job_ids"] == [child_id]
    bad = pipeline.client.post(f"/api/v1/jobs/{parent_id}/rerun", json={"only": "some"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_only"
    invalid = pipeline.client.post(f"/api/v1/jobs/{parent_id}/rerun", json={"operations": [{"op": "melt"}]})
    assert invalid.status_code == 422
    none_failed = pipeline.client.post(f"/api/v1/jobs/{parent_id}/rerun", json={"only": "failed"})
    assert none_failed.status_code == 409 and none_failed.get_json()["error"]["code"] == "nothing_to_rerun"


def test_rerun_of_failed_only_keeps_the_parent_operations(pipeline):
    created = pipeline.submit(n=2, operations='[{"op": "rotate", "degrees": 90}]')
    parent_id = created["job_id"]
    victim = pipeline.backends.jobs.get_image(parent_id, created["images"][0]["image_id"])
    data = pipeline.backends.blobs.get(victim.input_path)
    pipeline.backends.blobs.delete_prefix(victim.input_path)
    pipeline.run()
    pipeline.backends.blobs.put(victim.input_path, data, "image/png")
    response = pipeline.client.post(f"/api/v1/jobs/{parent_id}/rerun", json={"only": "failed"})
    assert response.status_code == 202
    child_id = response.get_json()["job_id"]
    pipeline.run()
    child = pipeline.job(child_id)
    assert child["total"] == 1 and child["status"] == "completed"
    assert child["operations"] == pipeline.job(parent_id)["operations"]
    assert child["operations"][0]["op"] == "rotate" and child["operations"][0]["degrees"] == 90
    assert (child["images"][0]["width"], child["images"][0]["height"]) == (150, 200)


def test_savings_in_the_job_the_report_and_the_notification(pipeline):
    job_id = pipeline.submit(n=2, operations='[{"op": "format", "format": "jpeg", "quality": 30}]')["job_id"]
    pipeline.run()
    job = pipeline.job(job_id)
    images = job["images"]
    assert job["bytes_in"] == sum(i["input_bytes"] for i in images) > 0
    assert job["bytes_out"] == sum(i["output_bytes"] for i in images) > 0
    assert job["bytes_out"] < job["bytes_in"]
    assert job["saved_percent"] == round(100 * (job["bytes_in"] - job["bytes_out"]) / job["bytes_in"], 1)
    [event] = pipeline.notifications()
    assert (event.bytes_in, event.bytes_out, event.saved_percent) == \
        (job["bytes_in"], job["bytes_out"], job["saved_percent"])
    report = pipeline.client.get(f"/api/v1/jobs/{job_id}/report.csv").data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(report)))
    assert [int(float(r["output_bytes"])) for r in rows] == [i["output_bytes"] for i in images]
    assert all(float(r["saved_percent"]) > 0 for r in rows)


def test_retention_removes_the_job_its_images_and_files_and_answers_410(pipeline):
    job_id = pipeline.submit(n=2)["job_id"]
    pipeline.run()
    assert pipeline.job(job_id)["expires_at"]
    backends = pipeline.backends
    now = datetime.now(timezone.utc)
    assert lifecycle.expire_jobs(pipeline.settings, backends.jobs, backends.blobs, now=now) == 0
    later = now + timedelta(days=31)
    recent = Job(job_id=new_id(), created_at=(later - timedelta(days=1)).isoformat().replace("+00:00", "Z"))
    backends.jobs.create_job(recent, [])
    assert lifecycle.expire_jobs(pipeline.settings, backends.jobs, backends.blobs, now=later) == 1
    assert backends.blobs.list(f"{job_id}/") == []
    assert backends.jobs.list_images(job_id) == []
    response = pipeline.client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 410
    error = response.get_json()["error"]
    assert error["code"] == "job_expired" and "30 days" in error["message"]
    assert pipeline.client.get(f"/api/v1/jobs/{job_id}/report.csv").status_code == 410
    listed = {j["job_id"]: j["status"] for j in pipeline.client.get("/api/v1/jobs").get_json()["jobs"]}
    assert listed[job_id] == "expired"
    assert backends.jobs.get_job(recent.job_id).status == "queued", "a job within its retention stays"
    # the tombstone goes after another retention period
    lifecycle.expire_jobs(pipeline.settings, backends.jobs, backends.blobs, now=later + timedelta(days=31))
    assert backends.jobs.get_job(job_id) is None


def test_input_retention_deletes_the_originals_keeps_the_outputs_and_retry_and_rerun_say_so(pipeline):
    """Issue 27: INPUT_RETENTION_HOURS after a job completes its originals go (most of the stored
    bytes); its outputs, report and job stay. A retry or re-run then answers 410 naming why."""
    created = pipeline.submit(n=2)
    job_id = created["job_id"]
    victim = pipeline.backends.jobs.get_image(job_id, created["images"][0]["image_id"])
    pipeline.backends.blobs.delete_prefix(victim.input_path)  # one image fails: there is something to retry
    pipeline.run()
    assert pipeline.job(job_id)["status"] == "completed_with_errors"
    blobs, jobs = pipeline.backends.blobs, pipeline.backends.jobs
    settings = pipeline.settings.with_overrides(input_retention_hours=24)
    now = datetime.now(timezone.utc)
    assert lifecycle.expire_inputs(pipeline.settings, jobs, blobs, now=now + timedelta(days=3)) == 0, "0: kept"
    assert lifecycle.expire_inputs(settings, jobs, blobs, now=now + timedelta(hours=23)) == 0, "not yet"
    outputs = [p for p in blobs.list(f"{job_id}/") if "/input/" not in p]
    assert blobs.list(f"{job_id}/input/") and outputs

    assert lifecycle.expire_inputs(settings, jobs, blobs, now=now + timedelta(hours=25)) == 1
    assert blobs.list(f"{job_id}/input/") == [] and blobs.list(f"{job_id}/") == outputs
    job = pipeline.job(job_id)
    assert job["status"] == "completed_with_errors" and job["succeeded"] == 1
    [done] = [i for i in job["images"] if i["status"] == "succeeded"]
    assert pipeline.client.get(f"/api/v1/jobs/{job_id}/images/{done['image_id']}/output").status_code in (200, 302)
    for action in ("retry", "rerun"):
        response = pipeline.client.post(f"/api/v1/jobs/{job_id}/{action}", json={})
        assert response.status_code == 410, (action, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "originals_deleted" and "original images were deleted" in error["message"]
        assert "INPUT_RETENTION_HOURS" in error["message"] and error["details"][0]["job_id"] == job_id
    # Swept once: a second pass finds nothing to do.
    assert lifecycle.expire_inputs(settings, jobs, blobs, now=now + timedelta(hours=26)) == 0


def test_input_retention_waits_for_the_reruns_reading_the_originals(pipeline):
    parent_id = pipeline.submit(n=1)["job_id"]
    pipeline.run()
    child_id = pipeline.client.post(f"/api/v1/jobs/{parent_id}/rerun", json={}).get_json()["job_id"]
    blobs, jobs = pipeline.backends.blobs, pipeline.backends.jobs
    settings = pipeline.settings.with_overrides(input_retention_hours=1)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert lifecycle.expire_inputs(settings, jobs, blobs, now=later) == 0, "its re-run still needs them"
    assert blobs.list(f"{parent_id}/input/")
    pipeline.run()
    assert pipeline.job(child_id)["status"] == "completed"
    assert lifecycle.expire_inputs(settings, jobs, blobs, now=later) == 2  # both: the child read the parent's
    assert blobs.list(f"{parent_id}/input/") == []
    response = pipeline.client.post(f"/api/v1/jobs/{child_id}/rerun", json={})
    assert response.status_code == 410 and f"job {parent_id}'s original images" in response.get_json()["error"]["message"]


def test_retention_zero_keeps_jobs_forever(pipeline):
    job_id = pipeline.submit(n=1)["job_id"]
    settings = pipeline.settings.with_overrides(job_retention_days=0)
    far = datetime.now(timezone.utc) + timedelta(days=3650)
    assert lifecycle.expire_jobs(settings, pipeline.backends.jobs, pipeline.backends.blobs, now=far) == 0
    assert pipeline.backends.jobs.get_job(job_id).status == "queued"


def test_the_webhook_body_says_cancelled_and_carries_the_savings_and_run(pipeline):
    import json

    from services.interaction_manager.webhooks import payload
    job = Job(job_id=new_id(), status="cancelled", total=4, succeeded=1, skipped=3, bytes_in=1000, bytes_out=250,
              run=2)
    body = json.loads(payload(job, None, pipeline.settings))
    assert (body["status"], body["skipped"], body["saved_percent"], body["run"]) == ("cancelled", 3, 75.0, 2)
    assert lifecycle.completed_event(job, pipeline.settings).delivery_id == f"{job.job_id}.2"


def jpeg_photo(size) -> bytes:
    """A photo-like JPEG (smooth gradient plus noise) of ``size``."""
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 25)
    photo = Image.merge("RGB", (gradient, noise, Image.blend(gradient, noise, 0.5)))
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _estimate(pipeline, files, operations):
    payload = {"files": [(io.BytesIO(data), name) for name, data in files], "operations": operations,
               "estimate": "true"}
    return pipeline.client.post("/api/v1/jobs", data=payload, content_type="multipart/form-data")


def test_estimate_creates_nothing_and_names_the_refused_files(pipeline):
    files = [("a.jpg", jpeg_photo((1600, 1200))), ("notes.txt", b"hello, not an image"),
             ("b.jpg", jpeg_photo((800, 600)))]
    response = _estimate(pipeline, files, '[{"op": "format", "format": "jpeg", "quality": 40}]')
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["estimate"] is True and body["accepted"] is True and body["reasons"] == []
    assert [i["filename"] for i in body["images"]] == ["a.jpg", "b.jpg"]
    assert [r["filename"] for r in body["refused"]] == ["notes.txt"]
    assert body["refused"][0]["error"]["code"] == "unsupported_image"
    totals = body["totals"]
    assert totals["images"] == 2 and totals["cpu_seconds"] > 0 and totals["wall_seconds"] > 0
    assert 0 < totals["predicted_bytes_out"] < totals["bytes_in"]
    assert pipeline.backends.jobs.list_jobs() == [] and pipeline.backends.blobs.list("") == []
    assert pipeline.pull(pipeline.topics.jobs_sub) == []


def test_estimated_bytes_follow_a_real_run(pipeline):
    """The prediction is checked against what the job really produces (within 30 %)."""
    files = [(f"p{i}.jpg", jpeg_photo(size)) for i, size in enumerate([(2400, 1600), (1200, 900), (640, 480)])]
    for operations in ('[{"op": "format", "format": "jpeg", "quality": 50}]',
                       '[{"op": "resize", "width": 400, "height": 400}]'):
        predicted = _estimate(pipeline, files, operations).get_json()["totals"]["predicted_bytes_out"]
        payload = {"files": [(io.BytesIO(d), n) for n, d in files], "operations": operations}
        job_id = pipeline.client.post("/api/v1/jobs", data=payload, content_type="multipart/form-data") \
            .get_json()["job_id"]
        pipeline.run()
        actual = pipeline.job(job_id)["bytes_out"]
        print(f"estimate {operations}: predicted {predicted} bytes, actual {actual}")
        assert 0.7 * actual <= predicted <= 1.3 * actual, (operations, predicted, actual)


def test_estimate_refuses_with_the_job_level_reasons_and_rejects_bad_operations(pipeline):
    settings_limited = pipeline.app.extensions["imageflow"]
    files = [(f"p{i}.jpg", jpeg_photo((64, 48))) for i in range(3)]
    settings_limited.settings = settings_limited.settings.with_overrides(max_files_per_job=2)
    body = _estimate(pipeline, files, '[{"op": "grayscale"}]').get_json()
    assert body["accepted"] is False and body["reasons"][0]["code"] == "too_many_files"
    invalid = _estimate(pipeline, files, '[{"op": "resize", "width": -5}]')
    assert invalid.status_code == 422 and invalid.get_json()["error"]["code"] == "invalid_operations"


def test_dedupe_copies_the_output_of_the_same_bytes_with_the_same_operations(pipeline):
    same, other = png(), png()
    created = pipeline.submit(images=[same, other, same])
    job_id = created["job_id"]
    [first, _, twin] = [i["image_id"] for i in created["images"]]
    pipeline.fan_out()
    pipeline.process(n=1)  # one at a time: the first of the twins renders, the second copies
    pipeline.process(n=1)
    # mark the source's previews: a copy must copy them, not render its own in the processor's
    # main process (past the render workers' concurrency and memory cap)
    blobs = pipeline.backends.blobs
    marks = {which: f"preview {which} of the source".encode() for which in (domain.PREVIEW_INPUT, domain.PREVIEW_OUTPUT)}
    for which, mark in marks.items():
        blobs.put(domain.preview_path(job_id, first, which), mark, "image/webp")
    pipeline.process(n=1)
    pipeline.fold()
    job = pipeline.job(job_id)
    images = {i["image_id"]: i for i in job["images"]}
    assert images[twin]["duplicate_of"] == f"{job_id}/{first}" and images[first]["duplicate_of"] is None
    for which, mark in marks.items():
        assert blobs.get(domain.preview_path(job_id, twin, which)) == mark, f"the copy's {which} preview is copied"
    assert pipeline.client.get(images[twin]["output_url"]).data == pipeline.client.get(images[first]["output_url"]).data
    assert all(o.startswith(f"{job_id}/output/") for o in pipeline.backends.blobs.list(f"{job_id}/output/"))
    outputs = [o for o in pipeline.backends.blobs.list(f"{job_id}/output/") if ".preview-" not in o]
    assert len(outputs) == 3, "the copy is the job's own file (the previews aside)"
    assert images[twin]["output_preview_url"], "a copy gets its previews too"
    assert job["bytes_in"] == sum(i["input_bytes"] for i in job["images"]), "the duplicate counts in the savings"
    report = pipeline.client.get(f"/api/v1/jobs/{job_id}/report.csv").data.decode("utf-8-sig")
    assert f"{job_id}/{first}" in report

    # across the caller's jobs: the same bytes and operations copy, other operations render
    again = pipeline.submit(images=[same])["job_id"]
    changed = pipeline.submit(images=[same], operations='[{"op": "rotate", "degrees": 90}]')["job_id"]
    pipeline.run()
    assert pipeline.job(again)["images"][0]["duplicate_of"] in (f"{job_id}/{first}", f"{job_id}/{twin}")
    assert pipeline.job(changed)["images"][0]["duplicate_of"] is None


def test_dedupe_renders_again_when_the_source_is_gone(pipeline):
    same = png()
    source = pipeline.submit(images=[same])["job_id"]
    pipeline.run()
    assert pipeline.client.delete(f"/api/v1/jobs/{source}").status_code == 204
    later = pipeline.submit(images=[same])["job_id"]
    pipeline.run()
    job = pipeline.job(later)
    assert job["status"] == "completed" and job["images"][0]["duplicate_of"] is None


def test_dedupe_never_shares_outputs_between_callers():
    from services.image_processor.dedupe import dedupe_key
    ops = [{"op": "grayscale"}]
    assert dedupe_key("alice", b"same", ops) != dedupe_key("bob", b"same", ops)
    assert dedupe_key("alice", b"same", ops) == dedupe_key("alice", b"same", [{"op": "grayscale"}])
    assert dedupe_key("alice", b"same", ops) != dedupe_key("alice", b"same", [{"op": "sharpen"}])


ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"


def test_dedupe_follows_the_caller_the_task_carries_across_jobs_never_across_callers(local_settings):
    """With API keys: alice's second job of the same bytes copies her first one's output; bob's
    identical job renders its own. The processor learns the caller from the task alone."""
    pipeline = Pipeline(local_settings, api_keys=f"alice={ALICE},bob={BOB}")
    try:
        alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
        same = png()
        first = pipeline.submit(images=[same], headers=alice)
        pipeline.run()
        again = pipeline.submit(images=[same], headers=alice)["job_id"]
        other = pipeline.submit(images=[same], headers=bob)["job_id"]
        pipeline.run()
        source = f"{first['job_id']}/{first['images'][0]['image_id']}"
        assert pipeline.job(again, alice)["images"][0]["duplicate_of"] == source
        theirs = pipeline.job(other, bob)
        assert theirs["status"] == "completed" and theirs["images"][0]["duplicate_of"] is None
        assert pipeline.refusing_jobs.used == []
    finally:
        pipeline.backends.close()


def test_a_task_queued_before_tasks_carried_their_caller_renders_without_dedupe(pipeline):
    """Backward compatible: a task without ``caller`` (an older interaction manager's) is rendered
    and not recorded, never a crash and never a copy of another caller's output."""
    from imageflow.messages import Result, Task
    same = png()
    first = pipeline.submit(images=[same])
    pipeline.run()
    created = pipeline.submit(images=[same])
    [image] = pipeline.backends.jobs.list_images(created["job_id"])
    job = pipeline.backends.jobs.get_job(created["job_id"])
    old_style = {k: v for k, v in Task(job_id=job.job_id, image_id=image.image_id, input_path=image.input_path,
                                       output_path=f"{job.job_id}/output/{image.image_id}-p0",
                                       operations=job.operations).to_dict().items() if k != "caller"}
    pipeline.backends.bus.publish(pipeline.topics.tasks, json.dumps(old_style).encode(), {"job_id": job.job_id})
    pipeline.process()
    [message] = pipeline.pull(pipeline.topics.results_sub)
    result = Result.decode(message.data)
    message.ack()
    assert result.status == "succeeded" and result.duplicate_of is None, "rendered, not copied"
    assert first["job_id"] not in result.output_path


def test_cancel_writes_the_marker_the_processor_reads_and_retry_lifts_it(pipeline):
    """The cancel reaches the processor through the blob store: the marker
    ``<job_id>/control/cancelled`` skips what has not started; a retry lifts it and the skipped
    images render; deleting the job removes the marker with its files."""
    created = pipeline.submit(n=3)
    job_id = created["job_id"]
    marker = cancel_marker(job_id)
    pipeline.fan_out()
    pipeline.process(n=1)  # one image finished before the cancel
    assert not pipeline.backends.blobs.exists(marker)
    assert pipeline.client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 202
    assert marker.split("/") == [job_id, "control", "cancelled"]
    assert json.loads(pipeline.backends.blobs.get(marker))["cancel_requested_at"]
    pipeline.process()
    pipeline.fold()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["skipped"]) == ("cancelled", 1, 2)
    assert {i["error"] for i in job["images"] if i["status"] == "skipped"} == {
        "skipped: the job was cancelled before this image started"}

    assert pipeline.client.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
    assert not pipeline.backends.blobs.exists(marker), "the retry lifts the cancel"
    pipeline.run()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["skipped"]) == ("completed", 3, 0)
    assert all(pipeline.client.get(i["output_url"]).status_code == 200 for i in job["images"])

    pipeline.client.post(f"/api/v1/jobs/{job_id}/cancel")  # finished: refused, and no marker left behind
    assert not pipeline.backends.blobs.exists(marker)
    assert pipeline.client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert pipeline.backends.blobs.list(f"{job_id}/") == []


def test_a_cancel_marker_left_by_a_cancel_that_lost_its_race_is_lifted_by_the_retry(pipeline):
    """A marker on a job that is not cancelled would only skip a later retry's tasks, and the retry
    lifts it before queueing them."""
    created = pipeline.submit(n=2, images=[png(), png()[:100]])
    job_id = created["job_id"]
    pipeline.run()
    assert pipeline.job(job_id)["status"] == "completed_with_errors"
    pipeline.backends.blobs.put(cancel_marker(job_id), b"{}", "application/json")
    assert pipeline.client.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
    pipeline.run()
    job = pipeline.job(job_id)
    assert job["skipped"] == 0 and job["failed"] == 1, "the bad file fails again; nothing is skipped"


def test_the_task_of_a_deleted_job_is_skipped_from_what_the_blob_store_holds(pipeline):
    """A task that outlived its job (redelivered after the job was deleted): its files are gone,
    so it is skipped with the reason, without a render, and nothing is written for the job."""
    from imageflow.messages import Result
    created = pipeline.submit(n=1)
    job_id = created["job_id"]
    pipeline.fan_out()
    [message] = pipeline.pull(pipeline.topics.tasks_sub)
    pipeline.backends.blobs.delete_prefix(f"{job_id}/")  # what DELETE and expiry do to the files
    pipeline.processor.handle_message(message)
    [published] = pipeline.pull(pipeline.topics.results_sub)
    result = Result.decode(published.data)
    published.ack()
    assert (result.status, result.error) == ("skipped", "skipped: the job no longer exists (its files were deleted)")
    assert pipeline.backends.blobs.list(f"{job_id}/") == []


def test_a_retry_right_after_a_cancel_is_not_skipped_on_a_stale_read(pipeline):
    created = pipeline.submit(n=2)
    job_id = created["job_id"]
    pipeline.processor.gate.ttl = 60  # the processor has just seen the job cancelled, and caches it
    pipeline.client.post(f"/api/v1/jobs/{job_id}/cancel")
    pipeline.run()
    assert pipeline.job(job_id)["status"] == "cancelled"
    assert pipeline.client.post(f"/api/v1/jobs/{job_id}/retry").status_code == 202
    pipeline.run()
    job = pipeline.job(job_id)
    assert (job["status"], job["succeeded"], job["skipped"]) == ("completed", 2, 0)


def test_a_stray_skip_without_a_cancel_is_not_a_success(pipeline):
    from imageflow.messages import Result
    created = pipeline.submit(n=2)
    job_id = created["job_id"]
    [a, b] = [i["image_id"] for i in created["images"]]
    pipeline.coordinator.fold([Result(job_id=job_id, image_id=a, status="succeeded", output_path="x", bytes=1),
                               Result(job_id=job_id, image_id=b, status="skipped", error="skipped")])
    assert pipeline.job(job_id)["status"] == "completed_with_errors"
