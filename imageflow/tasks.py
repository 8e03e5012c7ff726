"""Putting images' tasks on the bus: the one way every path does it (the manager's fan-out and
fair-share releases, images joining an open job with fair share off)."""
from __future__ import annotations

from . import domain
from .bus import MessageBus
from .jobstore import JobStore
from .settings import Settings


def publish_tasks(settings: Settings, jobs: JobStore, bus: MessageBus, job: domain.Job,
                  images: list[domain.Image]) -> int:
    """Publish each image's task, then record them as tasked (``mark_tasked``, one write); returns
    how many. The record follows the publish: a crash between the two leaves the images untasked,
    so the fan-out publishes them again, which a processor shrugs off (never the other way round,
    which would lose them). If a publish fails, those already published are recorded and the
    error is raised: the rest stay untasked for the next fan-out or release."""
    published: list[str] = []
    try:
        for image in images:
            bus.publish(settings.topics.tasks, domain.task_for(job, image).encode(), {"job_id": job.job_id})
            published.append(image.image_id)
    finally:
        if published:
            jobs.mark_tasked(job.job_id, published)
    return len(published)
