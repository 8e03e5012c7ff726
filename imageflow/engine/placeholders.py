"""Placeholders a page shows while an output loads: a BlurHash and the dominant colour.

Both come from a 32 px copy of the final pixels (before encoding), so they cost about a
millisecond whatever the image's size. Transparent pixels take no part in the dominant
colour; the BlurHash (which has no alpha) sees the image flattened onto white.
"""
from __future__ import annotations

import warnings
from collections import Counter

import blurhash
from PIL import Image

from .encoding import flatten

SAMPLE = 32    # BlurHash needs no more for 4x3 components; 64 px cost 6 ms in its pure-Python pixel copy
# components across the longer and the shorter side: 4x3 is BlurHash's usual choice
COMPONENTS = (4, 3)


def _sample(image: Image.Image) -> Image.Image:
    """The image at most SAMPLE px a side, as RGBA: shrunk first, in its own mode (the
    box filter premultiplies alpha), so that only the small copy is converted; converting
    the whole output first cost more than the rest of the placeholders together."""
    scale = min(1.0, SAMPLE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0) if scale < 1 else image
    return small.convert("RGBA") if small.mode != "RGBA" else small.copy()


def dominant_color(small: Image.Image) -> str | None:
    """The most common colour (median-cut to 8 colours) of the opaque pixels, ``#rrggbb``;
    None when no pixel is opaque."""
    opaque = [alpha >= 128 for alpha in small.getchannel("A").get_flattened_data()]
    if not any(opaque):
        return None
    palette_image = small.convert("RGB").quantize(8, method=Image.Quantize.MEDIANCUT)
    counts = Counter(index for index, keep in zip(palette_image.get_flattened_data(), opaque) if keep)
    index = counts.most_common(1)[0][0]
    red, green, blue = palette_image.getpalette()[index * 3:index * 3 + 3]
    return f"#{red:02x}{green:02x}{blue:02x}"


def blur_hash(small: Image.Image) -> str:
    wide = small.width >= small.height
    x, y = COMPONENTS if wide else COMPONENTS[::-1]
    x, y = min(x, small.width), min(y, small.height)     # a tiny image has fewer frequencies to give
    with warnings.catch_warnings():
        # blurhash-python 1.2.2 reads pixels with Image.getdata, deprecated in Pillow 13
        warnings.simplefilter("ignore", DeprecationWarning)
        return blurhash.encode(flatten(small, "#ffffff"), x_components=x, y_components=y)


def of(image: Image.Image) -> dict[str, str | None]:
    """``{"blurhash", "dominant_color"}`` of an output's pixels."""
    small = _sample(image)
    return {"blurhash": blur_hash(small), "dominant_color": dominant_color(small)}
