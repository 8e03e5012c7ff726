"""The fast SSIMULACRA2 (engine/metric.py) gives the pinned reference port's score, and the
predicted search of quality auto meets its target in fewer encodes than a bisection."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from ssimulacra2 import compute_ssimulacra2

from bench.engine import graphic_rgba, photo
from imageflow.engine import Limits, autoquality, metric, render
from imageflow.engine.schema import resolve_operations

from engine_samples import encode


def _flat(image: Image.Image) -> Image.Image:
    return autoquality._flat(image)


IMAGES = {
    "photo": lambda: photo((300, 220), seed=3),
    "graphic on grey": lambda: _flat(graphic_rgba((256, 256))),
    "grey": lambda: photo((120, 90), seed=4).convert("L").convert("RGB"),
    "odd sides": lambda: photo((67, 41), seed=5),
}


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("quality", [15, 60, 92])
def test_the_fast_score_is_the_reference_ports_score(name, quality):
    reference = IMAGES[name]()
    distorted = Image.open(io.BytesIO(encode(reference, "JPEG", quality=quality))).convert("RGB")
    expected = compute_ssimulacra2(io.BytesIO(encode(reference, "PNG")), io.BytesIO(encode(distorted, "PNG")))
    assert metric.score(np.asarray(reference), np.asarray(distorted)) == pytest.approx(expected, abs=0.01)


def test_an_unchanged_image_scores_100_and_a_mismatched_one_is_refused():
    pixels = np.asarray(IMAGES["photo"]())
    assert metric.score(pixels, pixels) == 100.0
    with pytest.raises(ValueError, match="the image scored is 299x220, the reference 300x220"):
        metric.Reference(pixels).score(pixels[:, 1:])


def test_the_search_finds_the_boundary_in_few_scores():
    calls = []

    def measure(q):           # a smooth curve, not the typical one: the first guess misses
        calls.append(q)
        return 100 - 95 * (1 - q / 100) ** 0.7

    quality, reached = autoquality.search(measure, 70, autoquality.TYPICAL["jpeg"])
    assert reached and measure(quality) >= 70 > measure(quality - 1)
    assert len(set(calls)) <= 4               # a bisection over 1-100 scores 7
    assert autoquality.search(lambda q: q / 2, 80, autoquality.TYPICAL["webp"]) == (100, False)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_auto_on_a_large_image_meets_the_target_as_the_reference_scores_the_output(fmt):
    big = photo((700, 560), seed=11)
    data = encode(big, "PNG")
    [output] = render(data, resolve_operations(None, [{"op": "format", "format": fmt, "quality": "auto",
                                                       "target": 60}]), Limits())
    report = output.choices
    box = tuple(report["scored_window"])
    decoded = Image.open(io.BytesIO(output.data)).convert("RGB")
    independent = compute_ssimulacra2(io.BytesIO(encode(big.crop(box), "PNG")),
                                      io.BytesIO(encode(decoded.crop(box), "PNG")))
    assert report["quality_by"] == "target"
    assert independent >= 60 and independent == pytest.approx(report["score"], abs=0.01)
    if fmt == "jpeg":        # its window is encoded with a margin: the same pixels, so the lowest
        [lower] = render(data, resolve_operations(None, [{"op": "format", "format": fmt,
                                                          "quality": report["quality"] - 1}]), Limits())
        below = Image.open(io.BytesIO(lower.data)).convert("RGB").crop(box)
        assert compute_ssimulacra2(io.BytesIO(encode(big.crop(box), "PNG")),
                                   io.BytesIO(encode(below, "PNG"))) < 60
