"""Hostile and broken input: each class fails with a specific reason, quickly, never a
crash or a hang (probe checks the header before any pixel is decoded)."""
from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image

from imageflow.engine import ImageError, Limits, probe, render

from engine_samples import encode, gradient


def fails(data: bytes, code: str, limits: Limits | None = None, operations=None) -> str:
    limits = limits or Limits()
    with pytest.raises(ImageError) as at_probe:
        probe(data, limits)
        render(data, operations or [], limits)    # problems only found while decoding
    assert at_probe.value.code == code, at_probe.value.reason
    return at_probe.value.reason


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + \
        chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_rejected_from_the_header():
    reason = fails(png_header_only(100_000, 100_000), "too_large")
    assert "10000 megapixels" in reason and "limit of 50 megapixels" in reason
    reason = fails(png_header_only(10_000, 10_000), "too_large")
    assert "10000x10000 (100 megapixels)" in reason


def test_pixel_limit_is_configurable():
    data = encode(gradient((100, 100)), "PNG")
    fails(data, "too_large", Limits(max_pixels=5_000))
    assert probe(data, Limits(max_pixels=10_000)).width == 100


def test_zero_byte_file():
    assert fails(b"", "empty") == "the file is empty (0 bytes)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated_file(fmt):
    data = encode(gradient((200, 150)), fmt)
    cut = data[: len(data) // 2]
    with pytest.raises(ImageError) as err:
        render(cut, [], Limits())
    assert err.value.code == "corrupt"
    if fmt in ("JPEG", "PNG"):
        assert "truncated" in err.value.reason


@pytest.mark.parametrize("content, what", [
    (b"Rar!\x1a\x07\x00" + b"\0" * 40, "RAR"),
    (b"PK\x03\x04" + b"\0" * 40, "ZIP"),
    (b"hello, this is plain text\n", "text"),
    (b"<!doctype html><html><body>not a picture</body></html>", "text"),
    (bytes(range(256)) * 4, "no known format"),
])
def test_mislabelled_non_image(content, what):
    assert what in fails(content, "unsupported")


def test_mislabelled_image_is_read_by_its_content():
    # a PNG uploaded as "photo.jpg": the name is never trusted, the bytes are
    info = probe(encode(gradient(), "PNG"), Limits())
    assert (info.format, info.mime, info.ext) == ("png", "image/png", "png")


def test_corrupt_header():
    data = bytearray(encode(gradient(), "PNG"))
    data[16:24] = b"\xff" * 8            # IHDR width/height garbage (and a bad CRC)
    fails(bytes(data), "corrupt")


def test_corrupt_image_data():
    data = bytearray(encode(gradient((200, 150)), "JPEG"))
    start = len(data) // 3
    data[start:start + 400] = bytes(400)      # scribble over the entropy-coded data
    data = bytes(data)
    try:
        outputs = render(data, [], Limits())      # libjpeg may recover (grey blocks): that is fine
        assert outputs[0].width == 200
    except ImageError as err:
        assert err.code == "corrupt"


def test_too_many_frames():
    frames = [Image.new("RGB", (4, 4), (i * 8, 0, 0)) for i in range(30)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    reason = fails(data, "too_many_frames", Limits(max_frames=10))
    assert "more than 10 frames" in reason
    assert probe(data, Limits(max_frames=30)).frames == 30


def test_too_many_tiff_pages():
    pages = [Image.new("RGB", (4, 4), (i * 40, 0, 0)) for i in range(3)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert probe(data, Limits()).frames == 3
    fails(data, "too_many_frames", Limits(max_frames=2))
