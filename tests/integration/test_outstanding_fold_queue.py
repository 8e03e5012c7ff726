"""GET /outstanding (KEDA's scaling signal) counts work not yet rendered (issue 27 M2): results a
processor published that wait to be folded no longer count, so a lagging fold of one big job does
not keep workers up with nothing to do. On both job stores: SQLite, and Firestore on its emulator."""
from __future__ import annotations

import threading
import time

import pytest

from imageflow import domain
from imageflow.bootstrap import Backends
from imageflow.jobstore import FOLD_QUEUE_FRESH_SECONDS
from imageflow.jobstore.sqlite import SqliteJobStore
from imageflow.messages import Result
from imageflow.settings import Settings
from services.interaction_manager.app import create_app
from services.interaction_manager.batcher import ResultBatcher
from services.interaction_manager.coordinator import Coordinator
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeMessage

SETTINGS = Settings()


@pytest.fixture(params=["local", "gcp"])
def store(request, tmp_path):
    if request.param == "gcp":
        yield request.getfixturevalue("firestore_jobstore")
        return
    s = SqliteJobStore(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def started_job(coordinator: Coordinator, n: int) -> list[domain.Image]:
    job = domain.Job(job_id=domain.new_id(), total=n, operations=[{"op": "grayscale"}])
    images = [domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename=f"{i}.png",
                           input_path=domain.input_path(job.job_id, "x", f"{i}.png")) for i in range(n)]
    coordinator.jobs.create_job(job, images)
    coordinator.fan_out(job.job_id)
    return images


def rendered(image: domain.Image) -> FakeMessage:
    return FakeMessage(Result(job_id=image.job_id, image_id=image.image_id, status="succeeded",
                              output_path=f"{image.job_id}/output/{image.image_id}-x.png", content_type="image/png",
                              width=1, height=1, bytes=10).encode())


def test_results_published_but_not_folded_are_not_counted(store):
    coordinator = Coordinator(SETTINGS, store, FakeBus(), FakeBlobStore())
    manager = create_app(SETTINGS, Backends(coordinator.blobs, store, coordinator.bus), coordinator).test_client()
    outstanding = lambda: manager.get("/outstanding").json["outstanding_tasks"]  # noqa: E731
    images = started_job(coordinator, 5)
    assert outstanding() == 5

    # three results arrive while the fold is slow (a big job's fold lagging behind the workers)
    folding, go_on = threading.Event(), threading.Event()

    def slow_fold(results):
        folding.set()
        assert go_on.wait(60)
        coordinator.fold(results)

    batcher = ResultBatcher(slow_fold, interval=3600, on_size=coordinator.progress.report_fold_queue)
    messages = [rendered(image) for image in images[:3]]
    for message in messages:
        batcher.handle_result(message)
    flusher = threading.Thread(target=batcher.flush)
    flusher.start()
    assert folding.wait(60)
    assert outstanding() == 2, "only the two images not yet rendered are work for the processors"

    go_on.set()
    flusher.join(60)
    assert all(m.acked for m in messages)
    assert store.get_job(images[0].job_id).succeeded == 3
    assert outstanding() == 2
    batcher.stop()


def test_a_stopped_replicas_report_no_longer_counts(store):
    """A replica that stopped holding results (they go back to the bus) is ignored once its
    report is stale: its images count as work again, never lost from the signal."""
    coordinator = Coordinator(SETTINGS, store, FakeBus(), FakeBlobStore())
    started_job(coordinator, 4)
    now = time.time()
    store.set_fold_queue("gone", 3, now - FOLD_QUEUE_FRESH_SECONDS - 1)
    store.set_fold_queue("live", 1, now)
    assert store.fold_queue(now) == 1
    assert coordinator.outstanding_tasks() == 3
    store.set_fold_queue("live", 0, now)
    assert coordinator.outstanding_tasks() == 4
