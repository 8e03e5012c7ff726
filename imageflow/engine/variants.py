"""Variants: several outputs (widths x formats) from one decoded, processed image."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from PIL import Image

from . import schema as ops
from .limits import Limits, RenderBudget
from .transforms import resize


@dataclass
class Variant:
    name: str
    frames: list[Image.Image]
    format: str
    order: int = 0          # its place in the outputs (widths x formats, as given)


def variant_name(width: int | None, fmt: str) -> str:
    """``w320-webp`` (or ``webp`` when the variant keeps the size): predictable, so clients
    can build output names without asking."""
    return f"w{width}-{fmt}" if width else fmt


def expand(frames: list[Image.Image], spec: ops.Variants, default_format: str, limits: Limits,
           budget: RenderBudget | None = None) -> Iterator[Variant]:
    """One :class:`Variant` per width x format, largest width first; ``order`` is its
    place in the order given. Widths are scaled from the next larger one, which costs far
    less than scaling each from the full image and looks the same; a width never
    enlarges the image.

    A generator, so that memory does not grow with the number of variants: the caller
    encodes each variant before asking for the next, and only the copy the next width is
    scaled from stays alive. It takes over ``frames``: the caller should drop its own
    reference, or the full-size image stays alive until the last variant. ``budget``
    counts the copies alive while a width is scaled (the larger one and the new one)."""
    formats = list(spec.formats) or [default_format]
    if not spec.widths:
        for index, fmt in enumerate(formats):
            yield Variant(variant_name(None, fmt), frames, fmt, index)
        return
    position = {width: index for index, width in enumerate(spec.widths)}
    current, frames = frames, None
    for width in sorted(spec.widths, reverse=True):
        op = ops.Resize(op="resize", width=width)
        previous, current = current, []
        for frame in previous:
            current.append(resize(frame, op, limits))
            if budget:
                budget.check([f.size for held in (previous, current) for f in held], f"variant w{width}")
        previous = None  # the larger copy is released here
        for index, fmt in enumerate(formats):
            yield Variant(variant_name(width, fmt), current, fmt, position[width] * len(formats) + index)


def largest_width(spec: ops.Variants | None) -> int | None:
    return max(spec.widths) if spec is not None and spec.widths else None
