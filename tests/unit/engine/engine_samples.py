"""Test images made on the fly (small, so the engine suite stays fast), and helpers to read outputs."""
from __future__ import annotations

import io
import math
import struct

from PIL import Image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def halves(size=(40, 20), left=(255, 0, 0), right=(0, 0, 255), mode="RGB") -> Image.Image:
    """Left half one colour, right half another: orientation and flips are visible."""
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def gradient(size=(64, 48), mode="RGB") -> Image.Image:
    """Smooth gradients and waves: detail everywhere (compresses like a photo, not like a flat fill)."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([((x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1),
                    128 + int(100 * math.sin((x + 2 * y) / 9))) for y in range(height) for x in range(width)])
    return image.convert(mode) if mode != "RGB" else image


def open_output(rendered) -> Image.Image:
    image = Image.open(io.BytesIO(rendered.data))
    image.load()
    return image


def close(color, expected, tolerance=12) -> bool:
    if isinstance(color, int):
        color = (color,)
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected))


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def swapped_profile() -> bytes:
    """A minimal ICC v2 RGB profile whose red and green primaries are sRGB's green and
    red: a pixel stored as pure red means green. Converting to sRGB must show it."""
    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, int(2.2 * 256)) + bytes(2)
    text = b"swapped red/green test\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    desc += bytes(-len(desc) % 4)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"gXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + bytes(4) + bytes.fromhex("02100000") + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(4 + 4 + 4 + 4 + 8 + 4) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(4 + 16 + 28))
    return header + struct.pack(">I", len(tags)) + table + body
