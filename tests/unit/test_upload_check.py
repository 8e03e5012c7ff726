"""imageflow.upload_check: the one check of an uploaded file (multipart intake, overlays, a direct
upload joining its job), and what each caller makes of a refusal."""
from __future__ import annotations

import io

from PIL import Image

from imageflow.domain import ErrorCode
from imageflow.settings import Settings
from imageflow.upload_check import UploadChecked, UploadRefused, check_upload, too_big
from services.image_handler.errors import RefusalCode
from services.image_handler.intake import Rejected, check_file

SETTINGS = Settings(max_upload_bytes=1024 * 1024)


def png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


class Reads:
    """A file that counts how it is read."""

    def __init__(self, data: bytes, filename: str = "a.png"):
        self.data, self.filename, self.asked = data, filename, []

    def read(self, limit: int) -> bytes:
        self.asked.append(limit)
        return self.data[:limit]


def test_a_good_file_is_read_once_within_the_limit_and_probed():
    upload = Reads(png())
    checked = check_upload(upload.read, SETTINGS)
    assert isinstance(checked, UploadChecked) and checked.info.mime == "image/png"
    assert (checked.info.width, checked.info.height) == (40, 30) and upload.asked == [1024 * 1024 + 1]


def test_an_announced_size_over_the_limit_is_refused_without_reading():
    upload = Reads(png())
    refused = check_upload(upload.read, SETTINGS, size=2 * 1024 * 1024)
    assert refused == UploadRefused(ErrorCode.FILE_TOO_LARGE, too_big(1024 * 1024), 2 * 1024 * 1024)
    assert upload.asked == [] and not refused.by_engine
    assert refused.reason == "file is larger than the 1 MB limit (MAX_UPLOAD_BYTES)"


def test_bytes_past_the_limit_and_files_the_engine_refuses_carry_their_code():
    assert check_upload(Reads(b"x" * (2 * 1024 * 1024)).read, SETTINGS).code == ErrorCode.FILE_TOO_LARGE
    empty = check_upload(Reads(b"").read, SETTINGS)
    assert (empty.code, empty.size, empty.by_engine) == (ErrorCode.EMPTY, 0, True)
    assert check_upload(Reads(b"/* XPM */\n").read, SETTINGS).reason == "unsupported format: XPM"
    huge = check_upload(Reads(png((3000, 2000))).read, Settings(max_upload_bytes=1024 * 1024, max_image_pixels=1_000_000))
    assert huge.code == ErrorCode.TOO_LARGE


def test_intake_lists_a_refused_file_with_its_request_code_and_the_engine_code():
    too_large = check_file(Reads(b"x" * (2 * 1024 * 1024), "big.png"), SETTINGS, None)
    assert too_large == Rejected("big.png", RefusalCode.FILE_TOO_LARGE,
                                 "big.png: file is larger than the 1 MB limit (MAX_UPLOAD_BYTES)", None)
    xpm = check_file(Reads(b"/* XPM */\n", "icon.xpm"), SETTINGS, None)
    assert xpm.to_dict() == {"filename": "icon.xpm", "error": {
        "code": "unsupported_image", "message": "icon.xpm: unsupported format: XPM",
        "details": {"error_code": "unsupported"}}}
