"""Variants: several outputs (widths x formats) from one decoded, processed image."""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from . import schema as ops
from .limits import Limits, RenderBudget
from .transforms import resize


@dataclass
class Variant:
    name: str
    frames: list[Image.Image]
    format: str


def variant_name(width: int | None, fmt: str) -> str:
    """``w320-webp`` (or ``webp`` when the variant keeps the size): predictable, so clients
    can build output names without asking."""
    return f"w{width}-{fmt}" if width else fmt


def expand(frames: list[Image.Image], spec: ops.Variants, default_format: str, limits: Limits,
           budget: RenderBudget | None = None) -> list[Variant]:
    """One :class:`Variant` per width x format, in the order given. Widths are scaled
    from the next larger one (largest first), which costs far less than scaling each
    from the full image and looks the same; a width never enlarges the image. Every
    variant is held until encoded, so ``budget`` counts them all together."""
    formats = list(spec.formats) or [default_format]
    if not spec.widths:
        return [Variant(variant_name(None, fmt), frames, fmt) for fmt in formats]
    scaled: dict[int, list[Image.Image]] = {}
    current = frames
    for width in sorted(spec.widths, reverse=True):
        op = ops.Resize(op="resize", width=width)
        previous, current = current, []
        for frame in previous:
            current.append(resize(frame, op, limits))
            if budget:
                budget.check([f.size for held in (frames, *scaled.values(), current) for f in held],
                             f"variant w{width}")
        scaled[width] = current
    return [Variant(variant_name(width, fmt), scaled[width], fmt) for width in spec.widths for fmt in formats]


def largest_width(spec: ops.Variants | None) -> int | None:
    return max(spec.widths) if spec is not None and spec.widths else None
