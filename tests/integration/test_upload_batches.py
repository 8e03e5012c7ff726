"""Direct uploads land in bursts (issue 12): the interaction manager joins a batch of
object-finalize events with one store transaction per job, keeping each image's checks and
publishing each task exactly once. Counted here on the real local adapters (SQLite job store,
SQLite bus, filesystem blobs): the job-store calls and the SQLite transactions for N events
one at a time and as one batch. Counts, not timings."""
from __future__ import annotations

import io
import time
from collections import Counter

import pytest
from PIL import Image

from devtools.counting_store import CountingStore
from imageflow.messages import Task
from services.image_handler.app import create_app
from services.interaction_manager.uploads import batched_object_events
from services.interaction_manager.batcher import ResultBatcher
from services.interaction_manager.coordinator import Coordinator

N = 24


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 14), (seed * 9 % 256, 60, 120)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "max_files_per_job": 100,
                      "public_base_url": "https://imageflow.example"})
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def counted(app):
    c = app.extensions["imageflow"]
    store = CountingStore(c.backends.jobs)
    return store, Coordinator(c.settings, store, c.backends.bus, c.backends.blobs)


def land_direct_uploads(client, n: int, bad: int = 0) -> str:
    """An open job and ``n`` direct uploads stored through their local targets (the last
    ``bad`` are not images); their object events wait on the uploads subscription."""
    job_id = client.post("/api/v1/jobs", json={"open": True, "preset": "thumbnail"}).json["job_id"]
    blobs = [png(i) if i < n - bad else b"not a picture at all" for i in range(n)]
    targets = client.post(f"/api/v1/jobs/{job_id}/files", json={"files": [
        {"filename": f"shot-{i}.png", "bytes": len(data), "content_type": "image/png"}
        for i, data in enumerate(blobs)]}).json["uploads"]
    for target, data in zip(targets, blobs):
        put = client.put("/" + target["url"].split("/", 3)[3], data=data, headers=target["headers"])
        assert put.status_code == 200, put.json
    return job_id


def pull_events(app, coordinator):
    c = app.extensions["imageflow"]
    messages = c.backends.bus.pull(c.settings.topics.uploads_sub, max_messages=500)
    for message in messages:
        message.ack()
    return [coordinator.upload_event(m.attributes, m.data) for m in messages]


def published_tasks(app, coordinator) -> Counter:
    """The tasks on the bus once the manager has handled the job.submitted each join sent (fair
    share: it releases joined images within the key's share)."""
    c = app.extensions["imageflow"]
    for message in c.backends.bus.pull(c.settings.topics.jobs_sub, max_messages=100):
        coordinator.handle_job_submitted(message)
    messages = c.backends.bus.pull(c.settings.topics.tasks_sub, max_messages=500)
    for message in messages:
        message.ack()
    return Counter(Task.decode(m.data).image_id for m in messages)


def test_a_batch_of_upload_events_is_one_transaction_per_job(app, counted):
    store, coordinator = counted
    client = app.test_client()
    one_by_one, batched = land_direct_uploads(client, N, bad=2), land_direct_uploads(client, N, bad=2)
    events = pull_events(app, coordinator)
    singles = [e for e in events if e.job_id == one_by_one]
    together = [e for e in events if e.job_id == batched]
    assert len(singles) == len(together) == N

    store.reset()
    for event in singles:  # as each event was handled before: one at a time
        coordinator.join_uploads([event])
    before = (dict(store.calls), store.transactions)
    store.reset()
    outcomes = coordinator.join_uploads(together)
    after = (dict(store.calls), store.transactions)
    print(f"\n{N} upload events of one job: one at a time {before[1]} SQLite transactions, "
          f"{sum(before[0].values())} job-store calls {before[0]}; as one batch {after[1]} transactions, "
          f"{sum(after[0].values())} calls {after[0]}")

    # the same outcome either way: every image checked, the bad ones failed with their reason
    for job_id in (one_by_one, batched):
        job = store.get_job(job_id)
        assert (job.total, job.failed, job.status) == (N, 2, "open")
    assert Counter(outcomes.values()) == {"joined": N - 2, "failed": 2}
    # one join per job, however many events (their tasks are released by the manager's fair share,
    # on the job.submitted the join sent)
    assert after[0]["join_images"] == 1 and after[0].get("mark_tasked", 0) == 0 and after[1] == 1
    assert before[0]["join_images"] == N and before[1] == N
    # exactly one task per joined image; a redelivered batch adds nothing and publishes nothing
    tasks = published_tasks(app, coordinator)
    assert len(tasks) == 2 * (N - 2) and set(tasks.values()) == {1}
    store.reset()
    assert set(coordinator.join_uploads(together).values()) == {"duplicate"}
    assert not published_tasks(app, coordinator) and store.calls["mark_tasked"] == 0
    assert store.get_job(batched).total == N


def test_the_interaction_manager_batches_events_from_its_subscription(app, counted):
    """The service's own wiring (app.batched_object_events): events delivered by the bus's
    subscriber are joined in batches and acked once joined."""
    store, coordinator = counted
    client = app.test_client()
    job_id = land_direct_uploads(client, N)
    c = app.extensions["imageflow"]
    store.reset()
    batcher = ResultBatcher(coordinator.join_uploads, interval=0.5, max_batch=100)
    subscriber = c.backends.bus.subscribe(c.settings.topics.uploads_sub, batched_object_events(coordinator.uploads, batcher),
                                          max_messages=100, ack_deadline_seconds=30)
    try:
        deadline = time.monotonic() + 60
        while store.get_job(job_id).total < N and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        subscriber.stop(timeout=10)
        batcher.stop()
    assert store.get_job(job_id).total == N
    joins = store.calls["join_images"]
    print(f"\n{N} events through the subscriber: {joins} joins, {store.transactions} SQLite transactions")
    assert 1 <= joins < N  # batched (how many batches depends on how the bus delivers them)
    assert c.backends.bus.backlog(c.settings.topics.uploads_sub) == 0   # acked once joined
    tasks = published_tasks(app, coordinator)
    assert len(tasks) == N and set(tasks.values()) == {1}
