"""Test images made on the fly (small, so the engine suite stays fast), and helpers to read outputs."""
from __future__ import annotations

import io

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
    """A smooth image with detail everywhere (compresses like a photo, not like a flat fill)."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([((x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1), ((x + y) * 7) % 256)
                   for y in range(height) for x in range(width)])
    return image.convert(mode) if mode != "RGB" else image


def open_output(rendered) -> Image.Image:
    image = Image.open(io.BytesIO(rendered.data))
    image.load()
    return image


def close(color, expected, tolerance=12) -> bool:
    if isinstance(color, int):
        color = (color,)
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected))
