"""tasks.publish_tasks, the one way tasks reach the bus: published, then recorded as tasked; a
publish that fails part-way records what went out and leaves the rest for the fan-out."""
from __future__ import annotations

import pytest

from imageflow import domain
from imageflow.bus import BusError
from imageflow.messages import Task
from imageflow.settings import Settings
from imageflow.tasks import publish_tasks
from tests.unit.fakes import FakeBus, FakeJobStore

SETTINGS = Settings()


class FailsAfter(FakeBus):
    """Accepts ``n`` publishes, then refuses every other."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def publish(self, topic, data, attributes=None):
        if self.n <= 0:
            raise BusError("the bus went away")
        self.n -= 1
        return super().publish(topic, data, attributes)


def job_with(n: int) -> tuple[FakeJobStore, domain.Job, list[domain.Image]]:
    jobs = FakeJobStore()
    job = domain.Job(job_id=domain.new_id(), status=domain.PROCESSING, total=n, operations=[{"op": "grayscale"}])
    images = [domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename=f"{i}.png", input_path=f"in/{i}",
                           seq=i) for i in range(n)]
    jobs.create_job(job, images)
    return jobs, job, images


def test_each_task_is_published_then_recorded():
    jobs, job, images = job_with(3)
    bus = FakeBus()
    assert publish_tasks(SETTINGS, jobs, bus, job, images) == 3
    tasks = bus.messages(SETTINGS.topics.tasks, Task)
    assert [t.image_id for t in tasks] == [i.image_id for i in images]
    assert tasks[0].output_path == domain.output_stem(job.job_id, images[0].image_id, "0.png")
    assert jobs.untasked_images(job.job_id) == []


def test_a_publish_failing_part_way_records_what_went_out_and_raises():
    jobs, job, images = job_with(3)
    with pytest.raises(BusError):
        publish_tasks(SETTINGS, jobs, FailsAfter(2), job, images)
    assert [i.image_id for i in jobs.untasked_images(job.job_id)] == [images[2].image_id]  # left for the fan-out
