"""``overlay``: composite another image (a logo) onto the picture, once or tiled.

The overlay's bytes come with the render (``render(..., assets={name: bytes})``): a file
uploaded with the job in the ``overlay`` field, or a URL the processor fetched under the
URL-import rules. It is decoded like any input (sniffed, size-checked), and its alpha
(PNG, WebP, AVIF...) is honoured. ``scale`` sets its longer side as a fraction of the
picture's shorter side; without it the overlay keeps its size, shrunk to fit if needed.
"""
from __future__ import annotations

from PIL import Image

from ..domain import ErrorCode
from . import report
from . import schema as ops
from .geometry import place
from .limits import ImageError, Limits

MAX_TILES = 10_000      # a 1 px logo tiled over a large picture would be millions of pastes


def is_url(name: str) -> bool:
    return name.lower().startswith(("http://", "https://"))


def named_overlays(operations: list[dict]) -> list[str]:
    """The overlay images an operations list names (files and URLs), each once, in order."""
    names = [op["image"] for op in operations or [] if isinstance(op, dict) and op.get("op") == "overlay"]
    return list(dict.fromkeys(names))


def _decode(name: str, limits: Limits) -> Image.Image:
    from .decoding import (  # the decoding module imports the engine's formats
        load,
        open_source,
        to_working,
        turn,
    )
    data = report.asset(name)
    try:
        source = open_source(data, limits)
    except ImageError as exc:
        raise ImageError(ErrorCode.INVALID, f"the overlay {name!r} is not a usable image: {exc.reason}") from None
    try:
        if source.frames > 1:
            source.image.seek(0)
        with report.aside():
            image, _ = to_working(load(source), "srgb")
        # upright, as the input is: turned by the engine unless the decoder already did
        return turn(image, source.correction()).convert("RGBA")
    finally:
        source.image.close()


def _layer(image: Image.Image, op: ops.Overlay, limits: Limits) -> Image.Image:
    """The overlay at its final size and opacity for a picture of ``image``'s size."""
    logo = _decode(op.image, limits)
    margin = _margin(image, op)
    if op.scale is not None:
        longer = max(1, round(op.scale * min(image.size)))
        ratio = longer / max(logo.size)
        size = (max(1, round(logo.width * ratio)), max(1, round(logo.height * ratio)))
    else:
        size = logo.size
    room = (max(1, image.width - 2 * margin), max(1, image.height - 2 * margin))
    if size[0] > room[0] or size[1] > room[1]:      # never larger than the picture
        ratio = min(room[0] / size[0], room[1] / size[1])
        size = (max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio)))
    if size != logo.size:
        logo = logo.resize(size, Image.Resampling.LANCZOS)
    if op.opacity < 1:
        alpha = logo.getchannel("A").point(lambda value: round(value * op.opacity))
        logo.putalpha(alpha)
    return logo


def _margin(image: Image.Image, op: ops.Overlay) -> int:
    return op.margin if op.margin is not None else round(min(image.size) * 0.02)


def positions(image_size: tuple[int, int], logo_size: tuple[int, int], op: ops.Overlay,
              margin: int) -> list[tuple[int, int]]:
    """Top-left corners of every copy: one placed by ``position``, or a grid with
    ``margin`` pixels between copies (``tile``)."""
    width, height = image_size
    logo_w, logo_h = logo_size
    if not op.tile:
        x, y = place(width - logo_w - 2 * margin, height - logo_h - 2 * margin, op.position)
        return [(x + margin, y + margin)]
    step_x, step_y = logo_w + margin, logo_h + margin
    count = -(-width // step_x) * -(-height // step_y)
    if count > MAX_TILES:
        raise ImageError(ErrorCode.INVALID, f"tiling a {logo_w}x{logo_h} overlay over a {width}x{height} image would "
                                            f"take {count} copies (at most {MAX_TILES}): give a larger scale or margin")
    return [(x, y) for y in range(0, height, step_y) for x in range(0, width, step_x)]


def overlay(image: Image.Image, op: ops.Overlay, limits: Limits) -> Image.Image:
    # decoded and scaled once: the frames of an animation share one size
    logo = report.memo(op, lambda: _layer(image, op, limits))
    spots = positions(image.size, logo.size, op, _margin(image, op))
    report.note("overlay", {"image": op.image, "box": [*spots[0], spots[0][0] + logo.width,
                                                       spots[0][1] + logo.height], "copies": len(spots)})
    canvas = image.convert("RGBA") if image.mode != "RGBA" else image.copy()
    for x, y in spots:
        visible = logo.crop((0, 0, min(logo.width, image.width - x), min(logo.height, image.height - y)))
        canvas.alpha_composite(visible, dest=(x, y))
    # a colour logo keeps its colours on a grey picture
    return canvas if image.mode in ("RGBA", "LA") else canvas.convert("RGB")
