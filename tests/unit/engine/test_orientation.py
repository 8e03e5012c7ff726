"""Orientation is applied exactly once, for every input format that can carry one.

Each case stores a non-square picture of four coloured quadrants (asymmetric under all eight
orientations) with an orientation, renders it through the engine (full size and downscaled,
through every decode path: simplejpeg's and Pillow's shrink-on-load, libvips' PNG/WebP
loaders and the plain Pillow decode) and compares the output with the upright reference made
here from the stored pixels: the size and the colour at the centre of each quadrant.
"""
from __future__ import annotations

import io

import pytest
from PIL import Image

from imageflow.engine import Limits, decoding, jxl, probe, render, vips
from imageflow.engine.schema import resolve_operations
from orientation_samples import (LOSSY, ORIENTATIONS, WRITERS, assert_upright, encode, exif_with, sample,
                                 stored_pixels, upright)


def render_png(data: bytes, operations: list[dict]) -> Image.Image:
    out = render(data, resolve_operations(None, operations + [{"op": "format", "format": "png"}]), Limits())
    image = Image.open(io.BytesIO(out[0].data))
    image.load()
    return image


# decode paths: (FAST_JPEG, libvips): simplejpeg's N/8 decode reduced by libvips, Pillow's draft
# (1/2, 1/4, 1/8), and no libvips at all (Pillow decodes PNG and WebP whole)
PATHS = {"fast": (True, True), "pillow-draft": (False, True), "no-vips": (True, False)}
CASES = [(kind, path) for kind in WRITERS for path in PATHS
         if path == "fast" or kind == "jpeg" or (kind in ("png", "webp") and path == "no-vips")]
# the shrink-on-load a downscale of that format takes on the fast path
SHRINK_ON_LOAD = {"jpeg": (decoding, "_load_scaled_jpeg"), "png": (vips, "decode_scaled"),
                  "webp": (vips, "decode_scaled")}


@pytest.mark.parametrize("resize", [False, True], ids=["full", "resized"])
@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("kind,path", CASES)
def test_orientation_applied_once(kind, path, orientation, resize, monkeypatch):
    fast_jpeg, with_vips = PATHS[path]
    monkeypatch.setattr(decoding, "FAST_JPEG", fast_jpeg)
    monkeypatch.setattr(vips, "ENABLED", with_vips)
    used = []
    if kind in SHRINK_ON_LOAD:      # record that the downscale really decoded at a reduced size
        module, name = SHRINK_ON_LOAD[kind]
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, **kwargs: used.append(original(*args, **kwargs)) or used[-1])
    data = sample(kind, orientation)
    width, height = upright(stored_pixels(), orientation).shape[1::-1]
    info = probe(data, Limits())
    assert (info.width, info.height) == (width, height), f"{kind} probe, orientation {orientation}"
    image = render_png(data, [{"op": "resize", "width": width // 4}] if resize else [])
    assert image.width == (width // 4 if resize else width) and (resize or image.height == height)
    assert_upright(image, orientation, 40 if kind in LOSSY else 2, f"{kind} orientation {orientation} {path}")
    if resize and path == "fast" and kind in SHRINK_ON_LOAD:
        assert used and used[-1] is not None and max(used[-1].size) < max(width, height), "no shrink-on-load"


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("kind", WRITERS)
def test_auto_orient_off_keeps_the_stored_order_where_the_engine_can(kind, orientation):
    """``auto_orient: false`` gives the stored pixel order for formats whose orientation is a
    tag (JPEG, TIFF, PNG, WebP, and AVIF's irot/imir as Pillow reports it), even when the
    decoder turned the pixels itself (Pillow 13's TIFF); HEIC's and JPEG XL's orientation is
    part of the codestream/container, applied by their decoders, so those stay upright.
    With ``strip: false`` the kept EXIF says what the output pixels still need."""
    data = sample(kind, orientation)
    image = render_png(data, [{"op": "auto_orient", "enabled": False}, {"op": "metadata", "strip": False}])
    stays_stored = kind not in ("heic", "jxl")
    assert_upright(image, 1 if stays_stored else orientation, 40 if kind in LOSSY else 2, f"{kind} {orientation}")
    assert image.getexif().get(0x0112, 1) == (orientation if stays_stored else 1)


@pytest.mark.parametrize("orientation", [2, 6, 7])
def test_jxl_exif_orientation_is_not_the_picture_orientation(orientation):
    """JPEG XL keeps the orientation in the codestream header; an EXIF orientation that
    disagrees with it is ignored (as libjxl and browsers do), not applied on top."""
    jxl.available()
    data = encode(Image.fromarray(stored_pixels()), "JXL", lossless=True, exif=exif_with(orientation))
    image = render_png(data, [])
    assert_upright(image, 1, 2, f"jxl exif-only {orientation}")


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("kind", ["jpeg", "tiff", "png", "webp", "avif", "heic", "jxl", "jxl-jpeg"])
def test_kept_exif_after_auto_orient_says_upright(kind, orientation):
    image = render_png(sample(kind, orientation), [{"op": "metadata", "strip": False}])
    assert image.getexif().get(0x0112, 1) == 1
