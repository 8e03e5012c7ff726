"""The full operation set beyond the core: tone, pad, watermark, smart crops, variants,
max_bytes, progressive and lossless output, animations."""
from __future__ import annotations

import io

import pytest
from PIL import Image, ImageStat

from imageflow.engine import ImageError, Limits, render
from imageflow.engine.schema import resolve_operations

from engine_samples import close, encode, gradient, open_output


def run(data: bytes, operations, limits: Limits | None = None):
    return render(data, resolve_operations(None, operations), limits or Limits())


def one(data: bytes, operations):
    outputs = run(data, operations)
    assert len(outputs) == 1
    return outputs[0], open_output(outputs[0])


GREY = encode(Image.new("RGB", (40, 30), (100, 120, 140)), "PNG")


@pytest.mark.parametrize("op, check", [
    ({"op": "brightness", "factor": 2.0}, lambda px: px == (200, 240, 255)),
    ({"op": "brightness", "factor": 0.0}, lambda px: px == (0, 0, 0)),
    ({"op": "contrast", "factor": 0.0}, lambda px: max(px) - min(px) <= 1),
    ({"op": "saturation", "factor": 0.0}, lambda px: max(px) - min(px) <= 1),
    ({"op": "saturation", "factor": 2.0}, lambda px: px[2] - px[0] > 40),
])
def test_tone_adjustments(op, check):
    _, image = one(GREY, [op])
    assert check(image.getpixel((5, 5))), image.getpixel((5, 5))


def test_tone_keeps_alpha():
    data = encode(Image.new("RGBA", (10, 10), (100, 100, 100, 128)), "PNG")
    _, image = one(data, [{"op": "brightness", "factor": 2}, {"op": "contrast", "factor": 1.5}])
    assert image.getpixel((5, 5))[3] == 128


def test_pad_to_a_box_with_background_and_gravity():
    _, image = one(GREY, [{"op": "pad", "width": 100, "height": 50, "background": "#ff0000"}])
    assert image.size == (100, 50)
    assert image.getpixel((2, 2)) == (255, 0, 0) and image.getpixel((50, 25)) == (100, 120, 140)
    _, north_west = one(GREY, [{"op": "pad", "width": 100, "height": 50, "gravity": "northwest"}])
    assert north_west.getpixel((2, 2)) == (100, 120, 140) and north_west.getpixel((98, 48)) == (255, 255, 255)


def test_pad_with_transparent_background_gives_alpha():
    _, image = one(GREY, [{"op": "pad", "width": 60, "background": "transparent"}])
    assert image.mode == "RGBA" and image.getpixel((1, 1))[3] == 0 and image.getpixel((30, 15))[3] == 255


def test_pad_as_jpeg_flattens_onto_the_format_background():
    _, image = one(GREY, [{"op": "pad", "width": 60, "background": "transparent"},
                          {"op": "format", "format": "jpeg", "background": "#000000"}])
    assert image.mode == "RGB" and close(image.getpixel((1, 1)), (0, 0, 0))


def test_watermark_draws_text_in_the_corner_with_opacity():
    black = encode(Image.new("RGB", (300, 200), (0, 0, 0)), "PNG")
    _, solid = one(black, [{"op": "watermark", "text": "IMAGEFLOW", "opacity": 1.0, "size": 40}])
    _, faint = one(black, [{"op": "watermark", "text": "IMAGEFLOW", "opacity": 0.3, "size": 40}])
    # the text lands in the bottom-right quarter only
    assert ImageStat.Stat(solid.crop((150, 100, 300, 200))).extrema[0][1] == 255
    assert ImageStat.Stat(solid.crop((0, 0, 150, 100))).extrema[0][1] == 0
    assert ImageStat.Stat(faint.crop((150, 100, 300, 200))).extrema[0][1] < 100
    _, top_left = one(black, [{"op": "watermark", "text": "X", "position": "northwest", "opacity": 1.0}])
    assert ImageStat.Stat(top_left.crop((0, 0, 60, 60))).extrema[0][1] > 200


def test_watermark_longer_than_the_image_is_shrunk_to_fit():
    data = encode(Image.new("RGB", (60, 40), (0, 0, 0)), "PNG")
    _, image = one(data, [{"op": "watermark", "text": "a very long watermark text indeed", "size": 30,
                           "opacity": 1}])
    assert image.size == (60, 40) and ImageStat.Stat(image).extrema[0][1] > 100


def busy_right_half(size=(200, 100)) -> bytes:
    """Flat grey on the left, detailed on the right: smart gravity must pick the right."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste(gradient((size[0] // 2, size[1])), (size[0] // 2, 0))
    return encode(image, "PNG")


def test_cover_smart_gravity_keeps_the_detail():
    _, image = one(busy_right_half(), [{"op": "resize", "width": 50, "height": 50, "fit": "cover",
                                        "gravity": "smart"}])
    assert image.size == (50, 50) and ImageStat.Stat(image).stddev[0] > 20


def test_crop_aspect_ratio_with_gravity():
    _, center = one(busy_right_half(), [{"op": "crop", "aspect": "1:1"}])
    assert center.size == (100, 100)
    _, smart = one(busy_right_half(), [{"op": "crop", "aspect": "1:1", "gravity": "smart"}])
    _, west = one(busy_right_half(), [{"op": "crop", "aspect": "1:1", "gravity": "west"}])
    assert ImageStat.Stat(smart).stddev[0] > 20 and ImageStat.Stat(west).stddev[0] < 1
    _, wide = one(busy_right_half(), [{"op": "crop", "aspect": "4:1"}])
    assert wide.size == (200, 50)


def test_rotate_arbitrary_angle_with_transparent_background():
    _, image = one(GREY, [{"op": "rotate", "degrees": 30, "background": "transparent"},
                          {"op": "format", "format": "png"}])
    assert image.mode == "RGBA" and image.getpixel((0, 0))[3] == 0
    assert image.getpixel((image.width // 2, image.height // 2))[3] == 255


def test_operations_apply_in_order():
    _, crop_then_resize = one(GREY, [{"op": "crop", "x": 0, "y": 0, "width": 20, "height": 30},
                                     {"op": "resize", "width": 10}])
    _, resize_then_crop = one(GREY, [{"op": "resize", "width": 10},
                                     {"op": "crop", "x": 0, "y": 0, "width": 20, "height": 30}])
    assert crop_then_resize.size == (10, 15) and resize_then_crop.size == (10, 8)


# -- variants ----------------------------------------------------------------------------------

def test_variants_widths_times_formats_named_predictably():
    data = encode(gradient((800, 600)), "JPEG", quality=90)
    outputs = run(data, [{"op": "grayscale"},
                         {"op": "variants", "widths": [320, 100, 1000], "formats": ["jpeg", "webp"]}])
    assert [o.variant for o in outputs] == ["w320-jpeg", "w320-webp", "w100-jpeg", "w100-webp",
                                            "w1000-jpeg", "w1000-webp"]
    sizes = {o.variant: (o.width, o.height) for o in outputs}
    assert sizes["w320-jpeg"] == (320, 240) and sizes["w100-webp"] == (100, 75)
    assert sizes["w1000-jpeg"] == (800, 600)          # never enlarged
    for output in outputs:
        image = open_output(output)
        assert image.size == (output.width, output.height)
        assert image.format == output.format.upper() and output.ext in ("jpg", "webp")
        assert ImageStat.Stat(image.convert("RGB")).mean[0] == pytest.approx(
            ImageStat.Stat(image.convert("RGB")).mean[2], abs=3)        # grayscale ran before every variant


def test_variants_formats_only_and_format_quality():
    data = encode(gradient((100, 80)), "PNG")
    outputs = run(data, [{"op": "format", "format": "webp", "quality": 10},
                         {"op": "variants", "formats": ["webp", "avif", "png"]}])
    assert [o.variant for o in outputs] == ["webp", "avif", "png"]
    assert [o.content_type for o in outputs] == ["image/webp", "image/avif", "image/png"]
    low = run(data, [{"op": "format", "format": "webp", "quality": 10}])[0]
    assert len(outputs[0].data) == len(low.data)      # the format op's quality applies to its format


def test_no_variants_gives_one_unnamed_output():
    assert [o.variant for o in run(GREY, [])] == [""]


# -- encoding ----------------------------------------------------------------------------------

def test_progressive_jpeg():
    data = encode(gradient((200, 150)), "PNG")
    _, image = one(data, [{"op": "format", "format": "jpeg", "progressive": True}])
    assert image.info.get("progressive") == 1 or image.info.get("progression") == 1
    _, baseline = one(data, [{"op": "format", "format": "jpeg"}])
    assert not baseline.info.get("progressive")


def test_lossless_webp_is_exact():
    data = encode(gradient((64, 48)), "PNG")
    _, image = one(data, [{"op": "format", "format": "webp", "lossless": True}])
    assert image.convert("RGB").tobytes() == Image.open(io.BytesIO(data)).tobytes()


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_max_bytes_lowers_quality_until_it_fits(fmt):
    data = encode(gradient((320, 240)), "PNG")
    full = run(data, [{"op": "format", "format": fmt, "quality": 95}])[0]
    limit = len(full.data) // 3
    fitted = run(data, [{"op": "format", "format": fmt, "quality": 95, "max_bytes": limit}])[0]
    assert len(fitted.data) <= limit < len(full.data)
    assert open_output(fitted).size == (320, 240)


def test_max_bytes_impossible_fails_clearly():
    data = encode(gradient((320, 240)), "PNG")
    with pytest.raises(ImageError) as err:
        run(data, [{"op": "format", "format": "jpeg", "max_bytes": 512}])
    assert err.value.code == "output_too_large" and "quality 1" in err.value.reason
    with pytest.raises(ImageError) as err:
        run(data, [{"op": "format", "format": "jpeg", "quality": 1, "max_bytes": 512}])
    assert "quality 1" in err.value.reason
    for fmt, lossless in (("png", False), ("webp", True), ("avif", True)):
        with pytest.raises(ImageError) as err:
            run(data, [{"op": "format", "format": fmt, "lossless": lossless, "max_bytes": 512}])
        assert err.value.code == "output_too_large" and "no quality to lower" in err.value.reason


def test_output_size_limit():
    data = encode(gradient((320, 240)), "PNG")
    with pytest.raises(ImageError) as err:
        run(data, [{"op": "format", "format": "png"}], Limits(max_output_bytes=1000))
    assert err.value.code == "output_too_large"


def test_upscale_beyond_the_pixel_limit_is_refused():
    with pytest.raises(ImageError) as err:
        run(GREY, [{"op": "resize", "width": 16000, "upscale": True}], Limits(max_pixels=1_000_000))
    assert err.value.code == "too_large" and "resize would make" in err.value.reason


# -- animations -------------------------------------------------------------------------------

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def animation(fmt: str = "GIF") -> bytes:
    frames = []
    for color in COLORS:
        frame = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
        frame.paste(color + (255,), (0, 0, 20, 30))      # right half transparent
        frames.append(frame)
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=[40, 50, 60, 70, 80],
                  loop=0, **({"disposal": 2} if fmt == "GIF" else {}))


def frames_of(rendered) -> list[Image.Image]:
    image = open_output(rendered)
    result = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        result.append(image.convert("RGBA"))
    return result


@pytest.mark.parametrize("source", ["GIF", "PNG"])
@pytest.mark.parametrize("fmt", ["gif", "webp", "png"])
def test_animated_frames_kept_with_timing_and_transparency(source, fmt):
    output = run(animation(source), [{"op": "resize", "width": 20}, {"op": "format", "format": fmt}])[0]
    frames = frames_of(output)
    assert len(frames) == 5 and frames[0].size == (20, 15)
    for frame, color in zip(frames, COLORS):
        assert close(frame.getpixel((3, 7))[:3], color, 8) and frame.getpixel((17, 7))[3] == 0
    image = open_output(output)
    image.seek(2)
    image.load()
    assert image.info["duration"] == 60


def test_animated_first_frame_only_by_option_or_format():
    data = animation()
    first = run(data, [{"op": "frames", "mode": "first"}])[0]
    assert len(frames_of(first)) == 1 and close(frames_of(first)[0].getpixel((3, 7))[:3], COLORS[0])
    jpeg = run(data, [{"op": "format", "format": "jpeg"}])[0]
    assert open_output(jpeg).size == (40, 30) and not getattr(open_output(jpeg), "is_animated", False)


def test_animated_frame_cap():
    output = run(animation(), [{"op": "frames", "max": 2}])[0]
    assert len(frames_of(output)) == 2
    capped = render(animation(), [], Limits(max_frames=5))[0]
    assert len(frames_of(capped)) == 5


def test_animation_pixel_budget():
    with pytest.raises(ImageError) as err:
        render(animation(), [], Limits(max_animation_pixels=40 * 30 * 4))
    assert err.value.code == "too_large" and "frames" in err.value.reason
    four = render(animation(), [{"op": "frames", "max": 4}], Limits(max_animation_pixels=40 * 30 * 4))[0]
    assert len(frames_of(four)) == 4


def test_multipage_tiff_gives_its_first_page_not_an_animation():
    pages = [Image.new("RGB", (20, 10), color) for color in COLORS[:3]]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    output = run(data, [{"op": "format", "format": "webp"}])[0]
    frames = frames_of(output)
    assert len(frames) == 1 and close(frames[0].getpixel((5, 5))[:3], COLORS[0], 8)
