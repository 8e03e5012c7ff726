"""An estimate's sample renders (services/image_handler/estimate.py): one image measured at
reduced scale, at a small and fixed cost whatever its size and operations.

- Decoding: never the full image when the sample needs less. A JPEG is decoded scaled by
  N/8 (decoding.load), a still PNG or WebP straight to the sample's size, streaming
  (vips.decode_scaled), other formats through libvips' thumbnail (shrink-on-load or a
  sequential decode); only an image of at most ``FULL_DECODE_PIXELS`` may be decoded whole.
  The full-resolution centre crop is decoded sequentially, keeping only the crop's rows.
- Rendering: never variants x formats x auto quality. The geometry (output pixels, at two
  scales) is rendered with every width but one format at a fixed quality; the bytes per
  pixel with the largest width only, in every format, with the real quality settings (an
  ``auto`` quality is searched once per format). The other widths' bytes and time are
  extrapolated by their pixels, and the sample says so.

:func:`measure` is what an estimate's render worker (imageflow.render_pool) runs.
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

from PIL import Image

from ..domain import ErrorCode
from . import vips
from .decoding import _working_mode, load, open_source, turn
from .limits import ImageError, Limits
from .render import render

SAMPLE_PIXELS = 1_000_000
MIN_SAMPLE_SIDE = 16
FULL_DECODE_PIXELS = 4 * SAMPLE_PIXELS   # past this, only a scaled (or streaming) decode
_SAVE = {"jpeg": ("JPEG", {"quality": 92}), "png": ("PNG", {}), "webp": ("WEBP", {"quality": 92}),
         "gif": ("GIF", {}), "tiff": ("TIFF", {}), "bmp": ("BMP", {})}


@dataclass(frozen=True)
class Sample:
    """What a render worker is sent with the image's bytes (picklable): its name, the header's
    facts (upright size) and the job's validated operations and overlay files."""
    filename: str
    format: str
    width: int
    height: int
    operations: list
    assets: dict | None = None

    def __str__(self) -> str:
        return f"the estimate sample {self.filename!r}"


@dataclass
class Model:
    """The sample's model (see services/image_handler/estimate.py): output pixels = a * pixels ^ e
    over every output, bytes per output pixel, CPU seconds per input pixel; ``extrapolated``
    says what was predicted rather than rendered (None: every output was rendered)."""
    pixels: int
    a: float
    e: float
    bytes_per_pixel: float
    cpu_per_pixel: float
    outputs: int = 1
    rendered_outputs: int = 1
    extrapolated: str | None = None

    def output_pixels(self, pixels: int) -> float:
        return self.a * pixels ** self.e


# Formats libvips' thumbnail may sample when they are too large to decode whole: raster formats
# only (never SVG or PDF, whose loaders this project sandboxes itself, nor camera RAW).
VIPS_THUMBNAIL_KINDS = frozenset({"tiff", "heic", "avif", "gif", "bmp", "jxl", "jpeg2000"})


def _side(value: float) -> int:
    return max(MIN_SAMPLE_SIDE, round(value))


def decode_scaled(data: bytes, limits: Limits, size: tuple[int, int]) -> Image.Image:
    """The image reduced to ``size`` (upright), decoding no more than that needs (see the module
    docstring). Raises ImageError, also for an image too large to decode whole that no scaled
    decoder takes."""
    source = open_source(data, limits)

    def stored(orientation: int) -> tuple[int, int]:  # ``size`` in the pixels as they come out of the decoder
        return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size

    try:
        correction = source.correction()   # what the engine's own decode leaves to turn
        width, height = source.image.size
        name = source.kind.name
        image = None
        turn_by = correction
        if name == "jpeg":
            image = load(source, stored(correction))   # N/8 while decoding (never below the sample)
        elif name in ("png", "webp") and source.frames == 1:
            image = vips.decode_scaled(data, name, stored(correction), _working_mode(source.image))
        if image is None and width * height > FULL_DECODE_PIXELS:
            if name in VIPS_THUMBNAIL_KINDS:
                # libvips leaves the stored pixels (no_rotate), except libheif's, which it turns itself
                turn_by = 1 if name in ("heic", "avif") else source.orientation
                image = vips.thumbnail(data, stored(turn_by))
            if image is None:
                raise ImageError(ErrorCode.TOO_LARGE, f"a {width}x{height} {name.upper()} image has no scaled decode here: "
                                                      "it is predicted from the other samples")
        if image is None:
            image = load(source)
        if image.size != stored(turn_by):
            image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB") \
                if image.mode not in ("L", "LA", "RGB", "RGBA") else image
            image = image.resize(stored(turn_by), Image.Resampling.LANCZOS)
        return turn(image, turn_by)
    finally:
        source.image.close()


def decode_crop(data: bytes, limits: Limits, size: tuple[int, int]) -> Image.Image:
    """The centre of the image at full resolution, ``size`` large (in the stored orientation: for
    bytes per pixel it does not matter), holding only the crop's rows. Raises ImageError."""
    source = open_source(data, limits)
    try:
        width, height = source.image.size
        turned = source.correction() in (5, 6, 7, 8)
        cw, ch = (size[1], size[0]) if turned else size
        cw, ch = min(cw, width), min(ch, height)
        box = ((width - cw) // 2, (height - ch) // 2, cw, ch)
        image = vips.crop(data, box) if source.frames == 1 else None
        if image is None:
            if width * height > FULL_DECODE_PIXELS:
                raise ImageError(ErrorCode.TOO_LARGE, "no sequential decode for the crop")
            image = load(source).crop((box[0], box[1], box[0] + cw, box[1] + ch))
        return image
    finally:
        source.image.close()


def _encoded(image: Image.Image, fmt: str) -> bytes:
    """The sample in its own format (so that an output that keeps the input's format keeps it)."""
    name, options = _SAVE.get(fmt, ("PNG", {}))
    if name == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif image.mode not in ("L", "LA", "RGB", "RGBA", "P"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    out = io.BytesIO()
    image.save(out, name, **options)
    return out.getvalue()


def _plans(operations: list[dict]) -> tuple[list[dict], list[dict], int, int, str | None]:
    """(geometry operations, bytes operations, outputs, outputs the bytes render makes, what is
    extrapolated). Geometry: every width, the first format only, a fixed quality (no ``auto``
    search, no ``max_bytes`` loop): the outputs' pixels do not depend on the encoding. Bytes:
    the largest width only, every format, the real quality settings."""
    geometry, measured = [], []
    widths, formats = 0, 1
    auto = False
    for op in operations:
        if op.get("op") == "variants":
            widths, formats = len(op.get("widths") or []), max(1, len(op.get("formats") or []))
            geometry.append({**op, "formats": list(op.get("formats") or [])[:1]})
            measured.append({**op, "widths": sorted(op.get("widths") or [])[-1:]})
        elif op.get("op") == "format":
            auto = auto or op.get("quality") == "auto"
            cheap = {k: v for k, v in op.items() if k not in ("target", "max_bytes")}
            if cheap.get("quality") == "auto":
                cheap["quality"] = None
            geometry.append(cheap)
            measured.append(op)
        else:
            geometry.append(op)
            measured.append(op)
    outputs = max(1, widths) * formats
    rendered = formats
    notes = []
    if widths > 1:
        notes.append(f"{outputs} outputs ({widths} widths x {formats} formats): bytes and time measured on the "
                     f"largest width in each format, the other widths extrapolated by their pixels")
    if auto:
        notes.append("quality 'auto' searched once per format, on the sample")
    return geometry, measured, outputs, rendered, "; ".join(notes) or None


def _run(data: bytes, operations: list[dict], limits: Limits, assets) -> tuple[int, int, float, int]:
    """(input pixels, output pixels, CPU seconds, output bytes) of one render (every output counted).
    Process CPU time: it counts libvips' threads as well."""
    with Image.open(io.BytesIO(data)) as im:
        pixels = im.width * im.height
    started = time.process_time()
    outputs = render(data, operations, limits, assets)
    cpu = time.process_time() - started
    return pixels, sum(o.width * o.height for o in outputs), cpu, sum(len(o.data) for o in outputs)


def measure(sample: Sample, data: bytes, limits: Limits) -> Model:
    """The sample's model, from at most three renders: the geometry at the sample's scale and at
    half its side (the exponent), and one render of the real encodings (on a full-resolution
    centre crop where the output follows the input's size, since a downscale compresses better
    than the original). Raises ImageError when the sample cannot be decoded or rendered."""
    pixels = sample.width * sample.height
    scale = min(1.0, math.sqrt(SAMPLE_PIXELS / pixels))
    size = (_side(sample.width * scale), _side(sample.height * scale))
    geometry, measured, outputs, rendered, extrapolated = _plans(sample.operations)
    first = _encoded(decode_scaled(data, limits, size), sample.format) if scale < 1 else data
    p1, o1, cpu1, bytes1 = _run(first, geometry, limits, sample.assets)
    e = 1.0
    half = (_side(sample.width * scale / 2), _side(sample.height * scale / 2))
    second = None
    if min(sample.width, sample.height) * scale / 2 >= MIN_SAMPLE_SIDE:
        second = _encoded(decode_scaled(data, limits, half), sample.format)
        p2, o2, _, _ = _run(second, geometry, limits, sample.assets)
        if o1 > 0 and o2 > 0 and p1 > p2:
            e = min(1.0, max(0.0, math.log(o1 / o2) / math.log(p1 / p2)))
    formats = rendered  # the formats each width is encoded in
    same = measured == geometry   # nothing to extrapolate: the geometry render was the real one
    # The real encodings (every format, an auto quality's search) on a quarter of the sample's
    # pixels when they differ from the geometry render: their bytes and time go by pixels.
    small = not same and second is not None
    crop = None
    # As far as the output follows the input's size (e), a crop's bytes per pixel, blended with the
    # downscale's (a downscale compresses better than the original).
    if scale < 1 and e >= 0.5:
        try:
            crop = _encoded(decode_crop(data, limits, half if small else size), sample.format)
        except ImageError:   # a format without a sequential decode: keep the downscale
            crop = None
    first_measured = second if small else first
    ob, cpu_b, bytes_b = o1, cpu1, bytes1
    if crop is not None or not same:
        try:
            _, ob, cpu_b, bytes_b = _run(crop or first_measured, measured, limits, sample.assets)
        except ImageError:
            if not same:   # operations that need the whole frame (a crop box): the downscale's figure
                _, ob, cpu_b, bytes_b = _run(first_measured, measured, limits, sample.assets)
    bytes_per_pixel = bytes_b / max(1, ob)
    if crop is not None and e < 1:   # from the crop to the downscale, as far as the output follows the input
        if same:
            down = bytes1 / max(1, o1)
        else:   # the real encodings of the downscale too (on a quarter of the sample as well)
            _, od, cpu_d, bytes_d = _run(first_measured, measured, limits, sample.assets)
            down = bytes_d / max(1, od)
        bytes_per_pixel = bytes_per_pixel ** e * down ** (1 - e)
    if same:
        cpu = cpu1
    else:
        # every output's encodings cost as the measured ones, by their pixels (o1 counts every
        # width in one format at the sample's scale, ob the largest width in every format)
        cpu = cpu1 + cpu_b * (o1 * formats / max(1, ob))
    return Model(pixels=pixels, a=o1 * formats / p1 ** e, e=e, bytes_per_pixel=bytes_per_pixel,
                 cpu_per_pixel=cpu / max(1, p1), outputs=outputs, rendered_outputs=rendered,
                 extrapolated=extrapolated)
