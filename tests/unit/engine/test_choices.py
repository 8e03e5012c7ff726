"""The per-image report of choices: every choice the render made, in one dict per output."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from imageflow.engine import Limits, render
from imageflow.engine.schema import resolve_operations

from engine_samples import encode, gradient, swapped_profile

PORTRAIT = Image.open(Path(__file__).parents[2] / "data" / "faces" / "astronaut.jpg").convert("RGB")


def choices(data: bytes, operations, assets=None) -> dict:
    outputs = render(data, resolve_operations(None, operations), Limits(), assets=assets)
    return outputs[0].choices


def test_a_colour_conversion_from_an_embedded_profile_is_reported_by_the_profiles_name():
    data = encode(gradient((40, 30)), "JPEG", icc_profile=swapped_profile())
    assert choices(data, [])["color_converted_from"] == "swapped red/green test"
    assert "color_converted_from" not in choices(data, [{"op": "metadata", "icc": "keep"}])
    assert "color_converted_from" not in choices(encode(gradient((40, 30)), "JPEG"), [])


def test_an_overlays_own_profile_is_not_reported_as_the_pictures():
    logo = encode(gradient((8, 8)), "PNG", icc_profile=swapped_profile())
    report = choices(encode(gradient((40, 30)), "PNG"), [{"op": "overlay", "image": "l.png"}], {"l.png": logo})
    assert "color_converted_from" not in report and report["overlay"]["image"] == "l.png"


def test_one_render_reports_the_trim_box_the_faces_and_the_quality_together():
    framed = Image.new("RGB", (300, 296), "white")
    framed.paste(PORTRAIT, (20, 30))
    report = choices(encode(framed, "PNG"), [
        {"op": "trim"},
        {"op": "crop", "aspect": "2:1", "gravity": "face"},
        {"op": "format", "format": "webp", "quality": "auto", "target": 75},
    ])
    assert report["trim"] == [20, 30, 276, 286]
    assert report["gravity"] == "face" and len(report["faces"]) == 1
    assert report["quality_by"] == "target" and report["score"] >= 75 and 1 <= report["quality"] <= 100


def test_a_plain_render_reports_nothing_it_did_not_choose():
    assert choices(encode(gradient((40, 30)), "PNG"), [{"op": "resize", "width": 20}]) == {}
