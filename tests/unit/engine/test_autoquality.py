"""quality "auto": the chosen output scores at least the target against the pre-encode
pixels (scored here independently), max_bytes still wins when smaller, and the choice is
reported."""
from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageFilter
from ssimulacra2 import compute_ssimulacra2

from imageflow.engine import Limits, render
from imageflow.engine.schema import OperationsError, resolve_operations

from engine_samples import encode, gradient


def picture(size=(96, 72)) -> Image.Image:
    """Smooth gradients with some fine grain: quality makes a visible difference."""
    grain = Image.frombytes("L", size, random.Random(5).randbytes(size[0] * size[1])).filter(ImageFilter.BLUR)
    return Image.blend(gradient(size), Image.merge("RGB", (grain, grain, grain)), 0.25)


PNG = encode(picture(), "PNG")


def run(fmt_op: dict, data: bytes = PNG):
    [output] = render(data, resolve_operations(None, [{"op": "format", **fmt_op}]), Limits())
    return output


def independent_score(output) -> float:
    return compute_ssimulacra2(io.BytesIO(PNG), io.BytesIO(output.data))


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "jxl"])
def test_the_chosen_quality_reaches_the_target_and_is_reported(fmt):
    output = run({"format": fmt, "quality": "auto", "target": 70})
    report = output.choices
    assert report["quality_by"] == "target" and report["target"] == 70
    assert 1 <= report["quality"] <= 100
    assert report["score"] >= 70
    assert independent_score(output) == pytest.approx(report["score"], abs=0.01)


def test_a_higher_target_costs_a_higher_quality_and_more_bytes():
    low = run({"format": "jpeg", "quality": "auto", "target": 50})
    high = run({"format": "jpeg", "quality": "auto", "target": 85})
    assert low.choices["quality"] < high.choices["quality"]
    assert len(low.data) < len(high.data)
    assert independent_score(high) >= 85 > independent_score(low)


def test_it_is_the_lowest_quality_that_reaches_the_target():
    output = run({"format": "jpeg", "quality": "auto", "target": 70})
    chosen = output.choices["quality"]
    below = run({"format": "jpeg", "quality": chosen - 1})
    assert independent_score(below) < 70 <= independent_score(output)


def test_max_bytes_wins_when_it_is_the_smaller_and_the_report_says_so():
    free = run({"format": "jpeg", "quality": "auto", "target": 85})
    limit = len(free.data) * 2 // 3
    capped = run({"format": "jpeg", "quality": "auto", "target": 85, "max_bytes": limit})
    assert len(capped.data) <= limit
    assert capped.choices["quality_by"] == "max_bytes"
    assert capped.choices["quality"] < free.choices["quality"]
    assert capped.choices["score"] == pytest.approx(independent_score(capped), abs=0.01)
    roomy = run({"format": "jpeg", "quality": "auto", "target": 85, "max_bytes": len(free.data) + 1})
    assert roomy.choices["quality_by"] == "target" and roomy.data == free.data


def test_an_unreachable_target_uses_quality_100_and_says_so():
    output = run({"format": "jpeg", "quality": "auto", "target": 100})
    assert output.choices["quality"] == 100 and output.choices["quality_by"] == "target_not_reached"


def test_an_image_too_small_to_score_gets_the_usual_quality():
    output = run({"format": "webp", "quality": "auto"}, encode(gradient((6, 40)), "PNG"))
    assert output.choices["quality"] == 80 and output.choices["quality_by"] == "too_small_to_score"
    assert output.choices["score"] is None


@pytest.mark.parametrize("fmt_op, words", [
    ({"format": "png", "quality": "auto"}, "needs a format with a quality"),
    ({"format": "webp", "quality": "auto", "lossless": True}, "exclude each other"),
    ({"format": "jpeg", "quality": 80, "target": 90}, "give quality 'auto' with it"),
    ({"format": "jpeg", "quality": "high"}, "auto"),
])
def test_auto_quality_misuse_is_refused_with_a_reason(fmt_op, words):
    with pytest.raises(OperationsError) as err:
        resolve_operations(None, [{"op": "format", **fmt_op}])
    assert words in err.value.message


def test_a_large_image_is_scored_on_its_most_detailed_512_px_window():
    big = Image.new("RGB", (900, 700), (90, 140, 200))
    big.paste(picture((300, 200)), (560, 440))             # the only detail, bottom right
    data = encode(big, "PNG")
    output = run({"format": "jpeg", "quality": "auto", "target": 70}, data)
    left, top, right, bottom = output.choices["scored_window"]
    assert (right - left, bottom - top) == (512, 512)
    overlap = (min(right, 860) - max(left, 560)) * (min(bottom, 640) - max(top, 440))
    assert overlap >= 0.9 * 300 * 200                      # the window is on the detail, not the flat blue
    # the score reported is the window's, as an independent scorer sees it
    window = (left, top, right, bottom)
    reference, decoded = big.crop(window), Image.open(io.BytesIO(output.data)).convert("RGB").crop(window)
    assert compute_ssimulacra2(io.BytesIO(encode(reference, "PNG")), io.BytesIO(encode(decoded, "PNG"))) == \
        pytest.approx(output.choices["score"], abs=0.01)
    assert output.choices["score"] >= 70


def test_transparency_is_scored_on_grey_so_an_rgba_webp_reaches_its_target():
    rgba = picture((96, 72)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((96, 72)))
    # colour under fully transparent pixels is noise an encoder may discard: it must not count
    hidden = Image.frombytes("RGB", (96, 8), random.Random(9).randbytes(96 * 8 * 3)).convert("RGBA")
    hidden.putalpha(0)
    rgba.paste(hidden, (0, 0))
    output = run({"format": "webp", "quality": "auto", "target": 70}, encode(rgba, "PNG"))
    assert output.choices["quality_by"] == "target" and output.choices["score"] >= 70
    grey = Image.new("RGB", rgba.size, (128, 128, 128))
    flat_reference, flat_output = grey.copy(), grey.copy()
    flat_reference.paste(rgba, mask=rgba.getchannel("A"))
    decoded = Image.open(io.BytesIO(output.data)).convert("RGBA")
    flat_output.paste(decoded, mask=decoded.getchannel("A"))
    assert compute_ssimulacra2(io.BytesIO(encode(flat_reference, "PNG")), io.BytesIO(encode(flat_output, "PNG"))) \
        == pytest.approx(output.choices["score"], abs=0.01)
