"""JPEG XL in and out (the pillow-jxl-plugin wheel, libjxl inside).

That plugin decodes the whole image as soon as it is opened, before the engine could read
the size from the header and refuse a decompression bomb. So the size is read here from
the codestream's SizeHeader (ISO/IEC 18181-1, A.3.1), bare or inside the ISOBMFF
container, and checked before the plugin sees the file.
"""
from __future__ import annotations

import functools
import struct

from ..domain import ErrorCode
from .limits import ImageError, Limits

CODESTREAM = b"\xff\x0a"
CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# the fixed aspect ratios of the SizeHeader (xsize = ysize * num / den)
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def is_jxl(head: bytes) -> bool:
    return head.startswith(CODESTREAM) or head.startswith(CONTAINER)


@functools.cache
def available() -> bool:
    """Register the plugin (JXL open and save) on first use."""
    try:
        from pillow_jxl import JpegXLImagePlugin
    except ImportError:  # pragma: no cover - a pinned dependency
        return False
    # one thread per image: the processor runs images side by side (like AVIF's max_threads=1)
    JpegXLImagePlugin.DECODE_THREADS = 1
    return True


class _Bits:
    """LSB-first bit reader, as JPEG XL packs its headers."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, count: int) -> int:
        value = 0
        for index in range(count):
            byte = self.data[(self.pos + index) >> 3]      # IndexError: the header is cut short
            value |= ((byte >> ((self.pos + index) & 7)) & 1) << index
        self.pos += count
        return value

    def u32(self, *bits: int) -> int:
        return self.read(bits[self.read(2)])


def _codestream(data: bytes) -> bytes:
    """The start of the codestream: the file itself, or the payload of its first
    ``jxlc``/``jxlp`` box."""
    if data.startswith(CODESTREAM):
        return data
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"jxlc":
            return data[pos + header:pos + size]
        if kind == b"jxlp":
            return data[pos + header + 4:pos + size]    # after the part's index
        if size < header:
            break
        pos += size
    raise ValueError("no codestream box")


def size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header. Raises ValueError when it is unreadable."""
    stream = _codestream(data)
    if not stream.startswith(CODESTREAM):
        raise ValueError("no codestream signature")
    bits = _Bits(stream[2:2 + 16])
    try:
        small = bits.read(1)
        height = (bits.read(5) + 1) * 8 if small else bits.u32(9, 13, 18, 30) + 1
        ratio = bits.read(3)
        if ratio:
            num, den = _RATIOS[ratio]
            width = height * num // den
        else:
            width = (bits.read(5) + 1) * 8 if small else bits.u32(9, 13, 18, 30) + 1
    except IndexError:
        raise ValueError("the size header is cut short") from None
    return width, height


def check(data: bytes, limits: Limits) -> None:
    """Refuse a JPEG XL whose header is unreadable or whose size is over the pixel limit,
    before it is decoded."""
    if not available():
        raise ImageError(ErrorCode.UNSUPPORTED, "JPEG XL images are not supported by this installation "
                                                "(pillow-jxl-plugin is missing)")
    try:
        width, height = size(data)
    except ValueError as exc:
        raise ImageError(ErrorCode.CORRUPT,
                         f"the file starts like a JXL image but its header is unreadable ({exc})") from None
    if width * height > limits.max_pixels:
        raise ImageError(ErrorCode.TOO_LARGE, f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels), "
                                              f"over the limit of {limits.max_pixels / 1e6:.1f} megapixels")
