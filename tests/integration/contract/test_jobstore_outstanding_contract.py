"""The outstanding-task counter (GET /outstanding, KEDA's metrics-api trigger) and quota-checked
joins, for every job store: SQLite, the in-memory store of the unit tests, and Firestore on
its emulator. After every change that creates or finishes work, the maintained counter must
equal what a scan of the jobs adds up to (``scan_outstanding``, the old way of answering), and
reading it must never scan."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from imageflow import domain
from imageflow.domain import Image, Job, new_id
from imageflow.jobstore import JobClosed, TooManyImages, outstanding_of, quota_room, scan_outstanding
from imageflow.jobstore.sqlite import SqliteJobStore
from imageflow.messages import Result
from tests.unit.fakes import FakeJobStore


@pytest.fixture(params=["local", "memory", "gcp"])
def store(request, tmp_path):
    if request.param == "gcp":
        yield request.getfixturevalue("firestore_jobstore")
        return
    s = SqliteJobStore(tmp_path / "jobs.sqlite3") if request.param == "local" else FakeJobStore()
    yield s
    s.close()


def images_of(job: Job, n: int, prefix: str = "p") -> list[Image]:
    return [Image(job_id=job.job_id, image_id=new_id(), filename=f"{prefix}{i}.jpg",
                  input_path=domain.input_path(job.job_id, "x", f"{prefix}{i}.jpg")) for i in range(n)]


def queued_job(store, n: int, **fields) -> tuple[Job, list[Image]]:
    job = Job(job_id=new_id(), total=n, operations=[{"op": "grayscale"}], **fields)
    images = images_of(job, n)
    store.create_job(job, images)
    return job, images


def open_job(store, owner: str | None = None) -> Job:
    job = Job(job_id=new_id(), status=domain.OPEN, operations=[{"op": "grayscale"}], owner=owner)
    store.create_job(job, [])
    return job


def ok(image: Image) -> Result:
    return Result(job_id=image.job_id, image_id=image.image_id, status="succeeded",
                  output_path=f"{image.job_id}/output/{image.image_id}-x.jpg", content_type="image/jpeg",
                  width=1, height=1, bytes=10)


def failed(image: Image, status: str = "failed") -> Result:
    return Result(job_id=image.job_id, image_id=image.image_id, status=status, error="broken")


def counts(store, expected: int) -> None:
    """The counter is ``expected`` and agrees with a scan of the jobs."""
    assert (store.outstanding_tasks(), scan_outstanding(store)) == (expected, expected)


def test_results_fold_the_count_down_once_each_redelivered_or_not(store):
    job, images = queued_job(store, 4)
    counts(store, 0)                                              # queued: no task published yet
    store.transition(job.job_id, domain.start())                  # the fan-out began
    counts(store, 4)
    store.record_results([ok(images[0]), ok(images[0])])          # a duplicate within the batch
    counts(store, 3)
    store.record_results([ok(images[0]), failed(images[0])])      # redelivered later: changes nothing
    counts(store, 3)
    store.record_results([failed(images[1]), failed(images[2], "skipped")])  # failed, skipped (a cancel)
    counts(store, 1)
    outcome = store.record_results([failed(images[3])])           # a dead-lettered task, folded as failed
    assert outcome.jobs[job.job_id].is_terminal
    counts(store, 0)


def test_open_jobs_count_their_images_as_they_join_and_close(store):
    job = open_job(store)
    first, second = images_of(job, 3, "a"), images_of(job, 2, "b")
    store.add_images(job.job_id, first, max_total=6, now=domain.utcnow())
    counts(store, 3)
    joined = store.join_images(job.job_id, [first[0], *second], max_total=6, now=domain.utcnow())
    assert [i.image_id for i in joined.added] == [i.image_id for i in second]
    assert joined.present == [first[0].image_id] and joined.job.total == 5   # the redelivered one is skipped
    counts(store, 5)
    with pytest.raises(TooManyImages):
        store.add_images(job.job_id, images_of(job, 2, "c"), max_total=6, now=domain.utcnow())
    counts(store, 5)                                              # refused: nothing counted
    refused = replace(images_of(job, 1, "d")[0], status=domain.IMAGE_FAILED, error="not an image")
    assert store.join_images(job.job_id, [refused], max_total=6, now=domain.utcnow()).job.failed == 1
    counts(store, 5)                                              # joined already finished: not outstanding
    store.record_results([ok(first[0])])
    counts(store, 4)
    store.close_job(job.job_id, domain.utcnow())                  # open -> processing: the same work
    counts(store, 4)
    with pytest.raises(JobClosed):
        store.add_images(job.job_id, images_of(job, 1, "late"), max_total=10, now=domain.utcnow())
    store.record_results([ok(i) for i in first[1:] + second])
    counts(store, 0)
    assert store.get_job(job.job_id).status == domain.COMPLETED_WITH_ERRORS


def test_cancel_then_skipped_results_and_a_failed_job(store):
    job = open_job(store)
    images = images_of(job, 3)
    store.add_images(job.job_id, images, max_total=10, now=domain.utcnow())
    store.transition(job.job_id, domain.request_cancel(domain.utcnow()))  # closes it: still to be skipped
    counts(store, 3)
    store.record_results([failed(i, "skipped") for i in images[:2]])
    counts(store, 1)
    other, _ = queued_job(store, 5)
    store.transition(other.job_id, domain.start())
    counts(store, 6)
    store.update_job(other.job_id, status=domain.FAILED, completed_at=domain.utcnow())  # fail_job's last step
    counts(store, 1)


def test_retry_and_rerun_queue_work_again(store):
    job, images = queued_job(store, 3)
    store.transition(job.job_id, domain.start())
    store.record_results([ok(images[0]), failed(images[1]), failed(images[2])])
    counts(store, 0)
    # the image-handler's retry: re-queue the failed images, recount, start a new run; then the fan-out
    now = domain.utcnow()
    requeued = [replace(i, status=domain.IMAGE_QUEUED, error=None, tasked=False) for i in images[1:]]
    store.update_images(job.job_id, requeued)
    counted = domain.recount(store.get_job(job.job_id), [store.get_image(job.job_id, images[0].image_id),
                                                         *requeued], now)
    store.transition(job.job_id, domain.start_retry(counted))
    counts(store, 0)                                              # queued again, not fanned out yet
    store.transition(job.job_id, domain.start())
    counts(store, 2)
    store.record_results([ok(images[1])])
    counts(store, 1)
    rerun, _ = queued_job(store, 2, parent_job_id=job.job_id)     # a re-run is a new job
    store.transition(rerun.job_id, domain.start())
    counts(store, 3)


def test_deleting_or_expiring_a_job_takes_its_unfinished_images_off(store):
    job, images = queued_job(store, 4)
    store.transition(job.job_id, domain.start())
    store.record_results([ok(images[0])])
    stuck = open_job(store)
    store.add_images(stuck.job_id, images_of(stuck, 2), max_total=10, now=domain.utcnow())
    counts(store, 5)
    assert store.delete_job(job.job_id) is True
    counts(store, 2)
    assert store.delete_job(job.job_id) is False                  # gone already: nothing taken twice
    counts(store, 2)
    # the retention sweep: delete, then a tombstone in its place (lifecycle.expire_jobs)
    tomb = Job(job_id=stuck.job_id, status=domain.EXPIRED, total=2, tasks_published=True)
    store.delete_job(stuck.job_id)
    store.create_job(tomb, [])
    counts(store, 0)


def test_racing_folds_and_joins_count_exactly(store):
    """Four writers at once, each folding the same results (redeliveries to two replicas) or
    joining images: the counter ends where the jobs say."""
    job, images = queued_job(store, 6)
    store.transition(job.job_id, domain.start())
    opened = open_job(store)
    barrier = threading.Barrier(4)
    errors = []

    def fold():
        barrier.wait()
        try:
            store.record_results([ok(i) for i in images[:4]])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def join(prefix):
        barrier.wait()
        try:
            store.add_images(opened.job_id, images_of(opened, 2, prefix), max_total=100, now=domain.utcnow())
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=fold), threading.Thread(target=fold),
               threading.Thread(target=join, args=("x",)), threading.Thread(target=join, args=("y",))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    counts(store, 2 + 4)


def test_reading_the_count_never_scans_the_jobs(store, monkeypatch):
    for _ in range(12):
        job, images = queued_job(store, 3)
        store.transition(job.job_id, domain.start())
    expected = scan_outstanding(store)

    def no_scan(*args, **kwargs):
        raise AssertionError("GET /outstanding must not list the jobs")

    monkeypatch.setattr(store, "list_jobs", no_scan)
    monkeypatch.setattr(store, "iter_repairs", no_scan)
    assert store.outstanding_tasks() == expected == 36


def test_a_drifted_counter_is_adjusted(store):
    job, _ = queued_job(store, 3)
    store.transition(job.job_id, domain.start())
    store.adjust_outstanding(-5)  # as if a TTL deletion or a hand edit had lost more than the job's share
    assert store.outstanding_tasks() == -2 and scan_outstanding(store) == 3
    assert store.adjust_outstanding(5, expected=-1) is False      # it no longer reads what the repair saw
    assert store.outstanding_tasks() == -2
    assert store.adjust_outstanding(5, expected=-2) is True
    counts(store, 3)


# -- quotas checked in the join's transaction (issue 12) ------------------------------------
def test_a_join_sees_the_owners_active_jobs_and_may_refuse_the_excess(store):
    owner = "shop"
    first = open_job(store, owner)
    store.reserve_quota(owner, first.job_id, 0, lambda active, n: None)
    second = open_job(store, owner)
    store.reserve_quota(owner, second.job_id, 0, lambda active, n: None)
    store.add_images(first.job_id, images_of(first, 3), max_total=100, now=domain.utcnow())
    seen = []

    def admit(active, joining):
        seen.append(sorted((j.job_id, j.total) for j in active))
        room = quota_room(active, 4)
        return [i if n < room else replace(i, status=domain.IMAGE_FAILED, error="quota exceeded (QUOTA_ACTIVE_IMAGES)")
                for n, i in enumerate(joining)]

    joined = store.join_images(second.job_id, images_of(second, 3), max_total=100, now=domain.utcnow(), admit=admit)
    assert seen[-1] == sorted([(first.job_id, 3), (second.job_id, 0)])
    assert [i.status for i in joined.added] == ["queued", "failed", "failed"]
    assert (joined.job.total, joined.job.failed) == (3, 2)
    assert store.get_image(second.job_id, joined.added[1].image_id).error.startswith("quota exceeded")
    counts(store, 4)


@pytest.fixture
def replicas(request, store, tmp_path):
    """Three more handles on ``store``'s data, as three replicas of a service hold (their own
    connection or client, none of this process's locks shared), or None for the in-memory store."""
    if isinstance(store, FakeJobStore):
        yield None
        return
    if isinstance(store, SqliteJobStore):
        handles = [SqliteJobStore(tmp_path / "jobs.sqlite3") for _ in range(3)]
    else:
        from imageflow.jobstore.firestore import FirestoreJobStore
        handles = [FirestoreJobStore(request.getfixturevalue("gcp_settings")) for _ in range(3)]
    yield handles
    for handle in handles:
        handle.close()


@pytest.mark.parametrize("across", ["threads", "replicas"])
def test_parallel_joins_cannot_pass_a_quota_together(store, replicas, across):
    """Each join may add 2 images while the owner's unfinished images stay under 4: of three
    parallel joins of 2, exactly two fit (a check outside the transaction lets all three in),
    whether the joins come from one process's threads or from three replicas (whose
    transactions abort each other on Firestore and must be run again, not lost)."""
    if across == "replicas" and replicas is None:
        pytest.skip("the in-memory store lives in one process")
    joiners = replicas if across == "replicas" else [store] * 3
    owner = "shop"
    job = open_job(store, owner)
    store.reserve_quota(owner, job.job_id, 0, lambda active, n: None)

    class OverQuota(Exception):
        pass

    def admit(active, joining):
        if quota_room(active, 4) < len(joining):
            raise OverQuota()
        return joining

    barrier = threading.Barrier(3)
    outcomes = []

    def join(joiner, prefix):
        barrier.wait()
        try:
            joiner.add_images(job.job_id, images_of(job, 2, prefix), max_total=100, now=domain.utcnow(), admit=admit)
            outcomes.append("joined")
        except OverQuota:
            outcomes.append("refused")

    threads = [threading.Thread(target=join, args=(j, p)) for j, p in zip(joiners, "abc")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["joined", "joined", "refused"]
    assert store.get_job(job.job_id).total == 4 and len(store.list_images(job.job_id)) == 4
    counts(store, 4)


def test_outstanding_of_counts_only_jobs_in_progress():
    assert outstanding_of(None) == 0
    assert outstanding_of(Job(job_id="j", status=domain.QUEUED, total=5)) == 0
    assert outstanding_of(Job(job_id="j", status=domain.PROCESSING, total=5, succeeded=1, failed=1, skipped=1)) == 2
    assert outstanding_of(Job(job_id="j", status=domain.OPEN, total=2)) == 2
    assert outstanding_of(Job(job_id="j", status=domain.COMPLETED, total=5)) == 0
