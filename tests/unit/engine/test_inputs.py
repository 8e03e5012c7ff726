"""Every input format the engine promises, decoded to the right size, mode and colours."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageChops, ImageStat

from imageflow.engine import Limits, decoding, probe, render
from imageflow.engine.schema import resolve_operations

from engine_samples import close, encode, gradient, open_output, swapped_profile

RED = (200, 30, 30)


def solid(mode="RGB", color=RED, size=(48, 32)) -> Image.Image:
    return Image.new(mode, size, color)


def run(data: bytes, operations=()):
    outputs = render(data, resolve_operations(None, list(operations)), Limits())
    assert len(outputs) == 1
    return outputs[0], open_output(outputs[0])


def png16(width: int, height: int, color_type: int, pixel: bytes) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour PNGs)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\0" + pixel * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def heic(image: Image.Image) -> bytes:
    assert decoding.heic_available()
    return encode(image, "HEIF", quality=90)


INPUTS = {
    # name: (bytes, probed format, output format without a format op, expected colour)
    "jpeg-baseline": (lambda: encode(solid(), "JPEG", quality=95), "jpeg", "JPEG", RED),
    "jpeg-progressive": (lambda: encode(solid(), "JPEG", quality=95, progressive=True), "jpeg", "JPEG", RED),
    "jpeg-cmyk": (lambda: encode(solid().convert("CMYK"), "JPEG", quality=95), "jpeg", "JPEG", RED),
    "jpeg-grey": (lambda: encode(solid("L", 120), "JPEG", quality=95), "jpeg", "JPEG", (120,)),
    "png-rgb": (lambda: encode(solid(), "PNG"), "png", "PNG", RED),
    "png-palette": (lambda: encode(solid().quantize(8), "PNG"), "png", "PNG", RED),
    "png-16bit-grey": (lambda: png16(48, 32, 0, struct.pack(">H", 120 * 257)), "png", "PNG", (120,)),
    "png-16bit-rgb": (lambda: png16(48, 32, 2, struct.pack(">HHH", *(c * 257 for c in RED))), "png", "PNG", RED),
    "png-16bit-rgba": (lambda: png16(48, 32, 6, struct.pack(">HHHH", *(c * 257 for c in RED), 65535)),
                       "png", "PNG", RED + (255,)),
    "webp": (lambda: encode(solid(), "WEBP", lossless=True), "webp", "WEBP", RED),
    "gif": (lambda: encode(solid(), "GIF"), "gif", "GIF", RED),
    "tiff": (lambda: encode(solid(), "TIFF", compression="tiff_lzw"), "tiff", "TIFF", RED),
    "tiff-cmyk": (lambda: encode(solid().convert("CMYK"), "TIFF"), "tiff", "TIFF", RED),
    "bmp": (lambda: encode(solid(), "BMP"), "bmp", "PNG", RED),
    "avif": (lambda: encode(solid(), "AVIF", quality=95), "avif", "AVIF", RED),
    "heic": (lambda: heic(solid()), "heic", "JPEG", RED),
}


@pytest.mark.parametrize("name", INPUTS)
def test_input_format(name):
    make, probed, output, color = INPUTS[name]
    data = make()
    info = probe(data, Limits())
    assert (info.format, info.width, info.height, info.frames) == (probed, 48, 32, 1)
    rendered, image = run(data)
    assert image.format == output and image.size == (48, 32)
    if image.mode == "P":
        image = image.convert("RGB")
    assert close(image.getpixel((10, 10)), color, 16), image.getpixel((10, 10))
    _, jpeg = run(data, [{"op": "resize", "width": 24}, {"op": "format", "format": "jpeg"}])
    assert jpeg.size == (24, 16) and jpeg.mode in ("RGB", "L")
    assert close(jpeg.getpixel((10, 10)), color[:3] if len(color) > 1 else color, 16)


def test_palette_png_with_transparency_keeps_alpha():
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 10, 20))
    data = encode(image.quantize(4), "PNG")
    _, out = run(data, [{"op": "format", "format": "png"}])
    assert out.mode == "RGBA" and out.getpixel((15, 5))[3] == 0 and out.getpixel((5, 5)) == (255, 0, 0, 255)


def test_icc_profile_converted_to_srgb_by_default():
    # stored "red" in a profile whose red primary is green: a viewer shows green
    data = encode(solid(color=(200, 0, 0)), "JPEG", quality=95, icc_profile=swapped_profile())
    _, image = run(data)
    assert close(image.getpixel((5, 5)), (0, 200, 0), 20) and not image.info.get("icc_profile")


def test_icc_profile_converted_after_shrink_on_load():
    data = encode(solid(color=(200, 0, 0), size=(400, 300)), "JPEG", quality=95, icc_profile=swapped_profile())
    _, image = run(data, [{"op": "resize", "width": 100}])
    assert image.size == (100, 75) and close(image.getpixel((50, 30)), (0, 200, 0), 20)


def test_icc_profile_kept_on_request():
    profile = swapped_profile()
    data = encode(solid(color=(200, 0, 0)), "PNG", icc_profile=profile)
    _, image = run(data, [{"op": "metadata", "icc": "keep"}])
    assert image.info["icc_profile"] == profile and image.getpixel((5, 5)) == (200, 0, 0)
    _, dropped = run(data, [{"op": "metadata", "icc": "drop"}])
    assert not dropped.info.get("icc_profile") and dropped.getpixel((5, 5)) == (200, 0, 0)


@pytest.mark.parametrize("fast", [True, False])
def test_shrink_on_load_matches_a_full_decode(fast, monkeypatch):
    """JPEG decoded at a reduced scale gives the same picture as a full decode."""
    monkeypatch.setattr(decoding, "FAST_JPEG", fast)
    data = encode(gradient((800, 600)), "JPEG", quality=95)
    _, small = run(data, [{"op": "resize", "width": 200}, {"op": "format", "format": "png"}])
    reference = Image.open(io.BytesIO(data)).resize((200, 150), Image.Resampling.LANCZOS)
    assert small.size == (200, 150)
    assert max(ImageStat.Stat(ImageChops.difference(small, reference)).mean) < 2


def test_exif_orientation_with_shrink_on_load():
    exif = Image.Exif()
    exif[0x0112] = 8          # stored rotated 90 clockwise: turn it back counter-clockwise
    image = Image.new("RGB", (800, 400), (255, 0, 0))
    image.paste((0, 0, 255), (400, 0, 800, 400))
    data = encode(image, "JPEG", quality=95, exif=exif.tobytes())
    assert probe(data, Limits()).width == 400
    _, out = run(data, [{"op": "resize", "width": 100}])
    assert out.size == (100, 200)
    assert close(out.getpixel((50, 20)), (0, 0, 255), 30) and close(out.getpixel((50, 180)), (255, 0, 0), 30)
