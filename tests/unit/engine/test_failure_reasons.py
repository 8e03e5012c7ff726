"""Every failure reason is ours (issue 22): each broken file we can make fails with a code from
ImageError.CODES and a plain sentence, never a library's words (Pillow, libtiff, libwebp, zlib,
Python exception names); valid files the libraries stumble on are rendered or named for what
they are."""
from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imageflow.engine import ImageError, Limits, probe, render
from imageflow.engine.failures import unsupported_tiff_compression

from tests.broken_images import (ENGINE_CODES, UNSUPPORTED_IMAGES, broken_files, gif_frame_past_canvas, library_words,
                          png_damage, tiff_damage, tiff_webp, truncations, valid_files)

GROUPS = broken_files()
VALID = valid_files()
# the default render, and one through the shrink-on-load, resize and WebP encode paths
OPERATIONS = ([], [{"op": "resize", "width": 16}, {"op": "format", "format": "webp"}])


def failure(data: bytes, operations=(), limits: Limits | None = None) -> ImageError | None:
    """The error the engine gives ``data`` (probe, as at upload, then render); None when it renders.
    Any exception but ImageError fails the test: it would reach the user as a crash."""
    limits = limits or Limits()
    try:
        probe(data, limits)
        render(data, list(operations), limits)
    except ImageError as exc:
        return exc
    return None


def wrong_reasons(files: dict[str, bytes], operations=()) -> list[str]:
    problems = []
    for name, data in files.items():
        exc = failure(data, operations)
        if exc is None:
            continue
        if exc.code not in ENGINE_CODES:
            problems.append(f"{name}: no known error_code ({exc.code!r})")
        if not exc.reason or library_words(exc.reason):
            problems.append(f"{name}: {exc.reason!r} has a library's words {library_words(exc.reason)}")
    return problems


@pytest.mark.parametrize("operations", OPERATIONS, ids=["default", "resize-webp"])
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_broken_file_fails_in_our_words(group, operations):
    problems = wrong_reasons(GROUPS[group], operations)
    assert not problems, "\n".join(problems)


def test_broken_images_are_not_called_text():
    # a PNG cut after its first byte is a truncated PNG, not a text file (cut in its last bytes,
    # some still render)
    for name, data in VALID.items():
        for what, cut in truncations(data).items():
            exc = failure(cut)
            assert exc is None or "text" not in exc.reason, (name, what, exc.reason)
    exc = failure(VALID["png"][:1])
    assert (exc.code, exc.reason) == ("corrupt", "the file is truncated: it is only 1 byte long "
                                                 "(the start of a PNG image)")


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_IMAGES))
def test_images_in_formats_we_do_not_read_are_named(name):
    data, shown = UNSUPPORTED_IMAGES[name]
    exc = failure(data)
    assert (exc.code, exc.reason) == ("unsupported", f"unsupported format: {shown}")


def test_text_that_is_not_an_image_is_still_called_text():
    assert failure(b"hello, this is plain text\n").reason == "not an image: the content is text"


def test_tiff_compression_we_cannot_decode_is_named():
    damage = tiff_damage()
    for name, shown in (("tiff JPEG 2000 compression", "JPEG 2000"), ("tiff unknown compression", "scheme 12345")):
        exc = failure(damage[name])
        assert (exc.code, exc.reason) == ("unsupported_compression", f"unsupported TIFF compression ({shown})")
    # a valid WebP-compressed TIFF: refused by name where this libtiff lacks the codec
    webp = unsupported_tiff_compression(tiff_webp())
    if webp is not None:
        exc = failure(tiff_webp())
        assert (exc.code, exc.reason) == ("unsupported_compression", "unsupported TIFF compression (WebP)")


def test_pillow_bomb_stop_reports_our_limit():
    exc = failure(png_damage()["png 179 MP (past Pillow's own bomb limit)"])
    assert (exc.code, exc.reason) == ("too_large", "the image is 179.6 megapixels, over the limit of 50 megapixels")


def test_metadata_bomb_is_too_large_in_our_words():
    for name in ("png text chunk bomb", "png ICC profile bomb"):
        exc = failure(png_damage()[name])
        assert exc.code == "too_large" and "metadata" in exc.reason, exc.reason


@pytest.mark.parametrize("fmt", ["webp", "gif", "png"])
def test_gif_with_a_frame_past_its_canvas_renders(fmt):
    data = gif_frame_past_canvas()
    [out] = render(data, [{"op": "format", "format": fmt}], Limits())
    image = Image.open(io.BytesIO(out.data))
    assert (out.width, out.height) == image.size == (24, 16)
    assert getattr(image, "n_frames", 1) == 3
    image.seek(1)
    inside = image.convert("RGB").getpixel((20, 12))    # the second frame's colour, clipped to the canvas
    assert abs(inside[0] - 80) < 16 and abs(inside[2] - 150) < 16, inside


def test_output_past_a_format_limit_says_so():
    exc = failure(VALID["png"], [{"op": "resize", "width": 16_384, "height": 8, "fit": "fill",
                                  "upscale": True},
                                 {"op": "format", "format": "webp"}])
    assert exc.code == "output_too_large"
    assert exc.reason == "the output would be 16384x8, and a WEBP image can be at most 16383 pixels a side"


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.data())
def test_random_damage_fails_in_our_words(name, data):
    original = VALID[name]
    broken = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        at = data.draw(st.integers(0, len(broken) - 1), label="offset")
        broken[at] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(1, len(broken)), label="length")
    problems = wrong_reasons({name: bytes(broken[:cut])}, OPERATIONS[data.draw(st.integers(0, 1))])
    assert not problems, problems
