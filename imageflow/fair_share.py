"""Fair share between keys (issue 24): one key's backlog cannot starve another's.

Tasks reach the bus in slices. Each key (``Job.owner``; None, the anonymous caller, is one key)
may have at most its share of tasks published and not yet finished ("in flight"):

    share = max(FAIR_SHARE_MIN, FAIR_SHARE_TASKS // keys with images waiting)

An image not yet released keeps ``tasked`` false (the flag a crashed fan-out already resumes
from), so the job store holds the queue and nothing is lost when the manager restarts. The
interaction manager releases more as results are folded, a slice per key in turn (the key with
the fewest in flight first), oldest job first within a key. Every path that puts images on the
bus goes through here: the fan-out, the fold, the sweep, and images joining an open job (which
ask the manager with a ``job.submitted`` instead of publishing themselves). The outstanding count
(GET /outstanding, KEDA) counts held images too: the processors scale to the whole backlog.

``FAIR_SHARE_TASKS=0`` turns it off: every task is published at once, as before.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass

from . import domain
from .bus import MessageBus
from .jobstore import JobStore, iter_jobs, outstanding_of
from .messages import JobSubmitted
from .settings import Settings
from .tasks import publish_tasks

log = logging.getLogger(__name__)

SLICE = 50  # tasks one key gets per turn of the round robin (keys' releases interleave on the bus)


def enabled(settings: Settings) -> bool:
    return settings.fair_share_tasks > 0


@dataclass
class JobLoad:
    """One job in progress as the release rule sees it."""

    job: domain.Job
    in_flight: int   # images tasked and unfinished
    waiting: int     # images unfinished and not yet tasked

    @property
    def key(self) -> str | None:
        return self.job.owner


def share(settings: Settings, waiting_keys: int) -> int:
    """How many tasks in flight each key may have while ``waiting_keys`` keys have images waiting."""
    return max(settings.fair_share_min, settings.fair_share_tasks // max(1, waiting_keys))


def plan(loads: list[JobLoad], settings: Settings, slice_size: int = SLICE) -> list[tuple[str, int]]:
    """The release rule, on plain numbers: [(job_id, how many to release)] in publishing order.
    A job being cancelled is released whole (its tasks are skips, cheap) and counts for nobody."""
    releases = [(load.job.job_id, load.waiting) for load in loads if load.job.cancel_requested_at and load.waiting]
    by_key: dict[str | None, list[JobLoad]] = defaultdict(list)
    for load in loads:
        if not load.job.cancel_requested_at:
            by_key[load.key].append(load)
    waiting_keys = [key for key, jobs in by_key.items() if any(j.waiting > 0 for j in jobs)]
    if not waiting_keys:
        return releases
    limit = share(settings, len(waiting_keys))
    room = {key: max(0, limit - sum(j.in_flight for j in by_key[key])) for key in waiting_keys}
    queues = {key: [[j.job.job_id, j.waiting] for j in sorted(by_key[key], key=lambda j: (j.job.created_at, j.job.job_id))
                    if j.waiting > 0] for key in waiting_keys}
    # the least served key goes first, so a newcomer's first slice is on the bus before the next of a busy key
    order = sorted(waiting_keys, key=lambda k: (limit - room[k], min(j.job.created_at for j in by_key[k])))
    while order:
        for key in list(order):
            take = min(slice_size, room[key])
            while take and queues[key]:
                entry = queues[key][0]
                n = min(take, entry[1])
                if releases and releases[-1][0] == entry[0]:  # the same job's turn again: one publish
                    releases[-1] = (entry[0], releases[-1][1] + n)
                else:
                    releases.append((entry[0], n))
                entry[1] -= n
                take -= n
                room[key] -= n
                if not entry[1]:
                    queues[key].pop(0)
            if not room[key] or not queues[key]:
                order.remove(key)
    return releases


class Releaser:
    """Puts held images on the bus within each key's share (one per interaction-manager process;
    its lock keeps the process's own passes from overlapping)."""

    def __init__(self, settings: Settings, jobs: JobStore, bus: MessageBus):
        self.settings, self.jobs, self.bus = settings, jobs, bus
        self._lock = threading.Lock()

    def loads(self) -> list[JobLoad]:
        """Every job in progress (processing or open) with its images in flight and waiting."""
        loads = []
        for status in (domain.PROCESSING, domain.OPEN):
            for job in iter_jobs(self.jobs, status=status):
                unfinished = outstanding_of(job)
                if not unfinished:
                    continue
                in_flight = self.jobs.count_in_flight(job.job_id)
                loads.append(JobLoad(job, in_flight, max(0, unfinished - in_flight)))
        return loads

    def release(self) -> int:
        """One pass of the rule; returns how many tasks it published."""
        with self._lock:
            loads = {load.job.job_id: load for load in self.loads()}
            released: dict[str, int] = defaultdict(int)
            for job_id, count in plan(list(loads.values()), self.settings):
                released[job_id] += self.publish(loads[job_id].job, count)
            for job_id, count in released.items():
                job = loads[job_id].job
                if not job.is_open and count >= loads[job_id].waiting and not self.jobs.untasked_images(job_id, limit=1):
                    self.jobs.transition(job_id, domain.record_tasks_published())  # a closed job's last slice
            return sum(released.values())

    def publish(self, job: domain.Job, limit: int) -> int:
        """Up to ``limit`` of the job's untasked images onto the bus (``tasks.publish_tasks``)."""
        return publish_tasks(self.settings, self.jobs, self.bus, job,
                             self.jobs.untasked_images(job.job_id, limit=limit))


def hand_over(settings: Settings, jobs: JobStore, bus: MessageBus, job: domain.Job, images: list[domain.Image]) -> None:
    """Images that joined an open job: with fair share on, a ``job.submitted`` asks the manager to
    release them within the key's share (if it is lost, the sweep's fan-out finds them); off, each
    task is published at once and recorded. A failure leaves the rest untasked, for the fan-out."""
    if not images:
        return
    if enabled(settings):
        try:
            bus.publish(settings.topics.jobs, JobSubmitted(job_id=job.job_id).encode(), {"job_id": job.job_id})
        except Exception:
            log.exception("job %s: could not ask for its new tasks; the sweep will release them", job.job_id)
        return
    try:
        publish_tasks(settings, jobs, bus, job, images)
    except Exception:  # what is unrecorded stays untasked: fan-out publishes it (again), which is harmless
        log.exception("job %s: publishing tasks failed; fan-out will publish the rest", job.job_id)
