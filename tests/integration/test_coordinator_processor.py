"""interaction-manager and image-processor handlers over the real local adapters."""
from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image as PILImage

from imageflow import domain
from imageflow.domain import Image, Job
from imageflow.messages import JobCompleted, JobSubmitted, Result, Task
from services.image_processor.processing import Processor
from services.interaction_manager.batcher import ResultBatcher
from services.interaction_manager.coordinator import Coordinator
from tests.unit.fakes import FakeMessage


@pytest.fixture
def coordinator(local_settings, backends):
    return Coordinator(local_settings, backends.jobs, backends.bus, backends.blobs)


def jpeg(size=(320, 240)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, (20, 200, 20)).save(buf, "JPEG")
    return buf.getvalue()


def make_job(backends, n=3, operations=None, email="u@example.com"):
    job = Job(job_id=domain.new_id(), total=n, operations=operations or [{"op": "grayscale"}], email=email)
    images = []
    for i in range(n):
        image_id = domain.new_id()
        path = domain.input_path(job.job_id, image_id, f"p{i}.jpg")
        backends.blobs.put(path, jpeg(), "image/jpeg")
        images.append(Image(job_id=job.job_id, image_id=image_id, filename=f"p{i}.jpg", input_path=path))
    backends.jobs.create_job(job, images)
    return job, images


def drain(bus, sub, n=100):
    return bus.pull(sub, max_messages=n, timeout=0.2)


def test_fan_out_publishes_one_task_per_image_once(local_settings, backends, coordinator):
    job, images = make_job(backends)
    backends.bus.publish(local_settings.topics.jobs, JobSubmitted(job_id=job.job_id).encode())
    [submitted] = drain(backends.bus, local_settings.topics.jobs_sub)
    coordinator.handle_job_submitted(submitted)
    tasks = [Task.decode(m.data) for m in drain(backends.bus, local_settings.topics.tasks_sub)]
    assert sorted(t.image_id for t in tasks) == sorted(i.image_id for i in images)
    assert all(t.output_path.startswith(f"{job.job_id}/output/") and t.operations == [{"op": "grayscale"}]
               for t in tasks)
    assert backends.jobs.get_job(job.job_id).status == "processing"
    assert coordinator.fan_out(job.job_id) == 0, "a redelivered job.submitted publishes nothing again"
    assert coordinator.outstanding_tasks() == 3


def test_results_complete_the_job_and_announce_it_once(local_settings, backends, coordinator):
    job, images = make_job(backends, n=2)
    coordinator.fan_out(job.job_id)
    ok = [Result(job_id=job.job_id, image_id=i.image_id, status="succeeded", output_path="x", width=1, height=1,
                 bytes=1, content_type="image/jpeg") for i in images]
    coordinator.fold(ok[:1])
    assert drain(backends.bus, local_settings.topics.notifications_sub) == []
    coordinator.fold(ok + ok)  # duplicates included
    [note] = drain(backends.bus, local_settings.topics.notifications_sub)
    event = JobCompleted.decode(note.data)
    assert (event.status, event.total, event.succeeded, event.failed) == ("completed", 2, 2, 0)
    assert event.results_url == f"{local_settings.public_base_url}/jobs/{job.job_id}"
    assert event.email == "u@example.com"
    coordinator.fold(ok)
    assert drain(backends.bus, local_settings.topics.notifications_sub) == [], "published exactly once"
    assert backends.jobs.get_job(job.job_id).completion_message_id
    assert coordinator.outstanding_tasks() == 0


def test_failed_publish_releases_the_claim(local_settings, backends, coordinator, monkeypatch):
    job, images = make_job(backends, n=1)
    coordinator.fan_out(job.job_id)
    result = Result(job_id=job.job_id, image_id=images[0].image_id, status="failed", error="bad")
    real_publish = backends.bus.publish
    monkeypatch.setattr(backends.bus, "publish", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bus down")))
    with pytest.raises(RuntimeError):
        coordinator.fold([result])
    assert backends.jobs.get_job(job.job_id).notified_at is None
    monkeypatch.setattr(backends.bus, "publish", real_publish)
    coordinator.fold([result])  # the redelivered result
    [note] = drain(backends.bus, local_settings.topics.notifications_sub)
    assert JobCompleted.decode(note.data).status == "failed"


def test_dead_lettered_task_marks_the_image_failed(local_settings, backends, coordinator):
    job, images = make_job(backends, n=1)
    coordinator.fan_out(job.job_id)
    [task_message] = drain(backends.bus, local_settings.topics.tasks_sub)
    for _ in range(local_settings.max_delivery_attempts):  # every attempt crashes
        task_message.nack()
        [task_message] = drain(backends.bus, local_settings.topics.tasks_sub) or [task_message]
    task_message.nack()
    assert drain(backends.bus, local_settings.topics.tasks_sub) == []
    [letter] = drain(backends.bus, local_settings.topics.tasks_dlq_sub)
    coordinator.fold([coordinator.dead_letter_result(letter)])
    image = backends.jobs.get_image(job.job_id, images[0].image_id)
    assert image.status == "failed" and f"after {local_settings.max_delivery_attempts} attempts" in image.error
    assert image.error_code == "worker_crashed"
    assert backends.jobs.get_job(job.job_id).status == "failed"


def test_a_job_whose_fan_out_keeps_failing_is_dead_lettered_and_failed_with_its_reason(local_settings, backends,
                                                                                        monkeypatch):
    """Any exception in fan-out (here the one a bad URL's IDNA encoding once raised) is retried a bounded
    number of times, then the job fails with the reason instead of being redelivered forever."""
    coordinator = Coordinator(local_settings, backends.jobs, backends.bus, backends.blobs)
    job, images = make_job(backends, n=2)

    def exploding(*args, **kwargs):
        raise UnicodeError("encoding with 'idna' codec failed")

    monkeypatch.setattr(backends.jobs, "untasked_images", exploding)
    backends.bus.publish(local_settings.topics.jobs, JobSubmitted(job_id=job.job_id).encode(), {"job_id": job.job_id})
    attempts, letters = 0, []
    for _ in range(3 * local_settings.max_delivery_attempts):
        for message in drain(backends.bus, local_settings.topics.jobs_sub):
            attempts += 1
            with pytest.raises(UnicodeError):
                coordinator.handle_job_submitted(message)
            message.nack()  # what the subscriber does with a handler's exception
        letters = drain(backends.bus, local_settings.topics.jobs_dlq_sub)
        if letters:
            break
    assert attempts == local_settings.max_delivery_attempts, "retried a bounded number of times, not forever"
    [letter] = letters
    monkeypatch.undo()
    coordinator.handle_job_dead_letter(letter)
    failed = backends.jobs.get_job(job.job_id)
    assert failed.status == "failed" and failed.failed == 2
    errors = {i.error for i in backends.jobs.list_images(job.job_id)}
    assert errors == {f"the job could not be started after {attempts} attempts "
                      "(UnicodeError: encoding with 'idna' codec failed)"}
    [note] = drain(backends.bus, local_settings.topics.notifications_sub)
    assert JobCompleted.decode(note.data).status == "failed"
    assert drain(backends.bus, local_settings.topics.jobs_sub) == []


def test_a_dead_lettered_result_is_folded_on_its_own(local_settings, backends, coordinator):
    job, images = make_job(backends, n=1)
    result = Result(job_id=job.job_id, image_id=images[0].image_id, status="failed", error="bad")
    backends.bus.publish(local_settings.topics.results_dlq, result.encode())
    [letter] = drain(backends.bus, local_settings.topics.results_dlq_sub)
    coordinator.handle_result_dead_letter(letter)
    assert backends.jobs.get_job(job.job_id).status == "failed"


def test_sweep_republishes_a_claimed_but_unpublished_completion(local_settings, backends, coordinator):
    job, images = make_job(backends, n=1)
    backends.jobs.record_results([Result(job_id=job.job_id, image_id=images[0].image_id, status="failed", error="x")])
    backends.jobs.mark_notified(job.job_id, "2000-01-01T00:00:00.000Z")  # a crash right after the claim
    assert coordinator.sweep(older_than_seconds=0) == 1
    assert len(drain(backends.bus, local_settings.topics.notifications_sub)) == 1


def test_sweep_reaches_jobs_behind_any_number_of_newer_ones(local_settings, backends, coordinator):
    """A job whose manager died between the claim and the publish, with 250 newer finished jobs in front
    of it (the sweep used to read only the newest 200 per status). (Webhooks need no such repair: they
    are driven by the job.completed message the sweep republishes.)"""
    stale, images = make_job(backends, n=1)
    backends.jobs.record_results([Result(job_id=stale.job_id, image_id=images[0].image_id, status="failed", error="x")])
    backends.jobs.mark_notified(stale.job_id, "2000-01-01T00:00:00.000Z")
    hooked, images = make_job(backends, n=1)
    backends.jobs.update_job(hooked.job_id, webhook_url="https://example.com/hook", webhook_status="pending")
    backends.jobs.record_results([Result(job_id=hooked.job_id, image_id=images[0].image_id, status="failed",
                                         error="x")])
    backends.jobs.update_job(hooked.job_id, notified_at=domain.utcnow(), completion_message_id="m")
    for _ in range(250):
        job, images = make_job(backends, n=1)
        backends.jobs.record_results([Result(job_id=job.job_id, image_id=images[0].image_id, status="failed",
                                             error="x")])
        backends.jobs.update_job(job.job_id, notified_at=domain.utcnow(), completion_message_id="m")
    assert coordinator.sweep(older_than_seconds=0) == 1
    [note] = drain(backends.bus, local_settings.topics.notifications_sub)
    assert JobCompleted.decode(note.data).job_id == stale.job_id


def test_batcher_acks_after_folding_and_nacks_on_failure():
    folded = []
    batcher = ResultBatcher(folded.extend, interval=60)
    messages = [FakeMessage(Result(job_id="j", image_id=str(i), status="failed").encode()) for i in range(3)]
    for m in messages:
        batcher.handle_result(m)
    assert not any(m.acked for m in messages)
    batcher.flush()
    assert len(folded) == 3 and all(m.acked for m in messages)
    failing = ResultBatcher(lambda results: (_ for _ in ()).throw(RuntimeError("store down")), interval=60)
    m = FakeMessage(Result(job_id="j", image_id="1", status="failed").encode())
    failing.handle_result(m)
    failing.flush()
    assert m.nacked and not m.acked
    batcher.stop()
    failing.stop()


def task_for(job, image, operations):
    return Task(job_id=job.job_id, image_id=image.image_id, input_path=image.input_path,
                output_path=domain.output_stem(job.job_id, image.image_id, image.filename),
                operations=operations)


def test_processor_writes_output_and_publishes_result(local_settings, backends):
    job, [image] = make_job(backends, n=1)
    processor = Processor(local_settings, backends.blobs, backends.bus)
    message = FakeMessage(task_for(job, image, [{"op": "resize", "width": 100},
                                                {"op": "format", "format": "png"}]).encode())
    processor.handle_message(message)
    assert message.acked
    [published] = drain(backends.bus, local_settings.topics.results_sub)
    result = Result.decode(published.data)
    assert (result.status, result.width, result.height, result.content_type) == ("succeeded", 100, 75, "image/png")
    assert result.output_path == f"{job.job_id}/output/{image.image_id}-p0.png"
    assert PILImage.open(io.BytesIO(backends.blobs.get(result.output_path))).size == (100, 75)


def test_processor_reports_a_bad_image_as_failed(local_settings, backends):
    job, [image] = make_job(backends, n=1)
    backends.blobs.put(image.input_path, jpeg()[:200], "image/jpeg")  # truncated
    processor = Processor(local_settings, backends.blobs, backends.bus)
    message = FakeMessage(task_for(job, image, []).encode())
    processor.handle_message(message)
    assert message.acked
    result = Result.decode(drain(backends.bus, local_settings.topics.results_sub)[0].data)
    assert result.status == "failed" and result.error and result.error_code == "corrupt"


def test_processor_retries_on_storage_trouble(local_settings, backends, monkeypatch):
    job, [image] = make_job(backends, n=1)
    processor = Processor(local_settings, backends.blobs, backends.bus)
    monkeypatch.setattr(backends.blobs, "put", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        processor.handle_message(FakeMessage(task_for(job, image, []).encode()))
    assert drain(backends.bus, local_settings.topics.results_sub) == [], "no result for a task that will be retried"


def test_subscriber_respects_concurrency_and_drains_on_stop(local_settings, backends):
    bus = backends.bus
    for i in range(6):
        bus.publish(local_settings.topics.tasks, str(i).encode())
    running, peak, done = [0], [0], []
    lock = threading.Lock()
    release = threading.Event()

    def handler(message):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1
        done.append(message.data)
        message.ack()

    subscriber = bus.subscribe(local_settings.topics.tasks_sub, handler, max_messages=2, ack_deadline_seconds=60)
    end = time.monotonic() + 20
    while subscriber.in_flight() < 2 and time.monotonic() < end:  # a loaded machine starts them late
        time.sleep(0.05)
    time.sleep(0.3)  # room for a third to start, if the limit did not hold
    assert subscriber.in_flight() == 2 and peak[0] == 2
    release.set()
    end = time.monotonic() + 10
    while len(done) < 6 and time.monotonic() < end:
        time.sleep(0.05)
    subscriber.stop(timeout=5)
    assert sorted(done) == [str(i).encode() for i in range(6)] and peak[0] == 2


def test_stop_releases_unfinished_messages_at_once(local_settings, backends):
    bus = backends.bus
    bus.publish(local_settings.topics.tasks, b"slow")
    started = threading.Event()
    subscriber = bus.subscribe(local_settings.topics.tasks_sub, lambda m: (started.set(), time.sleep(3)),
                               max_messages=1, ack_deadline_seconds=60)
    assert started.wait(5)
    subscriber.stop(timeout=0.2)
    [again] = bus.pull(local_settings.topics.tasks_sub, max_messages=1, timeout=2)
    assert again.data == b"slow" and again.delivery_attempt == 2


def test_a_callback_that_holds_its_message_back_keeps_its_delay_despite_the_lease_keeper(local_settings, backends):
    """Returning unsettled after extend(d) means "redeliver in d" (the webhook sender's backoff):
    the lease keeper, extending every 0.5 s while the callback runs, must not cut that short."""
    bus = backends.bus
    bus.publish(local_settings.topics.tasks, b"later")
    deliveries = []

    def hold_back(message):
        deliveries.append(time.monotonic())
        if len(deliveries) == 1:
            message.extend(4)
            time.sleep(1.2)  # the keeper (period 0.5 s, deadline 1 s) runs meanwhile
        else:
            message.ack()

    subscriber = bus.subscribe(local_settings.topics.tasks_sub, hold_back, max_messages=1, ack_deadline_seconds=1)
    try:
        end = time.monotonic() + 10
        while len(deliveries) < 2 and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        subscriber.stop(timeout=2)
    assert len(deliveries) == 2 and deliveries[1] - deliveries[0] >= 3.9
