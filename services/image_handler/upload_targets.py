"""Direct-upload targets as a use case, without Flask: where the client sends each file of an
open job itself (a resumable Cloud Storage session on GCP, a signed image-handler URL locally).

Nothing joins the job here: each image does when its object lands (the object-finalize event
reaches the interaction manager, imageflow.direct_uploads). A file refused by what it announces
(its size, its type) is listed with its reason; the others get a target.
"""
from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlencode

from imageflow import domain
from imageflow.engine.decoding import type_for_name
from imageflow.domain import Job

from .bodies import refuse_unknown
from .errors import Refused, RefusalCode
from .intake import ACCEPTED_TYPES, Intake
from .openapi import DirectUploadFile

MAX_DIRECT_UPLOADS = 1000  # upload targets per request
DIRECT_UPLOAD_FIELDS = set(DirectUploadFile.model_fields)


@dataclass
class UploadTargets:
    """``sign(url, ttl)`` signs a local upload link (Auth.sign_link, even while keys are off: the
    link is the upload's only authorisation); ``base_url`` is the origin the caller reached us at."""

    intake: Intake
    sign: Callable[[str, int], str]
    base_url: str

    def create(self, job: Job, files, origin: str | None = None) -> dict:
        """``{"job_id", "uploads": [...], "rejected": [...]}`` for the announced ``files``
        (``[{"filename", "bytes", "content_type"?}]``); ``origin`` is the browser's, for CORS."""
        if not isinstance(files, list) or not files or len(files) > MAX_DIRECT_UPLOADS:
            raise Refused(RefusalCode.MALFORMED_REQUEST, 'send {"files": [{"filename": ..., "bytes": ...}, ...]} '
                                                         f"with 1 to {MAX_DIRECT_UPLOADS} files")
        intake = self.intake
        intake.check_open(job)
        intake.check_room(job.total, len(files))
        # the quota as far as this job shows it; each upload is checked again, atomically, when it
        # lands (the interaction manager refuses one past QUOTA_ACTIVE_IMAGES as a failed image)
        intake.check_quota_room(job, len(files))
        ttl = intake.settings.signed_url_ttl_seconds
        expires_at = (datetime.now(timezone.utc) + timedelta(seconds=ttl)).isoformat(timespec="seconds")
        uploads, rejected = [], []
        for index, item in enumerate(files):
            name, size, content_type = self._announced(index, item)
            refusal = self._refusal(name, size, content_type)
            if refusal:
                rejected.append({"filename": name, "error": refusal})
                continue
            image_id = domain.new_id()
            target = self._target(job.job_id, image_id, name, size, content_type, origin)
            uploads.append({"image_id": image_id, "filename": name, **target, "expires_at": expires_at})
        return {"job_id": job.job_id, "uploads": uploads, "rejected": rejected}

    @staticmethod
    def _announced(index: int, item) -> tuple[str, int, str]:
        """The file's display name, size and type as the client announced them (400 if malformed)."""
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str) \
                or not isinstance(item.get("bytes"), int) or isinstance(item.get("bytes"), bool):
            raise Refused(RefusalCode.MALFORMED_REQUEST, f"files[{index}] needs a 'filename' string and a "
                                                         "'bytes' integer")
        refuse_unknown(item, DIRECT_UPLOAD_FIELDS, where=f"files[{index}].")
        name = domain.display_name(item["filename"], "(unnamed)")
        # our own extension table first: the system's has no TGA or DDS, and calls .sgi a sealed GIF
        declared = item.get("content_type")
        if declared in (None, "", "application/octet-stream"):   # no type said: the name's extension
            declared = type_for_name(name) or mimetypes.guess_type(name)[0]
        return name, item["bytes"], declared or ""

    def _refusal(self, name: str, size: int, content_type: str) -> dict | None:
        limit = self.intake.settings.max_upload_bytes
        if not 0 < size <= limit:
            return {"code": RefusalCode.FILE_TOO_LARGE if size > 0 else RefusalCode.EMPTY_FILE,
                    "message": f"{name}: a file must be 1 byte to {limit // (1024 * 1024)} MB (MAX_UPLOAD_BYTES)"}
        if content_type not in ACCEPTED_TYPES:
            return {"code": RefusalCode.UNSUPPORTED_IMAGE, "message": f"{name}: {content_type or 'this type'} is not an image "
                                                            f"type ImageFlow takes ({', '.join(ACCEPTED_TYPES)})"}
        return None

    def _target(self, job_id: str, image_id: str, name: str, size: int, content_type: str,
                origin: str | None) -> dict:
        """Where and how to send the file: the store's upload session, or a signed local link."""
        ttl = self.intake.settings.signed_url_ttl_seconds
        path = domain.input_path(job_id, image_id, name)
        try:
            target = self.intake.blobs.upload_target(path, content_type, size, domain.direct_upload_metadata(name),
                                                     ttl, origin=origin)
        except Exception as exc:
            raise Refused(RefusalCode.UNAVAILABLE, "could not prepare the uploads (storage is unavailable); "
                                                   "try again shortly") from exc
        if target is None:  # local store: the image-handler takes the bytes, signed for this one file
            query = urlencode({"name": name, "bytes": size, "type": content_type})
            url = self.sign(f"{self.base_url}/api/v1/jobs/{job_id}/uploads/{image_id}?{query}", ttl)
            return {"url": url, "method": "PUT", "headers": {"Content-Type": content_type}}
        return {"url": target.url, "method": target.method, "headers": target.headers}
