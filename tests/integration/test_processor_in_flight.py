"""image-processor: more tasks in flight than render slots (their storage and bus calls overlap
the renders), never more renders at once than slots, and on stopping the tasks that have not
started their render go straight back to the bus. Real local adapters, real render workers."""
from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image as PILImage

from devtools.faults import Faults, FaultyRender
from imageflow import domain
from imageflow.blobstore import BlobStore
from imageflow.messages import Result, Task
from imageflow.settings import Settings
from services.image_processor.app import start_processing


class FetchGate(BlobStore):
    """The real blob store, except that each read waits until ``parties`` reads are waiting at once
    (a storage far away, with several reads outstanding); a read that waits alone for too long
    breaks the gate and fails."""

    def __init__(self, inner: BlobStore, parties: int):
        self.inner = inner
        self.gate = threading.Barrier(parties, timeout=20)

    def get(self, path: str) -> bytes:
        self.gate.wait()
        return self.inner.get(path)

    def put(self, path, data, content_type, *, cache_control=None):
        self.inner.put(path, data, content_type, cache_control=cache_control)

    def transition(self, path, change, content_type):
        return self.inner.transition(path, change, content_type)

    def open(self, path):
        return self.inner.open(path)

    def exists(self, path):
        return self.inner.exists(path)

    def list(self, prefix):
        return self.inner.list(prefix)

    def delete_prefix(self, prefix):
        return self.inner.delete_prefix(prefix)

    def signed_url(self, path, expires_seconds):
        return self.inner.signed_url(path, expires_seconds)

    def check(self):
        self.inner.check()


def publish_tasks(settings, backends, n: int, name: str = "photo.png") -> list[Task]:
    buf = io.BytesIO()
    PILImage.new("RGB", (64, 48), (200, 30, 30)).save(buf, "PNG")
    job_id, tasks, images = domain.new_id(), [], []
    for _ in range(n):
        image_id = domain.new_id()
        path = domain.input_path(job_id, image_id, name)
        backends.blobs.put(path, buf.getvalue(), "image/png")
        images.append(domain.Image(job_id=job_id, image_id=image_id, filename=name, input_path=path))
        task = Task(job_id=job_id, image_id=image_id, input_path=path,
                    output_path=domain.output_stem(job_id, image_id, name), operations=[{"op": "grayscale"}])
        backends.bus.publish(settings.topics.tasks, task.encode(), {"job_id": job_id})
        tasks.append(task)
    # the job they belong to, running (the processor skips the tasks of a job cancelled or gone)
    backends.jobs.create_job(domain.Job(job_id=job_id, status=domain.PROCESSING, total=n,
                                        operations=[{"op": "grayscale"}]), images)
    return tasks


def collect_results(settings, backends, n: int, timeout: float = 60) -> list[Result]:
    results, end = [], time.monotonic() + timeout
    while len(results) < n and time.monotonic() < end:
        for message in backends.bus.pull(settings.topics.results_sub, max_messages=10, timeout=0.5):
            results.append(Result.decode(message.data))
            message.ack()
    return results


def wait_until(condition, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture
def one_slot(local_settings) -> Settings:
    return local_settings.with_overrides(processor_concurrency=1, processor_max_in_flight=4)


def test_the_default_keeps_more_tasks_in_flight_than_render_slots():
    assert Settings.from_env({"PROCESSOR_CONCURRENCY": "2"}).processor_in_flight == 16
    assert Settings.from_env({"PROCESSOR_CONCURRENCY": "3", "PROCESSOR_MAX_IN_FLIGHT": "5"}).processor_in_flight == 5
    assert Settings.from_env({"PROCESSOR_CONCURRENCY": "4", "PROCESSOR_MAX_IN_FLIGHT": "2"}).processor_in_flight == 4


def test_one_render_slot_fetches_four_tasks_at_once_and_renders_one_at_a_time(one_slot, backends):
    # Each read returns only once four are outstanding together: a processor holding no more
    # tasks than its one render slot would break the gate and fail its tasks.
    gate = FetchGate(backends.blobs, parties=4)
    tasks = publish_tasks(one_slot, backends, 4)
    backends.blobs = gate
    processor, subscriber = start_processing(one_slot, backends)
    try:
        results = collect_results(one_slot, backends, 4)
    finally:
        subscriber.stop(timeout=10)
        processor.close()
    assert not gate.gate.broken, "four reads were outstanding at once"
    assert sorted(r.image_id for r in results) == sorted(t.image_id for t in tasks)
    assert all(r.status == "succeeded" for r in results), [r.error for r in results]
    assert all(gate.inner.exists(r.output_path) for r in results)
    assert processor.pool.peak_rendering == 1, "never more renders at once than render slots"


def test_stopping_releases_the_tasks_waiting_for_a_render_slot(one_slot, backends):
    # Every render takes 2 s: one task renders, the other two wait for the slot when the processor stops.
    tasks = publish_tasks(one_slot, backends, 3, name="slow-photo.png")
    processor, subscriber = start_processing(one_slot, backends,
                                             FaultyRender(Faults(processor_delay_on="slow-", processor_delay_seconds=2)))
    try:
        wait_until(lambda: processor.pool.rendering == 1 and subscriber.in_flight() == 3)
        processor.release_waiting()
        subscriber.stop(timeout=30)
    finally:
        processor.close()
    [done] = collect_results(one_slot, backends, 1, timeout=5)
    assert done.status == "succeeded", "the render in progress finished and its result was published"
    released = backends.bus.pull(one_slot.topics.tasks_sub, max_messages=10, timeout=2)
    assert sorted(Task.decode(m.data).image_id for m in released) == sorted(
        t.image_id for t in tasks if t.image_id != done.image_id), "the waiting two are back on the bus, unrendered"
    assert collect_results(one_slot, backends, 1, timeout=0.5) == [], "nothing else was rendered"
