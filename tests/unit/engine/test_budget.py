"""The render budget (imageflow.engine.limits.RenderBudget), checked as the render goes: every frame
after every operation, every variant, watermark text layers, GIF canvases that grow on seek, Pillow's
own size errors and the time limit. Each case is refused with ImageError, before the memory is spent."""
from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from imageflow.engine import Limits, render
from imageflow.engine.limits import ImageError


def png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def gif(frames: int, size=(10, 10), later_size: tuple[int, int] | None = None) -> bytes:
    """An animation of distinct frames; with ``later_size``, every frame after the first is that large
    while the logical screen stays the first frame's ``size`` (the canvas grows on seek)."""
    images = [Image.new("RGB", size if i == 0 or not later_size else later_size,
                        ((i * 37) % 256, (i * 91) % 256, 50)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", *size)
    return bytes(data)


def refused(data: bytes, operations: list[dict], limits: Limits, code: str = "too_large") -> ImageError:
    with pytest.raises(ImageError) as err:
        render(data, operations, limits)
    assert err.value.code == code, err.value
    return err.value


def test_an_upscaled_animation_is_stopped_when_its_frames_pass_the_budget():
    """40 frames of 10x10 (4000 pixels decoded) resized to 1000x1000 would hold 40 megapixels."""
    limits = Limits(max_pixels=2_000_000, max_animation_pixels=10_000_000)
    error = refused(gif(40), [{"op": "resize", "width": 1000, "height": 1000, "fit": "fill", "upscale": True},
                              {"op": "format", "format": "gif"}], limits)
    assert "operations[0] (resize)" in error.reason and "megapixels" in error.reason


def test_a_padded_animation_is_stopped_too():
    limits = Limits(max_pixels=2_000_000, max_animation_pixels=10_000_000)
    refused(gif(40), [{"op": "pad", "width": 1000, "height": 1000}, {"op": "format", "format": "gif"}], limits)


def test_gif_frames_larger_than_the_logical_screen_are_counted_before_they_are_decoded():
    """A GIF whose header says 10x10 and whose 19 later frames are 500x500 (4.75 megapixels in all):
    each frame is checked at its own size before it is decoded; once decoded it is clipped to the
    canvas, so the frames held stay 10x10."""
    data = gif(20, later_size=(500, 500))
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.size == (10, 10), "the header check alone would let it through"
    error = refused(data, [{"op": "format", "format": "gif"}], Limits(max_pixels=100_000))
    assert "decoding frame" in error.reason and "500x500" in error.reason
    limits = Limits(max_pixels=1_000_000, max_animation_pixels=1_000_000)
    [out] = render(data, [{"op": "format", "format": "gif"}], limits)
    assert (out.width, out.height) == (10, 10)


def test_variants_count_the_copies_alive_while_one_is_scaled():
    """A variant is scaled from the next larger copy, which stays alive until the new one is made: both
    count against the budget (an encoded variant is released, so variants do not add up)."""
    limits = Limits(max_pixels=5_000_000, max_animation_pixels=6_000_000)
    error = refused(png((2000, 2000)), [{"op": "variants", "widths": [1999, 1998]}], limits)
    assert "variant" in error.reason
    # halving widths keep 4 + 1 MP alive at once, however many variants there are
    assert len(render(png((2000, 2000)), [{"op": "variants", "widths": [1000, 500, 250, 125]}], limits)) == 4


def test_a_watermark_text_layer_past_the_pixel_limit_is_refused_before_it_is_drawn():
    """On a 16x16 PNG, 200 W at 1000 px (was 665 MB, then a DecompressionBombError retried as transient)."""
    error = refused(png(), [{"op": "watermark", "text": "W" * 200, "size": 1000}], Limits())
    assert "watermark" in error.reason
    assert render(png((400, 100)), [{"op": "watermark", "text": "ok", "size": 20}], Limits())


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_size_errors_are_image_errors(monkeypatch):
    """Pillow's own DecompressionBombError (here from drawing text past a lowered Image.MAX_IMAGE_PIXELS) is
    a too_large ImageError: a permanent failure, not a transient one to retry."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # Pillow refuses past twice this: the 200x200 input opens
    error = refused(png((200, 200)), [{"op": "watermark", "text": "W" * 8, "size": 200}], Limits())
    assert "watermark" in error.reason


def test_a_render_past_its_time_limit_stops_with_timeout():
    refused(png(), [{"op": "grayscale"}], Limits(max_render_seconds=0), code="timeout")
