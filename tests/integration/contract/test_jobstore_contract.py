"""Job store contract, for every adapter."""
from __future__ import annotations

import time

import pytest

from imageflow import domain
from imageflow.domain import Image, Job, new_id
from imageflow.jobstore import JobClosed, JobNotFound, TooManyImages, iter_images
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


def bad(image, error="corrupt", code="corrupt"):
    return Result(job_id=image.job_id, image_id=image.image_id, status="failed", error=error, error_code=code)


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
    failed = jobstore.get_image(job.job_id, images[1].image_id)
    assert (failed.error, failed.error_code) == ("not an image", "corrupt")
    assert jobstore.get_image(job.job_id, images[0].image_id).error_code is None


def test_placeholders_and_choices_of_a_result_are_kept_as_given(jobstore):
    job, images = make_job(jobstore, n=1)
    choices = {"quality": 62, "score": 80.41, "target": 80.0, "quality_by": "target", "trim": [0, 12, 800, 545],
               "faces": [{"x": 310, "y": 80, "width": 120, "height": 120}], "gravity": "face",
               "overlay": {"image": "logo.png", "box": [1, 2, 3, 4], "copies": 1}, "color_converted_from": "Display P3"}
    jobstore.record_results([ok(images[0], blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj", dominant_color="#a4502c",
                                choices=choices)])
    image = jobstore.get_image(job.job_id, images[0].image_id)
    assert (image.blurhash, image.dominant_color, image.choices) == ("LEHV6nWB2yk8pyo0adR*.7kCMdnj", "#a4502c", choices)


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


def test_transition_writes_what_the_change_returns_on_the_current_job(jobstore):
    job, _ = make_job(jobstore, n=1, webhook_url="https://h.example/x", webhook_status="pending")
    jobstore.update_job(job.job_id, status="completed")
    seen = []

    def change(current):
        seen.append(current.status)
        return {"webhook_next_at": 123.0} if current.webhook_next_at is None else None

    after = jobstore.transition(job.job_id, change)
    assert seen == ["completed"] and after.webhook_next_at == 123.0 and after.status == "completed"
    assert jobstore.get_job(job.job_id).webhook_next_at == 123.0
    assert jobstore.transition(job.job_id, change) is None            # declined: nothing written
    with pytest.raises(JobNotFound):
        jobstore.transition(new_id(), change)


def test_racing_transitions_lose_no_update(jobstore):
    """Each caller appends to a list; a plain read-modify-write would lose some of them."""
    import threading
    job, _ = make_job(jobstore, n=1)
    barrier = threading.Barrier(4)

    def append(i):
        barrier.wait()
        jobstore.transition(job.job_id, lambda j: {"webhook_attempts": [*j.webhook_attempts, {"n": i}]})

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["n"] for a in jobstore.get_job(job.job_id).webhook_attempts) == [0, 1, 2, 3]


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
    rest = jobstore.list_jobs(owner=owner, limit=2, after=(page[-1].created_at, page[-1].job_id))
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
    # the order is (created_at, job_id) descending, and a cursor starts right after its job
    assert seen == [j for _, j in sorted(((jobstore.get_job(j).created_at, j) for j in made), reverse=True)]
    ties = jobstore.list_jobs(owner=owner, limit=100, after=("2026-01-01T00:00:00.000Z", seen[2]))
    assert [j.job_id for j in ties] == seen[3:]


def test_every_scan_reaches_past_any_page_size(jobstore):
    """More jobs than one page of the scan: iter_jobs reads them all (no silent cap)."""
    from imageflow.jobstore import iter_jobs
    owner = new_id()
    made = {make_job(jobstore, n=0, owner=owner, created_at="2026-02-02T00:00:00.000Z")[0].job_id
            for _ in range(12)}
    assert {j.job_id for j in iter_jobs(jobstore, owner=owner, page_size=5)} == made


def _preset(owner, name, operations, now="2024-05-01T10:00:00.000Z"):
    from imageflow.jobstore import SavedPreset
    return SavedPreset(owner=owner, name=name, operations=operations, created_at=now, updated_at=now)


def test_presets_are_saved_per_owner_listed_by_name_replaced_and_deleted(jobstore):
    owner, other = f"owner-{new_id()}", f"other-{new_id()}"
    jobstore.save_preset(_preset(owner, "Web small", [{"op": "resize", "width": 800}]))
    jobstore.save_preset(_preset(owner, "Archive/2024", [{"op": "format", "format": "png"}]))
    jobstore.save_preset(_preset(other, "Web small", [{"op": "grayscale"}]))
    assert [(p.name, p.operations) for p in jobstore.list_presets(owner)] == [
        ("Archive/2024", [{"op": "format", "format": "png"}]), ("Web small", [{"op": "resize", "width": 800}])]
    assert [p.operations for p in jobstore.list_presets(other)] == [[{"op": "grayscale"}]]

    replaced = jobstore.save_preset(_preset(owner, "Web small", [{"op": "resize", "width": 640}],
                                            now="2024-06-01T10:00:00.000Z"))
    assert (replaced.created_at, replaced.updated_at) == ("2024-05-01T10:00:00.000Z", "2024-06-01T10:00:00.000Z")
    assert [p.operations for p in jobstore.list_presets(owner) if p.name == "Web small"] == [[{"op": "resize", "width": 640}]]

    assert jobstore.delete_preset(owner, "Web small") is True
    assert jobstore.delete_preset(owner, "Web small") is False
    assert [p.name for p in jobstore.list_presets(owner)] == ["Archive/2024"]
    assert [p.name for p in jobstore.list_presets(other)] == ["Web small"]


# -- open jobs, paging and fan-out's resume point (issue 12) ---------------------------------
def open_job(store):
    job = Job(job_id=new_id(), status=domain.OPEN, operations=[{"op": "grayscale"}])
    store.create_job(job, [])
    return job


def new_images(job, n, prefix="f"):
    return [Image(job_id=job.job_id, image_id=new_id(), filename=f"{prefix}{i}.jpg",
                  input_path=domain.input_path(job.job_id, "x", f"{prefix}{i}.jpg")) for i in range(n)]


def test_images_join_an_open_job_in_order_until_it_closes(jobstore):
    job = open_job(jobstore)
    first, second = new_images(job, 2, "a"), new_images(job, 3, "b")
    assert jobstore.add_images(job.job_id, first, max_total=10, now=domain.utcnow()).total == 2
    after = jobstore.add_images(job.job_id, second, max_total=10, now=domain.utcnow())
    assert after.total == 5 and after.status == "open" and after.last_file_at
    listed = jobstore.list_images(job.job_id)
    assert [i.filename for i in listed] == ["a0.jpg", "a1.jpg", "b0.jpg", "b1.jpg", "b2.jpg"]
    assert [i.seq for i in listed] == [0, 1, 2, 3, 4]
    closed = jobstore.close_job(job.job_id, domain.utcnow())
    assert closed.status == "processing" and closed.closed_at and closed.total == 5
    with pytest.raises(JobClosed):
        jobstore.add_images(job.job_id, new_images(job, 1, "late"), max_total=10, now=domain.utcnow())
    assert jobstore.get_job(job.job_id).total == 5


def test_adding_past_the_limit_adds_nothing(jobstore):
    job = open_job(jobstore)
    jobstore.add_images(job.job_id, new_images(job, 3), max_total=4, now=domain.utcnow())
    with pytest.raises(TooManyImages):
        jobstore.add_images(job.job_id, new_images(job, 2, "x"), max_total=4, now=domain.utcnow())
    assert jobstore.get_job(job.job_id).total == 3 and len(jobstore.list_images(job.job_id)) == 3


def test_an_open_job_completes_only_after_close(jobstore):
    job = open_job(jobstore)
    images = new_images(job, 2)
    jobstore.add_images(job.job_id, images, max_total=10, now=domain.utcnow())
    outcome = jobstore.record_results([ok(images[0]), ok(images[1])])
    assert outcome.jobs[job.job_id].status == "open" and outcome.jobs[job.job_id].succeeded == 2
    closed = jobstore.close_job(job.job_id, domain.utcnow())
    assert closed.status == "completed" and closed.completed_at
    # closing again changes nothing
    assert jobstore.close_job(job.job_id, domain.utcnow()).status == "completed"


def test_closing_an_empty_open_job_fails_it(jobstore):
    job = open_job(jobstore)
    assert jobstore.close_job(job.job_id, domain.utcnow()).status == "failed"


def test_images_page_by_seq_and_status(jobstore):
    job, images = make_job(jobstore, n=7)
    jobstore.record_results([bad(images[1]), bad(images[4])])
    page1 = jobstore.page_images(job.job_id, limit=3)
    page2 = jobstore.page_images(job.job_id, after=page1[-1].seq, limit=3)
    page3 = jobstore.page_images(job.job_id, after=page2[-1].seq, limit=3)
    assert [i.image_id for i in page1 + page2 + page3] == [i.image_id for i in images]
    assert len(page3) == 1
    failed = jobstore.page_images(job.job_id, status="failed", limit=10)
    assert [i.image_id for i in failed] == [images[1].image_id, images[4].image_id]
    assert jobstore.page_images(job.job_id, status="failed", after=failed[0].seq, limit=10)[0].image_id \
        == images[4].image_id
    assert [i.image_id for i in iter_images(jobstore, job.job_id, page_size=2)] == [i.image_id for i in images]


def test_untasked_images_are_fan_outs_resume_point(jobstore):
    job, images = make_job(jobstore, n=5)
    assert {i.image_id for i in jobstore.untasked_images(job.job_id)} == {i.image_id for i in images}
    jobstore.mark_tasked(job.job_id, [images[0].image_id, images[1].image_id])
    jobstore.record_results([bad(images[2])])  # finished without a task: nothing to publish
    assert {i.image_id for i in jobstore.untasked_images(job.job_id)} == {images[3].image_id, images[4].image_id}
    assert len(jobstore.untasked_images(job.job_id, limit=1)) == 1
    assert jobstore.get_image(job.job_id, images[0].image_id).tasked


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


def test_reservations_and_joins_carry_the_cost_of_QUOTA_ACTIVE_COST(jobstore):
    """A job still being created counts the cost it reserved (a second reservation of it replaces the
    first); images joining an open job add their cost to the job, read by the next admission."""
    from imageflow.jobstore import unfinished_cost

    owner = f"owner-{new_id()[:8]}"
    seen = []

    def look(active, images):
        seen.append(unfinished_cost([j for j in active]))

    creating = new_id()
    jobstore.reserve_quota(owner, creating, 3, look, cost=0.0)
    jobstore.reserve_quota(owner, creating, 3, look, cost=45.5)        # its files probed: the real cost
    jobstore.reserve_quota(owner, new_id(), 1, look, cost=2.0)
    assert seen[-1] == 45.5                                              # counted once, with its new cost
    job = Job(job_id=new_id(), owner=owner, status=domain.OPEN)
    jobstore.create_job(job, [])
    jobstore.reserve_quota(owner, job.job_id, 0, look)

    def joining(cost, status=domain.IMAGE_QUEUED):
        return Image(job_id=job.job_id, image_id=new_id(), filename="a.png", input_path="x", cost=cost,
                     status=status)

    costs = []
    joined = jobstore.join_images(job.job_id, [joining(4.0), joining(6.0), joining(9.0, domain.IMAGE_FAILED)],
                                  max_total=100, now=domain.utcnow(),
                                  admit=lambda active, imgs: costs.append(unfinished_cost(active)) or imgs)
    assert joined.job.cost == 10.0                                      # a refused image costs nothing
    assert jobstore.get_job(job.job_id).cost == 10.0
    jobstore.join_images(job.job_id, [joining(1.0)], max_total=100, now=domain.utcnow(),
                         admit=lambda active, imgs: costs.append(unfinished_cost(active)) or imgs)
    # the open job's 10 over its 3 images (one done), 2 unfinished -> 6.67, plus the two jobs being created
    assert costs[0] == 45.5 + 2.0 and costs[1] == round(45.5 + 2.0 + 10.0 * 2 / 3, 3)
