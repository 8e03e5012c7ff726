"""The libvips path (Lanczos reduce, PNG/WebP decoded straight to size) gives the picture
the Pillow path gives, declines what it must leave to Pillow, and the engine works the
same without it."""
from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

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
def test_sixteen_bit_grey_and_colour_keyed_pngs_are_left_to_pillow():
    assert vips.decode_scaled(png16(64, 48, 0, b"\x80\x00"), "png", (32, 24), "I;16") is None
    assert vips.decode_scaled(png16(64, 48, 4, b"\x80\x00\xff\xff"), "png", (32, 24), "RGBA") is None
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


# -- alpha: transparent cut-outs (what shops send), in every form a PNG carries alpha ------

PRODUCT = (250, 200, 40)       # a light product, so a dark fringe at its edge shows


def cut_out(size=(720, 480)) -> Image.Image:
    """A light product with an anti-aliased edge on a transparent background whose hidden
    colour is black (as most tools store it): resampled without premultiplying, the black
    bleeds into the edge and a dark fringe appears once flattened onto white."""
    mask = Image.new("L", (size[0] * 4, size[1] * 4), 0)
    width, height = mask.size
    ImageDraw.Draw(mask).ellipse((width // 6, height // 6, width * 5 // 6, height * 5 // 6), fill=255)
    mask = mask.resize(size, Image.Resampling.BOX)           # 4x4 supersampled: a 1-2 px soft edge
    product = Image.blend(Image.new("RGB", size, PRODUCT), gradient(size), 0.15)
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste(product, mask=mask)
    return image


def png16_rgba(image: Image.Image) -> bytes:
    """``image`` as a 16-bit RGBA PNG whose high bytes are its 8-bit samples."""
    import struct
    import zlib
    width, height = image.size
    rows = image.tobytes()
    raw = b"".join(b"\0" + b"".join(bytes((v, v)) for v in rows[y * width * 4:(y + 1) * width * 4])
                   for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def alpha_inputs(size=(720, 480)) -> dict[str, tuple[bytes, Image.Image]]:
    """Each alpha form of the cut-out as PNG bytes, with the picture Pillow decodes from them."""
    image = cut_out(size)
    grey = image.convert("LA")
    palette = image.quantize(64)             # mode P, its transparency a tRNS chunk
    forms = {"rgba": encode(image, "PNG"), "la": encode(grey, "PNG"), "palette": encode(palette, "PNG"),
             "rgba16": png16_rgba(image)}
    decoded = {}
    for name, data in forms.items():
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            assert name != "palette" or (opened.mode == "P" and "transparency" in opened.info)
            decoded[name] = (data, opened.convert("LA" if opened.mode == "LA" else "RGBA"))
    return decoded


def on_white(image: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", image.size, (255, 255, 255))
    canvas.paste(image.convert("RGB"), mask=image.getchannel("A"))
    return canvas


FORMS = ["rgba", "la", "palette", "rgba16"]


@needs_pyvips
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("width", [180, 80])             # a reduce alone; a box shrink by 3 first
def test_cut_out_flattened_to_jpeg_has_no_dark_fringe(form, width):
    """Resized and flattened onto white as a JPEG, the cut-out looks like Pillow's
    premultiplied resize of the same picture composited onto white: along the edge (where
    the resized alpha is partial) no darker on average (ours: within 1.3 levels). Resampling
    the colours without premultiplying pulls the hidden black into the edge: 25-28 darker."""
    data, picture = alpha_inputs()[form]
    height = width * 2 // 3
    out = run(data, [{"op": "resize", "width": width}, {"op": "format", "format": "jpeg", "quality": 95}])
    assert out.size == (width, height) and out.format == "JPEG"
    resized = picture.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    reference = on_white(resized).convert("L")
    seen = out.convert("L")
    edge = resized.getchannel("A").point(lambda a: 255 if 16 <= a <= 239 else 0)
    assert ImageStat.Stat(edge).sum[0] / 255 > width                  # the edge is there
    darker = ImageChops.subtract(reference, seen, offset=128)   # 128 + how much darker ours is
    assert ImageStat.Stat(darker, mask=edge).mean[0] - 128 < 4
    assert ImageStat.Stat(ImageChops.difference(reference, seen)).mean[0] < 1.5


@needs_pyvips
def test_flattening_uses_the_background_colour():
    data, _ = alpha_inputs()["rgba"]
    out = run(data, [{"op": "resize", "width": 180}, {"op": "format", "format": "jpeg", "background": "#3050c0"}])
    assert out.size == (180, 120) and close(out.getpixel((2, 2)), (0x30, 0x50, 0xc0), 6)
    assert close(out.getpixel((90, 60)), PRODUCT, 40)


@needs_pyvips
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_alpha_is_kept_for_png_and_webp_output(form, fmt):
    data, picture = alpha_inputs()[form]
    params = {"lossless": True} if fmt == "webp" else {}
    out = run(data, [{"op": "resize", "width": 180}, {"op": "format", "format": fmt, **params}])
    assert out.size == (180, 120) and out.mode in ("LA", "RGBA")
    alpha = out.getchannel("A")
    reference = picture.resize((180, 120), Image.Resampling.LANCZOS, reducing_gap=3.0)
    assert alpha.getpixel((2, 2)) == 0 and alpha.getpixel((90, 60)) >= 250     # the palette's alpha is quantised
    assert ImageStat.Stat(ImageChops.difference(alpha, reference.getchannel("A"))).mean[0] < 0.5
    assert mean_difference(out, reference if out.mode == reference.mode else reference.convert(out.mode)) < 1.5


@needs_pyvips
@pytest.mark.parametrize("form", FORMS)
def test_alpha_is_resampled_as_8_bit_pixels(form, monkeypatch):
    """The resample gets premultiplied 8-bit pixels, as an opaque image's: premultiplying
    makes floats, and resampling the full-resolution floats cost 3-4x the opaque path."""
    pyvips = vips.pyvips()
    seen = []

    def recording(name):
        def operation(image, *args, **kwargs):
            seen.append((name, image.format, image.bands, image.width))
            return pyvips.Operation.call(name, image, *args, **kwargs)
        return operation
    for name in ("shrink", "reduce"):       # pyvips makes its methods on the fly: a class attribute wins
        monkeypatch.setattr(pyvips.Image, name, recording(name), raising=False)
    data, _ = alpha_inputs()[form]
    out = run(data, [{"op": "resize", "width": 180}, TO_PNG])
    assert out.size == (180, 120)
    bands = 2 if form == "la" else 4
    assert seen == [("reduce", "uchar", bands, 720)]
    seen.clear()
    assert run(data, [{"op": "resize", "width": 80}, TO_PNG]).size == (80, 53)       # a box shrink by 3 first
    assert seen == [("shrink", "uchar", bands, 720), ("reduce", "uchar", bands, 240)]


@needs_pyvips
def test_sixteen_bit_rgb_png_is_decoded_to_size_as_pillow_reads_it(monkeypatch):
    """A 16-bit RGB(A) PNG streams through libvips to the size needed, each sample's high
    byte as Pillow keeps it; the picture is the Pillow path's."""
    data = png16(64, 48, 2, b"\xff\xff\x80\x7f\x00\x00")
    scaled = vips.decode_scaled(data, "png", (32, 24), "RGB")
    assert scaled.mode == "RGB" and scaled.size == (32, 24) and scaled.getpixel((5, 5)) == (255, 128, 0)
    _, picture = alpha_inputs((120, 80))["rgba16"]
    fast, slow = both_paths(png16_rgba(picture), [{"op": "resize", "width": 60}, TO_PNG], monkeypatch)
    assert fast.size == slow.size == (60, 40) and fast.mode == slow.mode == "RGBA"
    assert mean_difference(fast, slow) < 1.0
