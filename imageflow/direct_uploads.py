"""Direct uploads join their open job: from the object-finalize event (the interaction manager)
and, whatever order they arrive in, from close (the image-handler, and the idle auto-close).

Close lists the job's landed direct uploads and joins those its events have not joined yet, so
an upload the store acknowledged before the close is in the job even when its event is still on
the bus (docs/api.md "What close guarantees"). Joining is idempotent: the event that arrives
later finds the image in the job.
"""
from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, replace

from imageflow import domain, fair_share
from imageflow.blobstore import OBJECT_FINALIZE, BlobNotFound, BlobStore
from imageflow.bus import MessageBus
from imageflow.domain import ErrorCode
from imageflow.jobstore import (JobClosed, JobStore, TooManyImages, iter_images, quota_room, unfinished_cost,
                                 unfinished_images)
from imageflow.settings import Settings
from imageflow.upload_check import UploadRefused, check_upload

log = logging.getLogger(__name__)

INPUT_OBJECT = re.compile(r"^(?P<job>[0-9a-f]{32})/input/(?P<image>[0-9a-f]{32})-[^/]+$")


@dataclass
class UploadEvent:
    """A direct upload that landed: the object, the job it goes to, and its facts."""

    job_id: str
    image_id: str
    path: str
    info: dict          # the object resource (size, metadata), as the finalize event carries it
    filename: str       # the client's name, cleaned for display


def upload_event(attributes: dict, data: bytes) -> UploadEvent | None:
    """The direct upload an object event announces, or None for other objects (outputs, the
    API's own originals) and other events."""
    if attributes.get("eventType") != OBJECT_FINALIZE:
        return None
    try:
        info = json.loads(data or b"{}")
    except ValueError:
        info = {}
    return _landed(attributes.get("objectId") or "", info if isinstance(info, dict) else {})


def _landed(path: str, info: dict) -> UploadEvent | None:
    match = INPUT_OBJECT.match(path)
    client_name = domain.direct_upload_name(info.get("metadata")) if match else None
    if client_name is None:
        return None
    return UploadEvent(match["job"], match["image"], path, info, domain.display_name(client_name))


@dataclass
class DirectUploads:
    settings: Settings
    jobs: JobStore
    bus: MessageBus
    blobs: BlobStore

    def join_landed(self, job_id: str) -> dict[str, str]:
        """Join every direct upload of an open job whose object has landed but that is not in
        the job yet (its finalize event is still on its way): what close runs first. Returns
        {image_id: outcome} for those it found."""
        prefix = f"{job_id}/input/"
        candidates = {}
        for path in self.blobs.list(prefix):
            match = INPUT_OBJECT.match(path)
            if match and match["job"] == job_id:
                candidates[match["image"]] = path
        if not candidates:
            return {}
        # the images already in the job (joined by their event, or the API's own uploads) are
        # skipped without reading their objects: only the ones still in flight are checked
        for image in iter_images(self.jobs, job_id):
            candidates.pop(image.image_id, None)
            if not candidates:
                return {}
        events = []
        for path in candidates.values():
            try:
                info = {"metadata": self.blobs.metadata(path)}
            except BlobNotFound:  # deleted meanwhile (refused, or the job was deleted)
                continue
            event = _landed(path, info)
            if event is not None:
                events.append(event)
        if events:
            log.info("job %s: %d landed uploads joined at close, ahead of their events", job_id, len(events))
        return self.join(events)

    def join(self, events: list[UploadEvent]) -> dict[str, str]:
        """Direct uploads that landed, a batch at a time: each is checked like an upload, then
        each job's images join it in one store transaction (``JobStore.join_images``: the quota
        and MAX_FILES_PER_JOB checked there too) and their tasks are published. Idempotent: a
        redelivered event finds its image in the job, and only the images added now get a task.
        Returns {image_id: outcome}: joined, failed (refused by a check: the job shows it with
        the reason), duplicate, late (the job is closed or gone: the object is deleted) or
        refused (no room: deleted)."""
        by_job: dict[str, dict[str, UploadEvent]] = defaultdict(dict)
        for event in events:
            by_job[event.job_id].setdefault(event.image_id, event)
        outcomes: dict[str, str] = {}
        for job_id, job_events in by_job.items():
            outcomes.update(self._join_job(job_id, list(job_events.values())))
        return outcomes

    def _join_job(self, job_id: str, events: list[UploadEvent]) -> dict[str, str]:
        job = self.jobs.get_job(job_id)
        if job is None or not job.is_open:
            return self._late(job, events)
        now = domain.utcnow()
        images = []
        for event in events:
            code, error, mime, size, megapixels = self._check_object(event.path, event.info)
            image = domain.Image(job_id=job_id, image_id=event.image_id, filename=event.filename,
                                 input_path=event.path, input_content_type=mime, input_bytes=size,
                                 input_megapixels=megapixels, cost=domain.image_cost(job.operations, megapixels))
            # a file refused by a check joins as failed, with the reason, in the same transaction
            images.append(replace(image, status=domain.IMAGE_FAILED, error=error, error_code=code, updated_at=now)
                          if error else image)
        quota, budget = self.settings.quota_active_images, self.settings.quota_active_cost
        admit = (lambda active, joining: within_quota(active, joining, quota, budget)) if quota or budget else None
        try:
            joined = self.jobs.join_images(job_id, images, max_total=self.settings.max_files_per_job, now=now,
                                           admit=admit)
        except JobClosed as exc:  # closed meanwhile
            return self._late(exc.job, events)
        except TooManyImages as exc:  # no room for all: those that fit join, one by one
            room = max(0, exc.limit - exc.job.total)
            outcomes = {}
            for event in events[room:]:
                log.info("upload %s refused: %s", event.path, exc)
                self.blobs.delete_prefix(event.path)
                outcomes[event.image_id] = "refused"
            return {**self.join(events[:room]), **outcomes} if room else outcomes
        outcomes = {image_id: "duplicate" for image_id in joined.present}
        queued = [i for i in joined.added if i.status == domain.IMAGE_QUEUED]
        outcomes.update({i.image_id: "failed" for i in joined.added if i.status != domain.IMAGE_QUEUED})
        outcomes.update({i.image_id: "joined" for i in queued})
        fair_share.hand_over(self.settings, self.jobs, self.bus, joined.job, queued)  # within the key's share
        if joined.added:
            log.info("job %s: %d direct uploads joined (%d refused by a check)", job_id, len(joined.added),
                     len(joined.added) - len(queued))
        return outcomes

    def _late(self, job: domain.Job | None, events: list[UploadEvent]) -> dict[str, str]:
        """Uploads for a job that is closed or gone: deleted, unless the job holds them already."""
        outcomes = {}
        for event in events:
            if job is not None and self.jobs.get_image(event.job_id, event.image_id) is not None:
                outcomes[event.image_id] = "duplicate"
                continue
            log.info("upload %s arrived for a job that is %s: deleting it", event.path, job.status if job else "gone")
            self.blobs.delete_prefix(event.path)
            outcomes[event.image_id] = "late"
        return outcomes

    def _check_object(self, path: str, info: dict) -> tuple[str | None, str | None, str | None, int | None,
                                                            float | None]:
        """(error code and why it is refused, or None twice; sniffed type; size; megapixels): the
        upload checks, on a stored object."""
        try:
            size = int(info.get("size") or 0)
        except ValueError:
            size = 0

        def read(limit: int) -> bytes:  # opened only once its announced size is within the limit
            with self.blobs.open(path) as fh:
                return fh.read(limit)

        try:
            checked = check_upload(read, self.settings, size=size)
        except BlobNotFound:
            return ErrorCode.MISSING_INPUT, "the uploaded file is missing from storage", None, None, None
        if isinstance(checked, UploadRefused):
            return checked.code, checked.reason, None, checked.size, None
        probed = checked.info
        return None, None, probed.mime, len(checked.data), domain.megapixels(probed.width, probed.height)


def within_quota(active: list[domain.Job], joining: list[domain.Image], quota: int,
                 budget: int = 0) -> list[domain.Image]:
    """``QUOTA_ACTIVE_IMAGES`` (``quota``) and ``QUOTA_ACTIVE_COST`` (``budget``) for direct uploads
    (an ``AdmitImages``, run in the join's transaction): the images that fit join as they are; the
    rest join as failed images whose reason names the quota (the client sees them in the job's
    image list). 0 = no such quota."""
    room = quota_room(active, quota) if quota else None
    spent = unfinished_cost(active)
    admitted = []
    for image in joining:
        if image.status == domain.IMAGE_QUEUED:
            error = None
            if room is not None and room <= 0:
                error = (f"quota exceeded: the job's owner already has {unfinished_images(active)} unfinished "
                         f"images and the limit is {quota} (QUOTA_ACTIVE_IMAGES)")
            elif budget and spent + image.cost > budget:
                error = (f"quota exceeded: the job's owner has work waiting worth {spent:,.0f} output megapixels, "
                         f"this image adds {image.cost:,.0f} and the limit is {budget:,} (QUOTA_ACTIVE_COST)")
            if error:
                image = replace(image, status=domain.IMAGE_FAILED, error_code=ErrorCode.QUOTA_EXCEEDED,
                                error=f"{error}; send it again (a new upload target) once some have finished")
            else:
                room = room - 1 if room is not None else None
                spent += image.cost
        admitted.append(image)
    return admitted

