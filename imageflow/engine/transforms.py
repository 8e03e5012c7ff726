"""Pixel operations: one function per op name of :mod:`imageflow.engine.schema`.

Each takes a working image (L, LA, RGB or RGBA), the validated op model and the limits,
and returns a new image (or the same one when there is nothing to do). Every image an
operation would create is checked against ``Limits.max_pixels`` first.
"""
from __future__ import annotations

import math
from typing import Callable

from PIL import Image, ImageColor, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from ..domain import ErrorCode
from . import faces, overlay, trim, vips
from . import schema as ops
from .geometry import place
from .limits import ImageError, Limits

LANCZOS = Image.Resampling.LANCZOS
# Shrink by whole factors with a box filter first when the ratio is over 3: visually the
# same as a full Lanczos pass (Pillow's own measurement) for a fraction of the work.
REDUCING_GAP = 3.0


def check_size(width: int, height: int, limits: Limits, what: str) -> None:
    if width * height > limits.max_pixels:
        raise ImageError(ErrorCode.TOO_LARGE, f"{what} would make a {width}x{height} image "
                                              f"({width * height / 1e6:.1f} megapixels), over the limit of "
                                              f"{limits.max_pixels / 1e6:.1f} megapixels")


def alpha_mode(image: Image.Image) -> bool:
    return image.mode in ("LA", "RGBA")


def fill_color(image: Image.Image, color: str) -> tuple[Image.Image, tuple | int]:
    """Return the image (given an alpha channel if the colour is translucent) and the
    colour as a pixel value of its mode."""
    rgba = ImageColor.getrgb(color)
    if len(rgba) == 4 and rgba[3] < 255 and not alpha_mode(image):
        image = image.convert("LA" if image.mode == "L" else "RGBA")
    return image, ImageColor.getcolor(color, image.mode)


# -- placement ------------------------------------------------------------------------------

def smart_offset(image: Image.Image, width: int, height: int) -> tuple[int, int]:
    """Where a ``width`` x ``height`` window keeps the most detail: the position of
    highest grey-level entropy, searched on a small copy, ties going to the centre."""
    free_x, free_y = image.width - width, image.height - height
    if free_x <= 0 and free_y <= 0:
        return 0, 0
    scale = min(1.0, 160 / max(image.size))
    small = image.convert("L") if image.mode not in ("L",) else image
    if scale < 1:
        small = small.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
    win_w, win_h = max(1, round(width * scale)), max(1, round(height * scale))
    span_x, span_y = max(0, small.width - win_w), max(0, small.height - win_h)
    steps = 16
    best, best_score = (0.5, 0.5), -1.0
    for i in range(steps + 1 if span_x else 1):
        for j in range(steps + 1 if span_y else 1):
            fx, fy = (i / steps if span_x else 0.5), (j / steps if span_y else 0.5)
            left, top = round(span_x * fx), round(span_y * fy)
            entropy = small.crop((left, top, left + win_w, top + win_h)).entropy()
            score = entropy - 0.05 * (abs(fx - 0.5) + abs(fy - 0.5))   # prefer the centre on ties
            if score > best_score:
                best, best_score = (fx, fy), score
    return round(max(free_x, 0) * best[0]), round(max(free_y, 0) * best[1])


def window(image: Image.Image, width: int, height: int, gravity: str) -> tuple[int, int, int, int]:
    """A ``width`` x ``height`` box inside the image placed by ``gravity`` (or ``smart``)."""
    width, height = min(width, image.width), min(height, image.height)
    if gravity == "smart":
        x, y = smart_offset(image, width, height)
    elif gravity == "face":
        x, y = faces.face_offset(image, width, height, fallback=smart_offset)
    else:
        x, y = place(image.width - width, image.height - height, gravity)
    return x, y, x + width, y + height


# -- geometry -------------------------------------------------------------------------------

def resize_target(size: tuple[int, int], op: ops.Resize) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """The output size of a resize and, for ``cover``, the size of the region it keeps
    (in source pixels) before scaling; None when the whole image is scaled."""
    width, height = size
    want_w, want_h = op.width, op.height
    if op.fit == "fill" and want_w and want_h:
        if not op.upscale:
            want_w, want_h = min(want_w, width), min(want_h, height)
        return (want_w, want_h), None
    if op.fit == "cover" and want_w and want_h:
        scale = max(want_w / width, want_h / height)
        if not op.upscale:
            scale = min(scale, 1.0)
        # the region of the source that fills the box once scaled
        out_w, out_h = min(want_w, max(1, round(width * scale))), min(want_h, max(1, round(height * scale)))
        region = (min(width, max(1, round(out_w / scale))), min(height, max(1, round(out_h / scale))))
        return (out_w, out_h), region
    scale = min(want_w / width if want_w else math.inf, want_h / height if want_h else math.inf)
    if not op.upscale:
        scale = min(scale, 1.0)
    return (max(1, round(width * scale)), max(1, round(height * scale))), None


def resize(image: Image.Image, op: ops.Resize, limits: Limits) -> Image.Image:
    size, region = resize_target(image.size, op)
    check_size(*size, limits, "resize")
    box = None
    if region is not None:
        box = window(image, *region, op.gravity)
    if size == image.size and box in (None, (0, 0, *image.size)):
        return image
    if box is not None and (box[2] - box[0], box[3] - box[1]) == size:
        return image.crop(box)          # a cover whose region is already the size: no resample
    # libvips' Lanczos reduce costs a fraction of Pillow's; Pillow upscales, and resizes
    # what libvips does not take (or everything, when libvips is missing)
    return vips.resize(image, size, box) or image.resize(size, LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def crop(image: Image.Image, op: ops.Crop, limits: Limits) -> Image.Image:
    if op.aspect is not None:
        ratio = ops.parse_aspect(op.aspect)
        width = min(image.width, max(1, round(image.height * ratio)))
        height = min(image.height, max(1, round(width / ratio)))
        box = window(image, width, height, op.gravity)
    else:
        if op.x >= image.width or op.y >= image.height:
            raise ImageError(ErrorCode.INVALID, f"crop box starts at ({op.x}, {op.y}), outside the "
                                                f"{image.width}x{image.height} image")
        box = (op.x, op.y, min(image.width, op.x + op.width), min(image.height, op.y + op.height))
    if box == (0, 0, *image.size):
        return image
    return image.crop(box)


_QUARTER_TURNS = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def rotate(image: Image.Image, op: ops.Rotate, limits: Limits) -> Image.Image:
    degrees = op.degrees % 360
    if degrees == 0:
        return image
    if degrees in _QUARTER_TURNS:       # exact and fast; clockwise like every viewer
        return image.transpose(_QUARTER_TURNS[degrees])
    if op.expand:
        rad = math.radians(degrees)
        cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
        check_size(math.ceil(image.width * cos + image.height * sin),
                   math.ceil(image.width * sin + image.height * cos), limits, "rotate")
    image, color = fill_color(image, op.background)
    return image.rotate(-degrees, resample=Image.Resampling.BICUBIC, expand=op.expand, fillcolor=color)


def flip(image: Image.Image, op: ops.Flip, limits: Limits) -> Image.Image:
    method = Image.Transpose.FLIP_LEFT_RIGHT if op.direction == "horizontal" else Image.Transpose.FLIP_TOP_BOTTOM
    return image.transpose(method)


def pad(image: Image.Image, op: ops.Pad, limits: Limits) -> Image.Image:
    width, height = max(image.width, op.width or 0), max(image.height, op.height or 0)
    if (width, height) == image.size:
        return image
    check_size(width, height, limits, "pad")
    image, color = fill_color(image, op.background)
    canvas = Image.new(image.mode, (width, height), color)
    canvas.paste(image, place(width - image.width, height - image.height, op.gravity))
    return canvas


# -- tone and filters -----------------------------------------------------------------------

def _colour_only(image: Image.Image, change: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply ``change`` to the colour channels and keep alpha exactly as it was."""
    if not alpha_mode(image):
        return change(image)
    alpha = image.getchannel("A")
    result = change(image.convert(image.mode[:-1]))
    result.putalpha(alpha)
    return result


def grayscale(image: Image.Image, op: ops.Grayscale, limits: Limits) -> Image.Image:
    if image.mode in ("L", "LA"):
        return image
    return image.convert("LA" if image.mode == "RGBA" else "L")


def blur(image: Image.Image, op: ops.Blur, limits: Limits) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(op.radius))


def sharpen(image: Image.Image, op: ops.Sharpen, limits: Limits) -> Image.Image:
    unsharp = ImageFilter.UnsharpMask(radius=op.radius, percent=op.percent, threshold=op.threshold)
    return _colour_only(image, lambda im: im.filter(unsharp))


def brightness(image: Image.Image, op: ops.Brightness, limits: Limits) -> Image.Image:
    return _colour_only(image, lambda im: ImageEnhance.Brightness(im).enhance(op.factor))


def contrast(image: Image.Image, op: ops.Contrast, limits: Limits) -> Image.Image:
    return _colour_only(image, lambda im: ImageEnhance.Contrast(im).enhance(op.factor))


def saturation(image: Image.Image, op: ops.Saturation, limits: Limits) -> Image.Image:
    if image.mode in ("L", "LA"):
        return image
    return _colour_only(image, lambda im: ImageEnhance.Color(im).enhance(op.factor))


# -- watermark ------------------------------------------------------------------------------

def watermark(image: Image.Image, op: ops.Watermark, limits: Limits) -> Image.Image:
    size = op.size or max(10, round(min(image.size) * 0.05))
    margin = op.margin if op.margin is not None else max(2, size // 2)
    font = ImageFont.load_default(size)
    left, top, right, bottom = font.getbbox(op.text)
    room = image.width - 2 * margin
    if right - left > room > 0 and size > 4:
        # too wide for the image: shrink the font to fit rather than cut the text
        size = max(4, int(size * room / (right - left)))
        font = ImageFont.load_default(size)
        left, top, right, bottom = font.getbbox(op.text)
    text_w, text_h = max(1, right - left), max(1, bottom - top)
    check_size(text_w, text_h, limits, "the watermark text")  # before its layer (and glyph mask) are drawn
    red, green, blue, alpha = ImageColor.getcolor(op.color, "RGBA")
    layer = Image.new("RGBA", (text_w, text_h), (red, green, blue, 0))
    ImageDraw.Draw(layer).text((-left, -top), op.text, font=font, fill=(red, green, blue, round(alpha * op.opacity)))
    x, y = place(image.width - text_w - 2 * margin, image.height - text_h - 2 * margin, op.position)
    x, y = x + margin, y + margin
    # clip the layer to the image (a tiny image may be smaller than the text)
    src_x, src_y = max(0, -x), max(0, -y)
    dest = (max(0, x), max(0, y))
    if src_x >= text_w or src_y >= text_h or dest[0] >= image.width or dest[1] >= image.height:
        return image
    original_mode = image.mode
    canvas = image.convert("RGBA") if original_mode != "RGBA" else image.copy()
    canvas.alpha_composite(layer, dest=dest, source=(src_x, src_y))
    return canvas if original_mode == "RGBA" else canvas.convert(original_mode)


OPERATIONS: dict[str, Callable[[Image.Image, object, Limits], Image.Image]] = {
    "resize": resize, "crop": crop, "rotate": rotate, "flip": flip, "grayscale": grayscale, "blur": blur,
    "sharpen": sharpen, "brightness": brightness, "contrast": contrast, "saturation": saturation,
    "pad": pad, "watermark": watermark, "trim": trim.trim,
    "overlay": overlay.overlay,
}
"""Pixel operations by op name (settings like ``format`` are handled by the renderer)."""


def apply(image: Image.Image, op, limits: Limits) -> Image.Image:
    """Apply one validated pixel operation."""
    return OPERATIONS[op.op](image, op, limits)
