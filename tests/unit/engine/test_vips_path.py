"""The libvips path (Lanczos reduce, PNG/WebP decoded straight to size) gives the picture
the Pillow path gives, declines what it must leave to Pillow, and the engine works the
same without it."""
from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from imageflow.engine import ImageError, Limits, render, vips
from imageflow.engine.schema import resolve_operations

from engine_samples import close, encode, gradient, open_output, swapped_profile
from test_inputs import png16

needs_pyvips = pytest.mark.skipif(vips.pyvips() is None, reason="pyvips is not installed")


def run(data: bytes, operations) -> Image.Image:
    outputs = render(data, resolve_operations(None, list(operations)), Limits())
    return open_output(outputs[0])


def both_paths(data: bytes, operations, monkeypatch) -> tuple[Image.Image, Image.Image]:
    with_vips = run(data, operations)
    monkeypatch.setattr(vips, "ENABLED", False)
    without = run(data, operations)
    monkeypatch.setattr(vips, "ENABLED", True)
    return with_vips, without


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """The largest mean difference of a band, as seen: images with alpha composited on
    white (the colour under a nearly transparent pixel is not seen), and their alpha."""
    assert a.size == b.size and a.mode == b.mode
    if a.mode not in ("LA", "RGBA"):
        return max(ImageStat.Stat(ImageChops.difference(a, b)).mean)

    def seen(image):
        canvas = Image.new(image.mode[:-1], image.size, 255 if image.mode == "LA" else (255, 255, 255))
        canvas.paste(image.convert(image.mode[:-1]), mask=image.getchannel("A"))
        return canvas
    alpha = ImageStat.Stat(ImageChops.difference(a.getchannel("A"), b.getchannel("A"))).mean[0]
    return max(alpha, *ImageStat.Stat(ImageChops.difference(seen(a), seen(b))).mean)


def photo_like(size=(640, 480), mode="RGB") -> Image.Image:
    image = gradient(size)
    return image.convert(mode) if mode != "RGB" else image


TO_PNG = {"op": "format", "format": "png"}


@needs_pyvips
@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"),
                                       ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("WEBP", "RGB"), ("WEBP", "RGBA")])
def test_downscale_matches_the_pillow_path(fmt, mode, monkeypatch):
    source = photo_like(mode="RGBA" if mode == "RGBA" else "RGB")
    if mode == "RGBA":
        source.putalpha(Image.linear_gradient("L").resize(source.size))
    elif mode != "RGB":
        source = source.convert(mode)
    data = encode(source, fmt, **({"quality": 95} if fmt != "PNG" else {}))
    fast, slow = both_paths(data, [{"op": "resize", "width": 200}, TO_PNG], monkeypatch)
    assert fast.size == slow.size == (200, 150)
    assert mean_difference(fast, slow) < 2.5


@needs_pyvips
def test_cover_crop_and_variants_go_through_the_reduce(monkeypatch):
    data = encode(photo_like((800, 400)), "PNG")
    for operations in ([{"op": "resize", "width": 100, "height": 100, "fit": "cover", "gravity": "west"}, TO_PNG],
                       [{"op": "variants", "widths": [300, 120]}]):
        fast = render(data, resolve_operations(None, operations), Limits())
        monkeypatch.setattr(vips, "ENABLED", False)
        slow = render(data, resolve_operations(None, operations), Limits())
        monkeypatch.setattr(vips, "ENABLED", True)
        for a, b in zip(fast, slow):
            assert (a.width, a.height, a.variant) == (b.width, b.height, b.variant)
            assert mean_difference(open_output(a).convert("RGB"), open_output(b).convert("RGB")) < 2.5


@needs_pyvips
def test_transparent_pixels_stay_colourless_after_the_reduce():
    """A pixel that ends fully transparent has no colour (GIF tells transparency by it)."""
    image = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 20, 30))
    reduced = vips.resize(image, (20, 15), None)
    assert reduced.getpixel((3, 7)) == (255, 0, 0, 255) and reduced.getpixel((17, 7)) == (0, 0, 0, 0)
    assert all(color == (0, 0, 0, 0) for _, color in reduced.getcolors() if color[3] == 0)


@needs_pyvips
def test_sixteen_bit_and_colour_keyed_pngs_are_left_to_pillow():
    assert vips.decode_scaled(png16(64, 48, 2, b"\xff\xff\x00\x00\x00\x00"), "png", (32, 24), "RGB") is None
    keyed = Image.new("RGB", (64, 48), (10, 20, 30))
    keyed.info["transparency"] = (10, 20, 30)
    data = encode(keyed, "PNG", transparency=(10, 20, 30))
    assert vips.decode_scaled(data, "png", (32, 24), "RGB") is None     # libvips would add alpha
    out = run(data, [{"op": "resize", "width": 32}, TO_PNG])
    assert out.size == (32, 24) and out.mode == "RGB"
    grey = run(png16(64, 48, 0, b"\x80\x00"), [{"op": "resize", "width": 32}, TO_PNG])
    assert grey.size == (32, 24) and close(grey.getpixel((5, 5)), (128,), 1)


@needs_pyvips
def test_truncated_png_is_still_reported_as_truncated():
    data = encode(photo_like((400, 300)), "PNG")
    assert vips.decode_scaled(data[: len(data) // 2], "png", (100, 75), "RGB") is None
    with pytest.raises(ImageError) as err:
        render(data[: len(data) // 2], resolve_operations(None, [{"op": "resize", "width": 100}]), Limits())
    assert err.value.code == "corrupt" and "truncated" in err.value.reason


@needs_pyvips
def test_icc_conversion_and_orientation_on_the_png_path(monkeypatch):
    exif = Image.Exif()
    exif[0x0112] = 6                          # stored turned: upright it is 300 x 400
    image = Image.new("RGB", (400, 300), (200, 0, 0))
    image.paste((0, 0, 200), (0, 0, 400, 30))  # a blue band on the stored top: the right side upright
    data = encode(image, "PNG", icc_profile=swapped_profile(), exif=exif.tobytes())
    fast, slow = both_paths(data, [{"op": "resize", "width": 150}, TO_PNG], monkeypatch)
    assert fast.size == slow.size == (150, 200)
    assert close(fast.getpixel((20, 100)), slow.getpixel((20, 100)), 2) and fast.getpixel((20, 100))[1] > 100
    assert close(fast.getpixel((145, 100)), (0, 0, 200), 12)


def test_engine_without_libvips(monkeypatch):
    monkeypatch.setattr(vips, "ENABLED", False)
    assert vips.pyvips() is None and vips.resize(photo_like(), (64, 48), None) is None
    data = encode(photo_like((800, 600)), "JPEG", quality=90)
    outputs = render(data, resolve_operations(None, [{"op": "resize", "width": 256}]), Limits())
    image = Image.open(io.BytesIO(outputs[0].data))
    assert image.size == (256, 192) and image.format == "JPEG"


def test_engine_runs_where_pyvips_cannot_be_imported():
    """A process without pyvips (import blocked) renders every format as before."""
    import subprocess
    import sys
    from pathlib import Path
    script = """
import io, sys
sys.modules["pyvips"] = None          # 'import pyvips' now raises ImportError
from PIL import Image
from imageflow.engine import Limits, render, vips
from imageflow.engine.schema import resolve_operations
assert vips.pyvips() is None
image = Image.linear_gradient("L").resize((400, 300)).convert("RGBA")
for fmt in ("JPEG", "PNG", "WEBP"):
    out = io.BytesIO()
    (image.convert("RGB") if fmt == "JPEG" else image).save(out, fmt)
    rendered = render(out.getvalue(), resolve_operations(None, [{"op": "resize", "width": 100}]), Limits())[0]
    assert (rendered.width, rendered.height) == (100, 75), rendered
print("ok")
"""
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
