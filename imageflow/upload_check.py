"""The one check every uploaded file goes through, however it arrived: a multipart upload (the
image-handler's intake), an overlay file, or a direct upload joining its job (the interaction
manager, imageflow.direct_uploads). Within ``MAX_UPLOAD_BYTES`` (the size announced, when there
is one, then the bytes read), then sniffed and its header probed against the pixel and frame
limits. What the caller makes of a refusal differs (a request-level rejection, a failed image);
the check and its words do not."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from imageflow.domain import ErrorCode
from imageflow.engine import ImageError, Limits, ProbeInfo, probe
from imageflow.settings import Settings


@dataclass(frozen=True)
class UploadRefused:
    """Why a file is refused: ``code`` (FILE_TOO_LARGE, or the engine's), a sentence, and its size
    as far as it is known (announced, or the bytes read: at most the limit and one)."""

    code: ErrorCode
    reason: str
    size: int | None = None

    @property
    def by_engine(self) -> bool:
        """The engine refused it (not its size): the code is one of ``ErrorCode.engine()``."""
        return self.code in ErrorCode.engine()


@dataclass(frozen=True)
class UploadChecked:
    """A file within the size limit whose header the engine read: its bytes and what it is."""

    data: bytes
    info: ProbeInfo


def too_big(limit: int) -> str:
    """The reason a file over ``MAX_UPLOAD_BYTES`` (``limit``) is refused, wherever it is."""
    return f"file is larger than the {limit // (1024 * 1024)} MB limit (MAX_UPLOAD_BYTES)"


def check_upload(read: Callable[[int], bytes], settings: Settings, limits: Limits | None = None,
                 size: int | None = None) -> UploadChecked | UploadRefused:
    """Check one file: ``read(n)`` gives at most ``n`` of its bytes (called once, after ``size``,
    its announced size when known, is within the limit: an object too large is never read)."""
    limit = settings.max_upload_bytes
    if size is not None and size > limit:
        return UploadRefused(ErrorCode.FILE_TOO_LARGE, too_big(limit), size)
    data = read(limit + 1)
    if len(data) > limit:
        return UploadRefused(ErrorCode.FILE_TOO_LARGE, too_big(limit), len(data))
    try:
        info = probe(data, limits or Limits.from_settings(settings))
    except ImageError as exc:
        return UploadRefused(exc.code, exc.reason, len(data))
    return UploadChecked(data, info)
