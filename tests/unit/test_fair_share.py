"""Fair share between keys (issue 24): the release rule on plain numbers, then the coordinator
releasing held tasks on in-memory ports as results are folded."""
from __future__ import annotations

from collections import Counter

from imageflow import domain, fair_share
from imageflow.fair_share import JobLoad, plan
from imageflow.messages import JobSubmitted, Result, Task
from services.interaction_manager.coordinator import Coordinator
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeJobStore, FakeMessage

FAIR = fair_share.Settings(fair_share_tasks=100, fair_share_min=10)
TOPICS = FAIR.topics


def load(owner, waiting, in_flight=0, created="2025-01-01T00:00:00.000Z", job_id=None, **fields) -> JobLoad:
    job = domain.Job(job_id=job_id or domain.new_id(), owner=owner, created_at=created,
                     status=domain.PROCESSING, total=waiting + in_flight, **fields)
    return JobLoad(job, in_flight=in_flight, waiting=waiting)


def released_per_key(loads, releases) -> Counter:
    owners = {l.job.job_id: l.key for l in loads}
    counts = Counter()
    for job_id, n in releases:
        counts[owners[job_id]] += n
    return counts


def test_one_key_alone_gets_the_whole_budget_and_no_more():
    loads = [load("a", waiting=10_000, in_flight=30)]
    assert released_per_key(loads, plan(loads, FAIR)) == {"a": 70}


def test_a_newcomer_is_released_at_once_while_the_busy_key_waits_for_room():
    a = load("a", waiting=9_000, in_flight=100, created="2025-01-01T00:00:00.000Z")
    b = load("b", waiting=5, created="2025-01-01T00:01:00.000Z")
    releases = plan([a, b], FAIR)
    # two keys waiting: 50 each; a holds 100 already, so only b's 5 go out, first
    assert releases == [(b.job.job_id, 5)]


def test_keys_take_turns_in_slices_and_the_least_served_goes_first():
    a = load("a", waiting=500, in_flight=20)
    b = load("b", waiting=500, in_flight=0)
    releases = plan([a, b], FAIR, slice_size=10)
    assert released_per_key([a, b], releases) == {"a": 30, "b": 50}
    owners = {a.job.job_id: "a", b.job.job_id: "b"}
    assert [owners[j] for j, _ in releases[:4]] == ["b", "a", "b", "a"]  # interleaved on the bus


def test_the_share_never_falls_below_the_minimum():
    loads = [load(f"k{i}", waiting=100) for i in range(20)]  # 100 // 20 = 5 < FAIR_SHARE_MIN 10
    assert set(released_per_key(loads, plan(loads, FAIR)).values()) == {10}


def test_oldest_job_first_within_a_key_and_anonymous_is_one_key():
    old = load(None, waiting=30, created="2025-01-01T00:00:00.000Z")
    new = load(None, waiting=30, created="2025-01-02T00:00:00.000Z")
    other = load("b", waiting=0, in_flight=7)  # nothing waiting: does not split the share
    releases = plan([new, other, old], FAIR)
    assert releases == [(old.job.job_id, 30), (new.job.job_id, 30)]


def test_a_job_being_cancelled_is_released_whole_and_counts_for_nobody():
    cancelled = load("a", waiting=500, in_flight=100, cancel_requested_at="2025-01-01T00:00:00.000Z")
    b = load("b", waiting=5)
    assert plan([cancelled, b], FAIR) == [(cancelled.job.job_id, 500), (b.job.job_id, 5)]


# -- the coordinator on fakes ------------------------------------------------------------------------
def submit(jobs, owner, n, created):
    job = domain.Job(job_id=domain.new_id(), owner=owner, total=n, created_at=created, operations=[{"op": "grayscale"}])
    images = [domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename=f"{i}.png",
                           input_path=f"{job.job_id}/input/{i}", seq=i) for i in range(n)]
    jobs.create_job(job, images)
    return job


def test_the_coordinator_holds_a_big_job_and_releases_as_results_fold():
    jobs, bus = FakeJobStore(), FakeBus()
    coordinator = Coordinator(FAIR, jobs, bus, FakeBlobStore())
    big = submit(jobs, "a", 1_000, "2025-01-01T00:00:00.000Z")
    coordinator.handle_job_submitted(FakeMessage(JobSubmitted(job_id=big.job_id).encode()))
    assert len(bus.messages(TOPICS.tasks, Task)) == 100                     # its share, not 1,000
    assert coordinator.outstanding_tasks() == 1_000                         # KEDA still sees the whole backlog
    assert not jobs.get_job(big.job_id).tasks_published

    small = submit(jobs, "b", 5, "2025-01-01T00:01:00.000Z")
    coordinator.handle_job_submitted(FakeMessage(JobSubmitted(job_id=small.job_id).encode()))
    tasks = bus.messages(TOPICS.tasks, Task)
    assert [t.job_id for t in tasks[100:]] == [small.job_id] * 5            # b at once, a holds its 100
    assert jobs.get_job(small.job_id).tasks_published

    # b has nothing left waiting, so a is the only key waiting: 60 of a's results make room for 60 more
    coordinator.fold([Result(job_id=t.job_id, image_id=t.image_id, status="succeeded") for t in tasks[:60]])
    assert len(bus.messages(TOPICS.tasks, Task)) == 165
    coordinator.fold([Result(job_id=t.job_id, image_id=t.image_id, status="succeeded") for t in tasks[100:105]])
    assert jobs.get_job(small.job_id).status == domain.COMPLETED
    assert len(bus.messages(TOPICS.tasks, Task)) == 165      # a still holds its 100
    # a third key arrives while a is at 100: split in two, a waits for room, c goes out at once
    third = submit(jobs, "c", 80, "2025-01-01T00:02:00.000Z")
    coordinator.fan_out(third.job_id)
    assert [t.job_id for t in bus.messages(TOPICS.tasks, Task)[165:]] == [third.job_id] * 50
    coordinator.fold([Result(job_id=t.job_id, image_id=t.image_id, status="succeeded")
                      for t in bus.messages(TOPICS.tasks, Task)[60:100]])   # a: 60 in flight -> none more
    assert len(bus.messages(TOPICS.tasks, Task)) == 215
    coordinator.fold([Result(job_id=t.job_id, image_id=t.image_id, status="succeeded")
                      for t in bus.messages(TOPICS.tasks, Task)[105:125]])  # a: 40 in flight -> 10 more
    assert len(bus.messages(TOPICS.tasks, Task)) == 225

    # then every result in turn, until a's last task is out: each task once, the job completes
    coordinator.fold([Result(job_id=t.job_id, image_id=t.image_id, status="succeeded")
                      for t in bus.messages(TOPICS.tasks, Task)[125:]])
    done = 0
    while done < len(bus.messages(TOPICS.tasks, Task)):
        batch = bus.messages(TOPICS.tasks, Task)[done:]
        coordinator.fold([Result(job_id=t.job_id, image_id=t.image_id, status="succeeded") for t in batch])
        done += len(batch)
    tasks = bus.messages(TOPICS.tasks, Task)
    assert len(tasks) == len({t.image_id for t in tasks}) == 1_085
    for job in (big, third):
        assert jobs.get_job(job.job_id).status == domain.COMPLETED and jobs.get_job(job.job_id).tasks_published


def test_the_sweep_releases_what_a_crash_mid_release_left_held():
    jobs, bus = FakeJobStore(), FakeBus()
    big = submit(jobs, "a", 300, "2025-01-01T00:00:00.000Z")
    jobs.update_job(big.job_id, status=domain.PROCESSING)   # fanned out, then the manager died before releasing
    restarted = Coordinator(FAIR, jobs, bus, FakeBlobStore())
    restarted.sweep()
    assert len(bus.messages(TOPICS.tasks, Task)) == 100


def test_images_joining_an_open_job_ask_the_manager_instead_of_publishing():
    jobs, bus = FakeJobStore(), FakeBus()
    job = domain.Job(job_id=domain.new_id(), owner="a", status=domain.OPEN)
    image = domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename="x.png", input_path="x")
    fair_share.hand_over(FAIR, jobs, bus, job, [image])
    assert not bus.published.get(TOPICS.tasks)
    assert [m.job_id for m in bus.messages(TOPICS.jobs, JobSubmitted)] == [job.job_id]
    off = fair_share.Settings(fair_share_tasks=0)
    jobs.create_job(job, [image])
    fair_share.hand_over(off, jobs, bus, job, [image])                # off: published at once, as before
    assert [t.image_id for t in bus.messages(TOPICS.tasks, Task)] == [image.image_id]
    assert jobs.get_image(job.job_id, image.image_id).tasked
