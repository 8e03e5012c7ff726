"""object finalize -> a directly uploaded image joins its open job. Events are joined a batch at a
time (one store transaction per job per batch, ``DirectUploads.join``): uploads land in bursts."""
from __future__ import annotations

from dataclasses import dataclass

from imageflow.blobstore import BlobStore
from imageflow.bus import MessageBus
from imageflow.direct_uploads import DirectUploads, UploadEvent, upload_event
from imageflow.jobstore import JobStore
from imageflow.settings import Settings

from .batcher import ResultBatcher

UPLOAD_BATCH = 100            # object events joined together (and the subscription's flow control)
UPLOAD_BATCH_SECONDS = 0.25   # the longest an event waits for others


@dataclass
class Uploads:
    settings: Settings
    jobs: JobStore
    bus: MessageBus
    blobs: BlobStore | None

    @property
    def direct_uploads(self) -> DirectUploads:
        return DirectUploads(self.settings, self.jobs, self.bus, self.blobs)

    @staticmethod
    def upload_event(attributes: dict, data: bytes) -> UploadEvent | None:
        """The direct upload an object event announces (``direct_uploads.upload_event``)."""
        return upload_event(attributes, data)

    def join_uploads(self, events: list[UploadEvent]) -> dict[str, str]:
        """A batch of landed direct uploads joins their jobs (``DirectUploads.join``)."""
        return self.direct_uploads.join(events)

    def join_uploaded(self, attributes: dict, data: bytes) -> str | None:
        """The outcome for one object event: None when ignored, else what happened (for logs and tests)."""
        event = self.upload_event(attributes, data)
        return None if event is None else self.join_uploads([event])[event.image_id]

    def join_landed(self, job_id: str) -> dict[str, str]:
        """Every landed upload of the job that its event has not joined yet (before a close)."""
        return self.direct_uploads.join_landed(job_id)

    def batcher(self) -> ResultBatcher:
        """Events joined a batch at a time, after a short wait so a burst shares one."""
        return ResultBatcher(self.join_uploads, interval=UPLOAD_BATCH_SECONDS, max_batch=UPLOAD_BATCH)


def batched_object_events(uploads: Uploads, batcher: ResultBatcher):
    """The uploads subscription's callback: each object event goes to ``batcher`` (ignored ones as
    None, acked with their batch), which joins them with ``uploads.join_uploads``."""
    return lambda message: batcher.add(uploads.upload_event(message.attributes or {}, message.data), message)

