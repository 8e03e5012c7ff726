"""The core operations of ARCHITECTURE.md, checked on what a user sees in the output."""
from __future__ import annotations

import pytest
from PIL import Image

from imageflow.engine import ImageError, Limits, render
from imageflow.engine.schema import resolve_operations

from engine_samples import close, encode, gradient, halves, open_output


def run(data: bytes, operations: list[dict], limits: Limits | None = None):
    return render(data, resolve_operations(None, operations), limits or Limits())


def one(data: bytes, operations: list[dict]):
    outputs = run(data, operations)
    assert len(outputs) == 1 and outputs[0].variant == ""
    return outputs[0], open_output(outputs[0])


JPEG = encode(gradient((400, 300)), "JPEG", quality=90)


@pytest.mark.parametrize("op, size", [
    ({"width": 200}, (200, 150)),
    ({"height": 150}, (200, 150)),
    ({"width": 100, "height": 100}, (100, 75)),
    ({"width": 100, "height": 100, "fit": "cover"}, (100, 100)),
    ({"width": 100, "height": 30, "fit": "fill"}, (100, 30)),
    ({"width": 800}, (400, 300)),                          # no upscaling by default
    ({"width": 800, "upscale": True}, (800, 600)),
    ({"width": 800, "height": 100, "fit": "cover"}, (400, 100)),   # cover without upscale: crop only
])
def test_resize_dimensions(op, size):
    rendered, image = one(JPEG, [{"op": "resize", **op}])
    assert image.size == size == (rendered.width, rendered.height)
    assert image.format == "JPEG" and rendered.content_type == "image/jpeg" and rendered.ext == "jpg"


def test_cover_gravity_keeps_the_requested_side():
    data = encode(halves((200, 100)), "PNG")
    _, west = one(data, [{"op": "resize", "width": 50, "height": 50, "fit": "cover", "gravity": "west"}])
    _, east = one(data, [{"op": "resize", "width": 50, "height": 50, "fit": "cover", "gravity": "east"}])
    assert close(west.getpixel((25, 25)), (255, 0, 0)) and close(east.getpixel((25, 25)), (0, 0, 255))


def test_crop_box_and_clipping():
    data = encode(halves((200, 100)), "PNG")
    _, image = one(data, [{"op": "crop", "x": 150, "y": 10, "width": 100, "height": 20}])
    assert image.size == (50, 20) and close(image.getpixel((10, 10)), (0, 0, 255))
    with pytest.raises(ImageError) as err:
        run(data, [{"op": "crop", "x": 500, "y": 0, "width": 10, "height": 10}])
    assert err.value.code == "invalid" and "outside" in err.value.reason


def test_rotate_quarter_turn_is_clockwise_and_exact():
    data = encode(halves((40, 20)), "PNG")
    _, image = one(data, [{"op": "rotate", "degrees": 90}])
    assert image.size == (20, 40)
    assert image.getpixel((10, 5)) == (255, 0, 0) and image.getpixel((10, 35)) == (0, 0, 255)


def test_rotate_any_angle_fills_background():
    data = encode(Image.new("RGB", (100, 100), (0, 0, 0)), "PNG")
    _, image = one(data, [{"op": "rotate", "degrees": 45, "background": "#00ff00"}])
    assert image.width > 130 and image.getpixel((2, 2)) == (0, 255, 0)


def test_flip():
    data = encode(halves((40, 20)), "PNG")
    _, image = one(data, [{"op": "flip", "direction": "horizontal"}])
    assert image.getpixel((2, 10)) == (0, 0, 255)
    _, image = one(encode(halves((40, 20)).rotate(90, expand=True), "PNG"), [{"op": "flip", "direction": "vertical"}])
    assert image.getpixel((10, 2)) == (255, 0, 0)


def test_grayscale_output_mode():
    rendered, image = one(JPEG, [{"op": "grayscale"}])
    assert image.mode == "L"
    _, png = one(encode(gradient().convert("RGBA"), "PNG"), [{"op": "grayscale"}])
    assert png.mode == "LA"


def test_blur_and_sharpen_change_detail():
    data = encode(halves((40, 20), (0, 0, 0), (255, 255, 255)), "PNG")
    _, blurred = one(data, [{"op": "blur", "radius": 3}])
    assert 30 < blurred.getpixel((20, 10))[0] < 225          # the hard edge is soft now
    soft = encode(blurred, "PNG")
    _, sharpened = one(soft, [{"op": "sharpen", "radius": 2, "percent": 300, "threshold": 0}])
    assert sharpened.getpixel((16, 10))[0] < blurred.getpixel((16, 10))[0]


@pytest.mark.parametrize("fmt, pil, mime", [
    ("jpeg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp"),
    ("avif", "AVIF", "image/avif"), ("gif", "GIF", "image/gif"), ("tiff", "TIFF", "image/tiff"),
])
def test_format_conversion(fmt, pil, mime):
    rendered, image = one(JPEG, [{"op": "resize", "width": 64}, {"op": "format", "format": fmt}])
    assert image.format == pil and rendered.content_type == mime and rendered.format == fmt
    assert image.size == (64, 48)


def test_quality_changes_size():
    low, _ = one(JPEG, [{"op": "format", "format": "jpeg", "quality": 20}])
    high, _ = one(JPEG, [{"op": "format", "format": "jpeg", "quality": 95}])
    assert len(low.data) < len(high.data) * 0.7


def test_keeps_input_format_without_format_op():
    for fmt, pil in (("PNG", "PNG"), ("WEBP", "WEBP"), ("GIF", "GIF"), ("TIFF", "TIFF")):
        _, image = one(encode(gradient(), fmt), [])
        assert image.format == pil
    rendered, image = one(encode(gradient(), "BMP"), [])
    assert image.format == "PNG" and rendered.ext == "png"      # BMP is written as PNG


def exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera Maker"
    exif[0x0110] = "Model X"
    return encode(halves((40, 20)), "JPEG", quality=95, exif=exif.tobytes(), comment=b"secret comment")


def test_exif_orientation_applied_and_metadata_stripped():
    rendered, image = one(exif_jpeg(6), [])
    assert image.size == (20, 40) == (rendered.width, rendered.height)
    assert close(image.getpixel((10, 5)), (255, 0, 0), 40) and close(image.getpixel((10, 35)), (0, 0, 255), 40)
    assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
    assert b"Camera Maker" not in rendered.data and b"secret comment" not in rendered.data


def test_auto_orient_can_be_disabled():
    _, image = one(exif_jpeg(6), [{"op": "auto_orient", "enabled": False}])
    assert image.size == (40, 20)


def test_metadata_kept_on_request_with_orientation_reset():
    rendered, image = one(exif_jpeg(6), [{"op": "metadata", "strip": False}])
    exif = image.getexif()
    assert exif[0x010F] == "Camera Maker" and exif.get(0x0112, 1) == 1 and image.size == (20, 40)


def test_alpha_flattened_onto_background_for_jpeg():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 10, 20))
    data = encode(image, "PNG")
    _, white = one(data, [{"op": "format", "format": "jpeg"}])
    assert white.mode == "RGB" and close(white.getpixel((15, 10)), (255, 255, 255))
    assert close(white.getpixel((5, 10)), (0, 0, 255))
    _, black = one(data, [{"op": "format", "format": "jpeg", "background": "black"}])
    assert close(black.getpixel((15, 10)), (0, 0, 0))
    _, png = one(data, [{"op": "format", "format": "png"}])
    assert png.mode == "RGBA" and png.getpixel((15, 10))[3] == 0


def test_invalid_operations_in_a_task_are_an_image_error():
    with pytest.raises(ImageError) as err:
        render(JPEG, [{"op": "resize", "width": -1}], Limits())
    assert err.value.code == "invalid" and "operations[0] (resize): width" in err.value.reason
