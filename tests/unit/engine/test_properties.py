"""Property-based tests: any valid operations list on any image either renders outputs
that decode to what they claim, or fails with a validation error against the image,
never anything else. Example counts are modest so the suite stays fast."""
from __future__ import annotations

import io
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imageflow.engine import ImageError, Limits, jxl, render
from imageflow.engine.schema import FORMATS, GRAVITIES, OperationsError, resolve_operations

# IMAGEFLOW_HYPOTHESIS_SCALE=20 runs twenty times the examples (a longer hunt, by hand)
SCALE = int(os.environ.get("IMAGEFLOW_HYPOTHESIS_SCALE", "1"))

side = st.integers(1, 64)
gravity = st.sampled_from(GRAVITIES)
cover_gravity = st.sampled_from(GRAVITIES + ("smart", "face"))
colour = st.sampled_from(["#ffffff", "#000", "red", "transparent", "#11223380", "rgb(10,20,30)"])
factor = st.floats(0, 3, allow_nan=False)


def op(name: str, **fields) -> st.SearchStrategy:
    """An op dict with each optional field present or left to its default."""
    return st.fixed_dictionaries({"op": st.just(name)}, optional=fields)


PIXEL_OPS = st.one_of(
    st.fixed_dictionaries({"op": st.just("resize"), "width": side},
                          optional={"height": side, "fit": st.sampled_from(["contain", "cover", "fill"]),
                                    "upscale": st.booleans(), "gravity": cover_gravity}),
    st.fixed_dictionaries({"op": st.just("resize"), "height": side}),
    st.fixed_dictionaries({"op": st.just("crop"), "width": side, "height": side},
                          optional={"x": st.integers(0, 80), "y": st.integers(0, 80)}),
    st.fixed_dictionaries({"op": st.just("crop"), "aspect": st.sampled_from(["1:1", "16:9", "3:4", "2.5", "1/3"])},
                          optional={"gravity": cover_gravity}),
    st.fixed_dictionaries({"op": st.just("rotate"), "degrees": st.floats(-360, 360, allow_nan=False)},
                          optional={"background": colour, "expand": st.booleans()}),
    st.fixed_dictionaries({"op": st.just("rotate"), "degrees": st.sampled_from([90, 180, 270, -90])}),
    op("flip", direction=st.sampled_from(["horizontal", "vertical"])),
    op("grayscale"),
    op("blur", radius=st.floats(0.1, 8)),
    op("sharpen", radius=st.floats(0.1, 5), percent=st.integers(1, 500), threshold=st.integers(0, 255)),
    st.fixed_dictionaries({"op": st.sampled_from(["brightness", "contrast", "saturation"]), "factor": factor}),
    st.fixed_dictionaries({"op": st.just("pad"), "width": side},
                          optional={"height": side, "background": colour, "gravity": gravity}),
    st.fixed_dictionaries({"op": st.just("watermark"), "text": st.text(min_size=1, max_size=12)},
                          optional={"position": gravity, "opacity": st.floats(0, 1), "size": st.integers(4, 40),
                                    "color": colour, "margin": st.integers(0, 20)}),
    st.fixed_dictionaries({"op": st.just("overlay"), "image": st.just("logo.png")},
                          optional={"position": gravity, "opacity": st.floats(0, 1), "scale": st.floats(0.01, 1),
                                    "margin": st.integers(0, 20), "tile": st.booleans()}),
    op("trim", threshold=st.integers(0, 255), background=st.sampled_from(["auto", "white", "#000", "transparent"])),
)
SETTINGS_OPS = st.one_of(
    op("auto_orient", enabled=st.booleans()),
    op("metadata", strip=st.booleans(), icc=st.sampled_from(["srgb", "keep", "drop"])),
    op("frames", mode=st.sampled_from(["all", "first"]), max=st.integers(1, 5)),
    st.fixed_dictionaries({"op": st.just("format"), "format": st.sampled_from(FORMATS)},
                          optional={"quality": st.integers(1, 100), "progressive": st.booleans(),
                                    "lossless": st.booleans(), "background": colour}),
    st.fixed_dictionaries({"op": st.just("format"), "format": st.sampled_from(["jpeg", "webp", "avif", "jxl"]),
                           "quality": st.just("auto")},
                          optional={"target": st.floats(1, 100)}),
)
VARIANTS = st.fixed_dictionaries(
    {"op": st.just("variants")},
    optional={"widths": st.lists(side, min_size=1, max_size=3, unique=True),
              "formats": st.lists(st.sampled_from(FORMATS), min_size=1, max_size=2, unique=True)},
).filter(lambda item: "widths" in item or "formats" in item)

OPERATIONS = st.tuples(st.lists(st.one_of(PIXEL_OPS, SETTINGS_OPS), max_size=5),
                       st.one_of(st.none(), VARIANTS)).map(lambda pair: pair[0] + ([pair[1]] if pair[1] else []))


_logo = Image.new("RGBA", (6, 4), (255, 0, 0, 128))
_logo_bytes = io.BytesIO()
_logo.save(_logo_bytes, "PNG")
LOGO = _logo_bytes.getvalue()


@st.composite
def images(draw) -> bytes:
    """A small image in a random mode and format, sometimes animated or EXIF-rotated."""
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    fmt = draw(st.sampled_from(["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "JXL"]))
    modes = {"JPEG": ["RGB", "L", "CMYK"], "PNG": ["RGB", "RGBA", "L", "LA", "P", "I;16", "1"],
             "WEBP": ["RGB", "RGBA"], "GIF": ["P", "L", "RGB"], "TIFF": ["RGB", "RGBA", "L", "CMYK"],
             "BMP": ["RGB", "L", "P", "1"], "AVIF": ["RGB", "RGBA"], "JXL": ["RGB", "RGBA", "L"]}[fmt]
    mode = draw(st.sampled_from(modes))
    seed = draw(st.integers(0, 255))
    base = Image.radial_gradient("L").resize((width, height)).point(lambda v: (v + seed) % 256)
    image = Image.merge("RGB", (base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), base.rotate(90)))
    image = image.convert(mode) if mode != "I;16" else base.convert("I").point(lambda v: v * 200).convert("I;16")
    params = {}
    if fmt == "JPEG" and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(1, 8))
        params["exif"] = exif.tobytes()
    if fmt in ("GIF", "PNG", "WEBP") and draw(st.booleans()):
        frames = [image.rotate(i * 90) for i in range(draw(st.integers(2, 4)))]
        params.update(save_all=True, append_images=frames[1:], duration=50)
    if fmt == "JXL":
        jxl.available()         # registers the plugin that writes it
        params.update(effort=1)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=images(), operations=OPERATIONS)
def test_valid_operations_never_fail_except_by_validation(data, operations):
    resolved = resolve_operations(None, operations)
    try:
        outputs = render(data, resolved, Limits(), assets={"logo.png": LOGO})
    except ImageError as err:
        # the only acceptable failure: an operation that does not fit this image
        assert err.code == "invalid" and "outside" in err.reason, err
        return
    assert outputs and len({o.variant for o in outputs}) == len(outputs)
    assert all(o.blurhash for o in outputs)
    for output in outputs:
        image = Image.open(io.BytesIO(output.data))
        image.load()
        assert image.size == (output.width, output.height)
        assert image.format == {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF",
                                "tiff": "TIFF", "jxl": "JXL", "heic": "HEIF"}[output.format]
        assert not image.info.get("exif") or any(o.get("op") == "metadata" and o.get("strip") is False
                                               for o in operations)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3),
                           max_leaves=12)
op_like = st.fixed_dictionaries({"op": st.sampled_from(["resize", "crop", "rotate", "format", "variants", "pad",
                                                        "watermark", "nope"])},
                                optional={"width": json_values, "height": json_values, "degrees": json_values,
                                          "format": json_values, "widths": json_values, "text": json_values,
                                          "fit": json_values, "extra": json_values})


@settings(max_examples=150 * SCALE, deadline=None)
@given(operations=st.one_of(json_values, st.lists(st.one_of(op_like, json_values), max_size=4)))
def test_any_json_is_valid_or_an_operations_error(operations):
    try:
        result = resolve_operations(None, operations)
    except OperationsError as err:
        assert err.message.startswith("operations") and err.details
    else:
        assert resolve_operations(None, result) == result
