"""Job store contract, for every adapter."""
from __future__ import annotations

import time

import pytest

from imageflow import domain
from imageflow.domain import Image, Job, new_id
from imageflow.jobstore import JobNotFound
from imageflow.messages import Result


def make_job(store, n=3, **fields):
    job = Job(job_id=new_id(), total=n, operations=[{"op": "grayscale"}], email="a@example.com", **fields)
    images = [Image(job_id=job.job_id, image_id=new_id(), filename=f"p{i}.jpg",
                    input_path=domain.input_path(job.job_id, "x", f"p{i}.jpg")) for i in range(n)]
    store.create_job(job, images)
    return job, images


def ok(image, **kw):
    return Result(job_id=image.job_id, image_id=image.image_id, status="succeeded",
                  output_path=f"{image.job_id}/output/{image.image_id}-x.jpg", content_type="image/jpeg",
                  width=10, height=20, bytes=123, **kw)


def bad(image, error="corrupt"):
    return Result(job_id=image.job_id, image_id=image.image_id, status="failed", error=error)


def test_create_and_read(jobstore):
    job, images = make_job(jobstore)
    stored = jobstore.get_job(job.job_id)
    assert stored.total == 3 and stored.status == "queued" and stored.email == "a@example.com"
    assert [i.image_id for i in jobstore.list_images(job.job_id)] == [i.image_id for i in images]
    assert jobstore.get_image(job.job_id, images[1].image_id).filename == "p1.jpg"


def test_unknown_job(jobstore):
    assert jobstore.get_job(new_id()) is None
    assert jobstore.get_image(new_id(), new_id()) is None
    with pytest.raises(JobNotFound):
        jobstore.update_job(new_id(), status="processing")


def test_results_fold_into_counts_and_complete_the_job(jobstore):
    job, images = make_job(jobstore)
    outcome = jobstore.record_results([ok(images[0]), bad(images[1], "not an image")])
    assert len(outcome.changed_images) == 2
    assert outcome.jobs[job.job_id].succeeded == 1 and outcome.jobs[job.job_id].failed == 1
    assert outcome.jobs[job.job_id].status == "processing"
    outcome = jobstore.record_results([ok(images[2])])
    final = jobstore.get_job(job.job_id)
    assert final.status == "completed_with_errors" and final.completed_at
    assert outcome.jobs[job.job_id].status == "completed_with_errors"
    image = jobstore.get_image(job.job_id, images[0].image_id)
    assert (image.status, image.width, image.height, image.bytes) == ("succeeded", 10, 20, 123)
    assert jobstore.get_image(job.job_id, images[1].image_id).error == "not an image"


def test_duplicate_results_count_once(jobstore):
    job, images = make_job(jobstore, n=2)
    jobstore.record_results([ok(images[0]), ok(images[0])])
    outcome = jobstore.record_results([ok(images[0]), bad(images[0])])
    assert outcome.changed_images == [] and outcome.ignored == 2
    stored = jobstore.get_job(job.job_id)
    assert (stored.succeeded, stored.failed, stored.status) == (1, 0, "processing")


def test_all_failed_job_is_failed(jobstore):
    job, images = make_job(jobstore, n=2)
    jobstore.record_results([bad(i) for i in images])
    assert jobstore.get_job(job.job_id).status == "failed"


def test_results_for_unknown_jobs_are_ignored(jobstore):
    ghost = Image(job_id=new_id(), image_id=new_id(), filename="g.jpg", input_path="x/input/g")
    outcome = jobstore.record_results([ok(ghost)])
    assert outcome.ignored == 1 and outcome.jobs == {}


def test_mark_notified_once(jobstore):
    job, _ = make_job(jobstore, n=1)
    assert jobstore.mark_notified(job.job_id, domain.utcnow()) is True
    assert jobstore.mark_notified(job.job_id, domain.utcnow()) is False
    assert jobstore.get_job(job.job_id).notified_at


def test_update_job_fields(jobstore):
    job, _ = make_job(jobstore, n=1)
    updated = jobstore.update_job(job.job_id, status="processing", name="holiday")
    assert updated.status == "processing" and jobstore.get_job(job.job_id).name == "holiday"


def test_list_jobs_newest_first_with_filters(jobstore):
    owner = new_id()
    made = []
    for _ in range(3):
        made.append(make_job(jobstore, n=1, owner=owner)[0])
        time.sleep(0.01)
    jobs = jobstore.list_jobs(owner=owner)
    assert [j.job_id for j in jobs] == [j.job_id for j in reversed(made)]
    page = jobstore.list_jobs(owner=owner, limit=2)
    rest = jobstore.list_jobs(owner=owner, limit=2, before=page[-1].created_at)
    assert [j.job_id for j in page + rest] == [j.job_id for j in reversed(made)]
    assert jobstore.list_jobs(owner=owner, status="completed") == []


def test_delete_job_removes_images(jobstore):
    job, images = make_job(jobstore, n=2)
    assert jobstore.delete_job(job.job_id) is True
    assert jobstore.get_job(job.job_id) is None
    assert jobstore.get_image(job.job_id, images[0].image_id) is None
    assert jobstore.delete_job(job.job_id) is False


def test_paging_over_jobs_created_in_the_same_millisecond_skips_and_repeats_none(jobstore):
    from imageflow.jobstore import iter_jobs, page_jobs
    owner = new_id()
    made = {make_job(jobstore, n=1, owner=owner, created_at="2026-01-01T00:00:00.000Z")[0].job_id for _ in range(7)}
    made.add(make_job(jobstore, n=1, owner=owner, created_at="2025-12-31T23:59:59.999Z")[0].job_id)
    seen, cursor = [], None
    while True:
        page, cursor = page_jobs(jobstore, owner=owner, limit=3, cursor=cursor)
        seen += [j.job_id for j in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == len(made)
    assert [j.job_id for j in iter_jobs(jobstore, owner=owner, page_size=2)] == seen


def test_repairs_find_exactly_the_jobs_that_need_them(jobstore):
    from imageflow.jobstore import REPAIR_COMPLETION, REPAIR_WEBHOOK

    claimed, _ = make_job(jobstore, n=1)
    jobstore.mark_notified(claimed.job_id, domain.utcnow())               # claimed, never published
    published, _ = make_job(jobstore, n=1)
    jobstore.mark_notified(published.job_id, domain.utcnow())
    jobstore.update_job(published.job_id, completion_message_id="m-1")  # claimed and published
    untouched, _ = make_job(jobstore, n=1)
    hook, _ = make_job(jobstore, n=1, webhook_url="https://example.com/h", webhook_status="pending")
    delivered, _ = make_job(jobstore, n=1, webhook_url="https://example.com/h", webhook_status="delivered")
    mine = {claimed.job_id, published.job_id, untouched.job_id, hook.job_id, delivered.job_id}
    assert {j.job_id for j in jobstore.iter_repairs(REPAIR_COMPLETION)} & mine == {claimed.job_id}
    assert {j.job_id for j in jobstore.iter_repairs(REPAIR_WEBHOOK)} & mine == {hook.job_id}
    jobstore.update_job(claimed.job_id, completion_message_id="m-2")
    jobstore.update_job(hook.job_id, webhook_status="delivered")
    assert not {j.job_id for j in jobstore.iter_repairs(REPAIR_COMPLETION)} & mine
    assert not {j.job_id for j in jobstore.iter_repairs(REPAIR_WEBHOOK)} & mine


def test_quota_reservations_are_atomic_and_lapse_with_their_jobs(jobstore):
    """Twelve threads reserve against a limit of 2 active jobs: exactly 2 pass. A finished job frees its place."""
    from concurrent.futures import ThreadPoolExecutor

    owner = f"owner-{new_id()[:8]}"

    class Refused(Exception):
        pass

    def at_most_two(active, images):
        if len(active) >= 2:
            raise Refused(len(active))

    def reserve(_):
        job_id = new_id()
        try:
            jobstore.reserve_quota(owner, job_id, 1, at_most_two)
        except Refused:
            return None
        return job_id

    with ThreadPoolExecutor(12) as pool:
        granted = [j for j in pool.map(reserve, range(12)) if j]
    assert len(granted) == 2
    job = Job(job_id=granted[0], total=1, owner=owner)
    image = Image(job_id=job.job_id, image_id=new_id(), filename="a.png", input_path="x")
    jobstore.create_job(job, [image])
    jobstore.record_results([bad(image)])          # the job finishes: its place is free again
    jobstore.release_quota(owner, granted[1])      # the other job was never created
    assert reserve(0) and reserve(0) and not reserve(0)
