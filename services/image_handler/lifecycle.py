"""The job lifecycle (issue 16) as use cases, without Flask: cancel a job, retry its failures,
re-run it with other operations from its stored originals.

The image-handler only records what was asked on the job and announces it with
``job.submitted``; the interaction manager's usual fan-out and folding do the rest, and the
processors skip the tasks of a cancelled job (services.image_processor.job_gate). The
processors read no job document: a cancel reaches them as the job's cancel marker in the
blob store (domain.cancel_marker), written here before the job records the cancel and lifted
by a retry before its tasks are queued again.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Callable

from imageflow import domain
from imageflow.domain import Image, Job

from .errors import Refused, RefusalCode
from .intake import Created, Intake, JobRequest

log = logging.getLogger(__name__)

RERUN_SELECTIONS = {
    "all": None,
    "failed": (domain.IMAGE_FAILED, domain.IMAGE_SKIPPED),
    "succeeded": (domain.IMAGE_SUCCEEDED,),
}
# queued images of a finished job are those of a retry interrupted before it re-queued the job
RETRYABLE = (domain.IMAGE_FAILED, domain.IMAGE_SKIPPED, domain.IMAGE_QUEUED)


@dataclass
class Lifecycle:
    """Cancel, retry and re-run over the ports (and the caller's quota) of ``intake``."""

    intake: Intake

    def cancel(self, job: Job) -> Job:
        """Images not yet started are skipped, those being rendered finish; the job then ends
        ``cancelled`` with its counts and notifies as any finished job. Idempotent."""
        if job.is_terminal:
            raise Refused(RefusalCode.JOB_FINISHED, f"job {job.job_id} has already finished ({job.status}); "
                                                    "there is nothing left to cancel")
        if job.is_open:  # the cancel closes it: the uploads already acknowledged join first (as close), then are skipped
            self.intake.join_landed(job, "cancel")
        # the marker first: if it cannot be written the job is unchanged and the cancel can be sent again
        marker = json.dumps({"job_id": job.job_id, "cancel_requested_at": domain.utcnow()}).encode("utf-8")
        self.intake.blobs.put(domain.cancel_marker(job.job_id), marker, "application/json", cache_control="no-store")
        changed = self.intake.jobs.transition(job.job_id, domain.request_cancel(domain.utcnow()))
        if changed is None:  # cancelling already
            return job
        log.info("job %s: cancel requested by %s", job.job_id, job.owner or "anonymous")
        if job.is_open:  # the cancel closed it: announce it as a close does (tasks missing, or finished already)
            self.intake.announce(job.job_id)
        return changed

    def retry(self, job: Job) -> tuple[Job, int]:
        """The job's failed images (the dead-lettered and the skipped included) queued again with
        the same operations: the job runs again and notifies again. The job and how many were retried."""
        if not job.is_terminal:
            raise Refused(RefusalCode.JOB_ACTIVE, f"job {job.job_id} is {job.status}; retry it once it has finished")
        store = self.intake.jobs
        images = store.list_images(job.job_id)
        targets = [i for i in images if i.status in RETRYABLE]
        if not targets:
            raise Refused(RefusalCode.NOTHING_TO_RETRY, f"job {job.job_id} has no failed images to retry")
        self._originals_kept(job, targets, "retry")
        # lifted before the job runs again, so no task of this run meets a cancel of the last one
        self.intake.blobs.delete_prefix(domain.cancel_marker(job.job_id))
        if self.intake.admit:  # the job becomes active again: its retried images count against the quota
            self.intake.admit(job.job_id, len(targets), round(sum(i.cost for i in targets), 3))
        now = domain.utcnow()
        requeued = {i.image_id: domain.requeue(i, now) for i in targets}
        store.update_images(job.job_id, list(requeued.values()))
        counted = domain.recount(job, [requeued.get(i.image_id, i) for i in images], now)
        start = domain.start_retry(counted)
        # declined too if the input sweep deleted the originals since they were checked above
        retried = store.transition(job.job_id, lambda current: None if current.inputs_deleted_at else start(current))
        if retried is None:
            self._originals_kept(store.get_job(job.job_id) or job, targets, "retry")
            raise Refused(RefusalCode.JOB_ACTIVE, f"job {job.job_id} is already running again")
        self.intake.announce(retried.job_id)
        log.info("job %s: run %d retries %d images", retried.job_id, retried.run, len(targets))
        return retried, len(targets)

    def rerun(self, parent: Job, fields: dict, only: str, job_request: Callable[[dict], JobRequest]) -> Created:
        """A new job over ``parent``'s stored originals (``only`` all, failed or succeeded ones),
        with the options in ``fields`` made a request by ``job_request``; without operations or
        a preset it runs the parent's again."""
        if not parent.is_terminal:
            raise Refused(RefusalCode.JOB_ACTIVE, f"job {parent.job_id} is {parent.status}; re-run it once it has finished")
        if fields.get("operations") is None and not fields.get("preset"):
            fields = {**fields, "operations": parent.operations}
        request = job_request(fields)
        wanted = RERUN_SELECTIONS[only]
        sources = [i for i in self.intake.jobs.list_images(parent.job_id) if wanted is None or i.status in wanted]
        if not sources:
            raise Refused(RefusalCode.NOTHING_TO_RERUN, f"job {parent.job_id} has no {only} images to re-run")
        self._originals_kept(parent, [s for s in sources if not _fetched_again(s)], "re-run")
        job = replace(request.new_job(), parent_job_id=parent.job_id)
        images = [rerun_image(job, source) for source in sources]
        job.cost = round(sum(image.cost for image in images), 3)
        with self.intake.reserved(job, len(images), job.cost):  # the caller's quota, held atomically as for any new job
            created = self.intake.record(job, images, [])
        self.intake.jobs.transition(parent.job_id, domain.add_child(job.job_id))
        log.info("job %s re-runs %d images of %s", job.job_id, len(images), parent.job_id)
        return created


    def _originals_kept(self, job: Job, images: list[Image], action: str) -> None:
        """Refuse (410) when the stored originals these images read were deleted by
        INPUT_RETENTION_HOURS: the job's own, or the parent's it re-runs."""
        for owner_id in sorted({domain.originals_job(i) for i in images}):
            owner = job if owner_id == job.job_id else self.intake.jobs.get_job(owner_id)
            deleted = owner.inputs_deleted_at if owner else "expiry"
            if owner is not None and owner.status == domain.EXPIRED:
                deleted = owner.updated_at
            if deleted:
                whose = "its" if owner_id == job.job_id else f"job {owner_id}'s"
                raise Refused(RefusalCode.ORIGINALS_DELETED,
                              f"cannot {action} job {job.job_id}: {whose} original images were deleted at {deleted} "
                              f"(INPUT_RETENTION_HOURS after completion); the outputs are kept. Submit the "
                              "originals again in a new job", [{"job_id": owner_id, "inputs_deleted_at": deleted}])


def _fetched_again(source: Image) -> bool:
    """A URL image never fetched is fetched again by the re-run: it needs no stored original."""
    return bool(source.source_url) and source.status != domain.IMAGE_SUCCEEDED


def rerun_image(job: Job, source: Image) -> Image:
    """The new job's image reads the parent's stored original. An image whose URL was never
    fetched is fetched again into the new job's own input path."""
    job_id, image_id = job.job_id, domain.new_id()
    unfetched = _fetched_again(source)
    path = domain.input_path(job_id, image_id, source.filename) if unfetched else source.input_path
    return Image(job_id=job_id, image_id=image_id, filename=source.filename, input_path=path,
                 input_content_type=source.input_content_type, input_bytes=source.input_bytes,
                 source_url=source.source_url if unfetched else None, meta=dict(source.meta or {}),
                 input_megapixels=source.input_megapixels,
                 cost=domain.image_cost(job.operations, source.input_megapixels))
