"""JPEG XL in and out, HEIC out: round trips, alpha, defaults, and the size guard that
runs before the JXL decoder (which decodes on open)."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from imageflow.engine import ImageError, Limits, probe, render
from imageflow.engine import jxl
from imageflow.engine.decoding import sniff
from imageflow.engine.schema import resolve_operations

from engine_samples import close, encode, gradient, halves, open_output


def run(data: bytes, operations, limits: Limits | None = None):
    outputs = render(data, resolve_operations(None, operations), limits or Limits())
    assert len(outputs) == 1
    return outputs[0], open_output(outputs[0])


def jxl_bytes(image: Image.Image, **params) -> bytes:
    jxl.available()
    return encode(image, "JXL", **{"quality": 90, "effort": 3, **params})


@pytest.mark.parametrize("fmt, pillow, mime", [("jxl", "JXL", "image/jxl"), ("heic", "HEIF", "image/heic")])
def test_output_in_the_new_formats_decodes_to_the_picture(fmt, pillow, mime):
    output, image = run(encode(halves((64, 32)), "PNG"), [{"op": "format", "format": fmt, "quality": 90}])
    assert (output.format, output.content_type, output.ext, image.format) == (fmt, mime, fmt, pillow)
    assert image.size == (64, 32)
    assert close(image.convert("RGB").getpixel((8, 16)), (255, 0, 0), 20)
    assert close(image.convert("RGB").getpixel((56, 16)), (0, 0, 255), 20)


@pytest.mark.parametrize("fmt", ["jxl", "heic"])
def test_alpha_survives_and_lower_quality_makes_smaller_files(fmt):
    picture = gradient((96, 64)).convert("RGBA")
    picture.putalpha(Image.linear_gradient("L").resize((96, 64)))
    data = encode(picture, "PNG")
    high, image = run(data, [{"op": "format", "format": fmt, "quality": 95}])
    low, _ = run(data, [{"op": "format", "format": fmt, "quality": 20}])
    assert image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema()[0] < 20
    assert len(low.data) < len(high.data)


def test_lossless_jxl_is_exact():
    picture = gradient((40, 30))
    _, image = run(encode(picture, "PNG"), [{"op": "format", "format": "jxl", "lossless": True}])
    assert list(image.convert("RGB").get_flattened_data()) == list(picture.get_flattened_data())


@pytest.mark.parametrize("container", [False, True])
def test_jxl_input_is_sniffed_probed_and_becomes_jpeg_by_default(container):
    data = jxl_bytes(halves((50, 20)), use_container=container)
    assert sniff(data) == "jxl"
    info = probe(data, Limits())
    assert (info.format, info.mime, info.width, info.height) == ("jxl", "image/jxl", 50, 20)
    output, image = run(data, [{"op": "resize", "width": 25}])
    assert output.format == "jpeg" and image.size == (25, 10)
    assert close(image.getpixel((3, 5)), (255, 0, 0), 30)
    kept, _ = run(data, [{"op": "format", "format": "jxl"}])
    assert kept.format == "jxl"


def test_the_size_header_is_read_exactly_for_every_size_class():
    # small (multiples of 8), fixed aspect ratios, and sizes needing each U32 width
    for size in [(8, 8), (1, 1), (7, 13), (120, 100), (160, 90), (513, 300), (3000, 20), (40, 5000)]:
        for container in (False, True):
            data = jxl_bytes(Image.new("L", size, 128), quality=10, effort=1, use_container=container)
            assert jxl.size(data) == size


def test_an_oversized_jxl_is_refused_from_its_header_before_decoding():
    data = jxl_bytes(Image.new("RGB", (300, 200), "white"))
    with pytest.raises(ImageError) as err:
        probe(data, Limits(max_pixels=300 * 200 - 1))
    assert err.value.code == "too_large" and "300x200" in err.value.reason


def test_a_jxl_cut_inside_its_header_is_corrupt_not_a_crash():
    with pytest.raises(ImageError) as err:
        probe(jxl.CODESTREAM + b"\xff", Limits())
    assert err.value.code == "corrupt" and "JXL" in err.value.reason
    with pytest.raises(ImageError) as err:
        render(jxl_bytes(gradient((64, 64)))[:40], [], Limits())
    assert err.value.code == "corrupt"
