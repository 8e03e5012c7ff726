"""Every output carries a BlurHash and its dominant colour, computed from its final pixels."""
from __future__ import annotations

import blurhash
import pytest
from PIL import Image, ImageDraw

from imageflow.engine import Limits, render
from imageflow.engine.schema import resolve_operations

from engine_samples import close, encode, gradient, halves


def run(data: bytes, operations):
    return render(data, resolve_operations(None, operations), Limits())


def test_the_dominant_colour_is_the_colour_covering_most_of_the_image():
    image = Image.new("RGB", (80, 60), (30, 120, 200))
    ImageDraw.Draw(image).rectangle((0, 0, 25, 59), fill=(240, 200, 10))   # a third in yellow
    output = run(encode(image, "PNG"), [])[0]
    assert output.dominant_color.startswith("#") and len(output.dominant_color) == 7
    assert close(bytes.fromhex(output.dominant_color[1:]), (30, 120, 200), tolerance=6)


def test_the_placeholders_follow_the_operations_not_the_input():
    image = Image.new("RGB", (80, 60), (30, 120, 200))
    ImageDraw.Draw(image).rectangle((0, 0, 25, 59), fill=(240, 200, 10))
    output = run(encode(image, "PNG"), [{"op": "crop", "x": 0, "y": 0, "width": 25, "height": 60}])[0]
    assert close(bytes.fromhex(output.dominant_color[1:]), (240, 200, 10), tolerance=6)


def test_transparent_pixels_do_not_count_towards_the_dominant_colour():
    image = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((20, 20, 40, 40), fill=(200, 0, 0, 255))
    output = run(encode(image, "PNG"), [])[0]
    assert close(bytes.fromhex(output.dominant_color[1:]), (200, 0, 0), tolerance=6)
    nothing = run(encode(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "PNG"), [])[0]
    assert nothing.dominant_color is None and nothing.blurhash


@pytest.mark.parametrize("size", [(96, 64), (64, 96), (8, 3)])
def test_the_blurhash_decodes_to_the_picture_red_left_blue_right(size):
    output = run(encode(halves(size), "PNG"), [])[0]
    assert blurhash.is_valid_blurhash(output.blurhash)
    decoded = blurhash.decode(output.blurhash, 16, 16).convert("RGB")
    left, right = decoded.getpixel((1, 8)), decoded.getpixel((14, 8))
    assert left[0] > left[2] + 80 and right[2] > right[0] + 80, (left, right)


def test_every_variant_gets_placeholders():
    outputs = run(encode(gradient((80, 60)), "PNG"), [{"op": "variants", "widths": [20, 40]}])
    assert all(output.blurhash and output.dominant_color for output in outputs)
