"""The privacy receipt (choices.metadata_removed) and ``metadata keep_copyright`` (issue 26): a photo
with a GPS position, a camera serial number, an owner's name and a copyright notice, in JPEG, PNG
(eXIf) and WebP."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from imageflow.engine import Limits, render
from imageflow.engine.schema import resolve_operations

ALL_FOUND = ["GPS position", "camera serial number", "owner's name", "artist", "copyright notice",
             "date and time taken", "camera make and model"]


def tagged_photo(fmt: str, xmp: bool = False) -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "EOS R5", "2026:05:01 10:00:00"
    exif[0x013B], exif[0x8298] = "Ann Adams", "(c) 2026 Ann Adams"
    details = exif.get_ifd(0x8769)
    details[0xA431], details[0xA430] = "0123456789", "Ann"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (51.0, 30.0, 0.0), "W", (0.0, 7.0, 0.0)
    buf = io.BytesIO()
    extra = {"xmp": b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>'} if xmp else {}
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, fmt, exif=exif.tobytes(), **extra)
    return buf.getvalue()


def run(data: bytes, operations: list[dict]):
    [output] = render(data, resolve_operations(None, operations), Limits())
    with Image.open(io.BytesIO(output.data)) as image:
        exif = image.getexif()
        return output.choices.get("metadata_removed"), dict(exif), dict(exif.get_ifd(0x8825))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_stripping_says_what_it_removed(fmt):
    removed, exif, gps = run(tagged_photo(fmt), [])
    assert removed == ALL_FOUND
    assert exif == {} and gps == {}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_keep_copyright_keeps_the_credit_and_drops_the_rest(fmt):
    removed, exif, gps = run(tagged_photo(fmt), [{"op": "metadata", "keep_copyright": True}])
    assert exif == {0x013B: "Ann Adams", 0x8298: "(c) 2026 Ann Adams"} and gps == {}
    assert "GPS position" in removed and "camera serial number" in removed
    assert "artist" not in removed and "copyright notice" not in removed


def test_keeping_exif_removes_only_what_is_never_written():
    removed, exif, gps = run(tagged_photo("JPEG", xmp=True), [{"op": "metadata", "strip": False}])
    assert removed == ["XMP metadata (may repeat any of the above)"]
    assert exif[0x8298] == "(c) 2026 Ann Adams" and gps[2] == (51.0, 30.0, 0.0)


def test_a_file_without_identifying_metadata_has_no_receipt():
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "PNG")
    assert run(buf.getvalue(), [])[0] is None
