"""The interaction manager's part of the job lifecycle (issue 16): what ``job.completed``
says about a job (cancelled, retried, its savings, its signed zip link), and the local
retention sweep.

Cancel, retry and re-run need nothing else here: the image-handler records them on the job
and publishes ``job.submitted``, and the usual fan-out and folding do the rest.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from imageflow import domain, links
from imageflow.blobstore import BlobStore
from imageflow.jobstore import JobStore, cursor_of
from imageflow.messages import JobCompleted
from imageflow.settings import Settings

log = logging.getLogger(__name__)

SWEEP_PAGE = 200


def completed_event(job: domain.Job, settings: Settings) -> JobCompleted:
    """The ``job.completed`` message for ``job``: its counts, run, savings and parent. With keys
    on, its zip link is signed (imageflow.links): whoever gets the email or the webhook opens it
    without a key, until :func:`archive_link_expiry`."""
    event = domain.completed_event(job, settings.public_base_url, settings.job_retention_days)
    if event.archive_url and links.keys_on(settings):
        signer = links.LinkSigner.from_settings(settings)
        event = replace(event, archive_url=signer.sign(event.archive_url, archive_link_expiry(job, settings)))
    return event


def archive_link_expiry(job: domain.Job, settings: Settings) -> int:
    """When the zip link of ``job.completed`` stops working (Unix seconds): when the job's files
    are deleted (created_at + JOB_RETENTION_DAYS); NOTIFICATION_LINK_DAYS after completion when
    they are kept until deleted. From the job alone, so every copy of the event has one link."""
    expiry = domain.retention_expiry(job.created_at, settings.job_retention_days)
    if expiry:
        return int(_parse_iso(expiry).timestamp())
    completed = _parse_iso(job.completed_at) if job.completed_at else datetime.now(timezone.utc)
    return int((completed + timedelta(days=settings.notification_link_days)).timestamp())


def _parse_iso(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tombstone(job: domain.Job, now: str) -> domain.Job:
    """What is kept of an expired job: enough to answer 410 and list it, nothing personal."""
    return domain.Job(job_id=job.job_id, status=domain.EXPIRED, created_at=job.created_at, updated_at=now,
                      completed_at=job.completed_at, total=job.total, succeeded=job.succeeded, failed=job.failed,
                      skipped=job.skipped, owner=job.owner, name=job.name, notified_at=job.notified_at,
                      tasks_published=True, completion_message_id=job.completion_message_id,
                      bytes_in=job.bytes_in, bytes_out=job.bytes_out)


def expire_inputs(settings: Settings, jobs: JobStore, blobs: BlobStore, now: datetime | None = None) -> int:
    """Delete the originals of every job that completed more than ``INPUT_RETENTION_HOURS`` ago
    (outputs stay until ``JOB_RETENTION_DAYS``). The job is marked first (``inputs_deleted_at``,
    only while it is still finished), so a retry or re-run that comes later answers 410 rather
    than failing its images; a job whose re-runs (which read its originals) are still running
    waits for them. Returns how many jobs lost their originals. Both backends: the bucket's
    lifecycle rules cannot single out <job_id>/input/ (they match names from the start)."""
    hours = settings.input_retention_hours
    if hours <= 0:
        return 0
    now = now or datetime.now(timezone.utc)
    cutoff, stamp = _iso(now - timedelta(hours=hours)), _iso(now)
    swept = 0
    for status in domain.TERMINAL_JOB_STATUSES:
        after = (cutoff, "")  # created before the cutoff: it cannot have completed after it
        while batch := jobs.list_jobs(status=status, after=after, limit=SWEEP_PAGE):
            after = cursor_of(batch[-1])
            for job in batch:
                if job.inputs_deleted_at or not job.completed_at or job.completed_at > cutoff:
                    continue
                if any((child := jobs.get_job(c)) is not None and not child.is_terminal for c in job.child_job_ids):
                    continue

                def mark(current: domain.Job) -> dict | None:
                    if not current.is_terminal or current.inputs_deleted_at:
                        return None  # retried meanwhile: its originals are in use again
                    return {"inputs_deleted_at": stamp}

                if jobs.transition(job.job_id, mark) is None:
                    continue
                removed = blobs.delete_prefix(domain.input_prefix(job.job_id))
                swept += 1
                log.info("job %s: %d originals deleted %d hours after it completed", job.job_id, removed, hours)
    return swept


def expire_jobs(settings: Settings, jobs: JobStore, blobs: BlobStore, now: datetime | None = None) -> int:
    """Remove every job created more than ``JOB_RETENTION_DAYS`` ago: its files first, then
    its image records, leaving a tombstone (status ``expired``) so the API answers 410 rather
    than 404. Tombstones go after another retention period. Returns how many jobs expired.
    On GCP the bucket lifecycle and a Firestore TTL do the same from the same setting."""
    days = settings.job_retention_days
    if days <= 0:
        return 0
    now = now or datetime.now(timezone.utc)
    cutoff, stamp = _iso(now - timedelta(days=days)), _iso(now)
    expired = 0
    for status in domain.JOB_STATUSES:
        if status == domain.EXPIRED:
            continue
        while batch := jobs.list_jobs(status=status, after=(cutoff, ""), limit=SWEEP_PAGE):
            for job in batch:
                removed = blobs.delete_prefix(f"{job.job_id}/")
                jobs.delete_job(job.job_id)
                jobs.create_job(tombstone(job, stamp), [])
                expired += 1
                log.info("job %s expired after %d days: %d files removed", job.job_id, days, removed)
    old = _iso(now - timedelta(days=2 * days))
    while batch := jobs.list_jobs(status=domain.EXPIRED, after=(old, ""), limit=SWEEP_PAGE):
        for job in batch:
            jobs.delete_job(job.job_id)
    return expired
