"""``trim``: cut away uniform borders.

The border colour is the top-left corner's (``auto``) or the one given; a pixel belongs to
the picture when any channel (alpha included) differs from it by more than ``threshold``.
The box kept is reported as ``choices.trim`` ``[left, top, right, bottom]``.
"""
from __future__ import annotations

from PIL import Image, ImageChops, ImageColor

from . import report
from . import schema as ops
from .limits import Limits


def content_box(image: Image.Image, background: str, threshold: int) -> tuple[int, int, int, int] | None:
    """The box of everything that is not border, or None when the whole image is border."""
    rgba = image.convert("RGBA")
    if background == "auto":
        colour = rgba.getpixel((0, 0))
    else:
        colour = ImageColor.getcolor(background, "RGBA")
    # a fully transparent border matches any transparent pixel, whatever its colour channels hold
    if colour[3] == 0:
        return rgba.getchannel("A").point(lambda v: 255 if v > threshold else 0).getbbox()
    difference = ImageChops.difference(rgba, Image.new("RGBA", rgba.size, colour))
    # the largest channel difference of each pixel, then the box of those over the threshold
    channels = difference.split()
    largest = channels[0]
    for channel in channels[1:]:
        largest = ImageChops.lighter(largest, channel)
    return largest.point(lambda v: 255 if v > threshold else 0).getbbox()


def trim(image: Image.Image, op: ops.Trim, limits: Limits) -> Image.Image:
    # the first frame decides the box, so an animation's frames keep one size
    box = report.memo(op, lambda: content_box(image, op.background, op.threshold))
    if box is None:
        report.note("trim", None)       # nothing but border: the image is kept as it was
        return image
    report.note("trim", list(box))
    if box == (0, 0, *image.size):
        return image
    box = (box[0], box[1], min(box[2], image.width), min(box[3], image.height))
    return image.crop(box)
