"""Encoding: per-format defaults, alpha flattening, animation, ``max_bytes``.

Metadata never leaks from the input: the encoder is handed only what the renderer
decided to keep (an ICC profile, EXIF), never the decoded image's ``info``.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

from PIL import Image, ImageColor

from ..domain import ErrorCode
from . import autoquality, extra_formats
from .limits import ImageError, Limits


@dataclass(frozen=True)
class OutputFormat:
    name: str
    pillow: str
    mime: str
    ext: str
    alpha: bool          # can store transparency
    animates: bool       # can store several frames as an animation
    lossy: bool          # has a quality knob (what max_bytes turns)
    default_quality: int | None


OUTPUT_FORMATS = {fmt.name: fmt for fmt in (
    OutputFormat("jpeg", "JPEG", "image/jpeg", "jpg", False, False, True, 85),
    OutputFormat("png", "PNG", "image/png", "png", True, True, False, None),
    OutputFormat("webp", "WEBP", "image/webp", "webp", True, True, True, 80),
    OutputFormat("avif", "AVIF", "image/avif", "avif", True, True, True, 60),
    OutputFormat("gif", "GIF", "image/gif", "gif", True, True, False, None),
    OutputFormat("tiff", "TIFF", "image/tiff", "tiff", True, False, False, None),
    OutputFormat("jxl", "JXL", "image/jxl", "jxl", True, False, True, 80),
    OutputFormat("heic", "HEIF", "image/heic", "heic", True, False, True, 50),
)}

# Without a format op the output keeps the input's format; BMP (uncompressed, no use on
# the web) becomes PNG, which is lossless too; HEIC, JPEG XL and JPEG 2000 (which most
# browsers do not show, and are mostly photographs) become JPEG (what every viewer reads);
# the other formats browsers do not show (graphics, icons, textures, designs) become PNG,
# which keeps their alpha and every pixel.
DEFAULT_OUTPUT = {"jpeg": "jpeg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif",
                  "tiff": "tiff", "bmp": "png", "heic": "jpeg", "jxl": "jpeg", "jpeg2000": "jpeg",
                  "tga": "png", "ico": "png", "pnm": "png", "sgi": "png", "dds": "png", "psd": "png",
                  "svg": "png", "pdf": "png", "raw": "jpeg"}

log = logging.getLogger(__name__)

# The largest side each format can store (the others store more than the pixel limit allows).
MAX_SIDE = {"jpeg": 65_500, "webp": 16_383, "gif": 65_535}

# libavif speed 0-10. Measured on a 1024 px photo: 8 encodes in half the time of 7 and a
# third of 6 for files about 13% larger; 9 is faster still but 50% larger, no better than WebP.
AVIF_SPEED = 8


@dataclass(frozen=True)
class Rendered:
    """One output: encoded bytes and what they are."""
    data: bytes
    format: str
    content_type: str
    ext: str
    width: int
    height: int
    variant: str = ""
    blurhash: str | None = None          # placeholders (see placeholders.py)
    dominant_color: str | None = None
    choices: dict = field(default_factory=dict)   # what the render chose (see report.py)


@dataclass(frozen=True)
class EncodeOptions:
    quality: int | str | None = None      # 1-100, or "auto" (see autoquality.py)
    target: float | None = None           # the SSIMULACRA2 score "auto" aims for
    progressive: bool = False
    lossless: bool = False
    max_bytes: int | None = None
    background: str = "#ffffff"
    icc_profile: bytes | None = None
    exif: bytes | None = None


def flatten(image: Image.Image, background: str) -> Image.Image:
    """Composite an image with alpha onto an opaque background colour."""
    if image.mode not in ("LA", "RGBA"):
        return image
    mode = image.mode[:-1]
    canvas = Image.new(mode, image.size, ImageColor.getcolor(background, mode) if mode == "L"
                       else ImageColor.getrgb(background)[:3])
    canvas.paste(image.convert(mode), mask=image.getchannel("A"))
    return canvas


def prepare(image: Image.Image, fmt: OutputFormat, background: str) -> Image.Image:
    """The image in a mode the format can store, detached from the decoder's metadata."""
    if image.mode == "RGBX":
        image = image.convert("RGB")
    if not fmt.alpha:
        image = flatten(image, background)
    if fmt.name in ("webp", "avif") and image.mode in ("L", "LA"):
        image = image.convert("RGB" if image.mode == "L" else "RGBA")
    if hasattr(image, "tag_v2"):
        # still the TIFF decoder's own object (no op changed it): the TIFF writer would
        # copy XMP, IPTC and Photoshop tags from it, so hand it a plain image
        image = image.copy()
    image.info = {}
    return image


def _save_args(fmt: OutputFormat, options: EncodeOptions, quality: int | None) -> dict:
    args: dict = {}
    if options.icc_profile and fmt.name != "gif":
        args["icc_profile"] = options.icc_profile
    if options.exif and fmt.name != "gif":
        args["exif"] = options.exif
    if fmt.name == "jpeg":
        args.update(quality=quality, optimize=True, progressive=options.progressive)
    elif fmt.name == "png":
        args.update(compress_level=6)
    elif fmt.name == "webp":
        args.update(quality=quality, method=4, lossless=options.lossless)
    elif fmt.name == "avif":
        # lossless AVIF: full quality and no chroma subsampling
        args.update(quality=100 if options.lossless else quality, speed=AVIF_SPEED, max_threads=1,
                    subsampling="4:4:4" if options.lossless else "4:2:0")
    elif fmt.name == "tiff":
        args.update(compression="tiff_adobe_deflate")
    else:
        args.update(extra_formats.save_args(fmt.name, quality, options.lossless))
    return args


def _encode_once(frames: list[Image.Image], durations: list[int], loop: int | None, fmt: OutputFormat,
                 args: dict) -> bytes:
    buffer = io.BytesIO()
    first = frames[0]
    if len(frames) > 1:
        extra = {"save_all": True, "append_images": frames[1:], "duration": durations}
        if loop is not None or fmt.name != "gif":
            extra["loop"] = loop or 0      # a GIF without a loop count plays once: keep that
        if fmt.name == "gif" and first.mode in ("RGBA", "LA"):
            extra["disposal"] = 2      # whole frames with transparency: clear before each
        first.save(buffer, fmt.pillow, **args, **extra)
    else:
        first.save(buffer, fmt.pillow, **args)
    return buffer.getvalue()


def encode(frames: list[Image.Image], fmt_name: str, options: EncodeOptions, limits: Limits,
           durations: list[int] | None = None, loop: int | None = None, variant: str = "") -> Rendered:
    """Encode one output (several frames animate when the format can). With ``max_bytes``,
    lower the quality (binary search) until the output fits. Raises ImageError."""
    fmt = OUTPUT_FORMATS[fmt_name]
    extra_formats.register(fmt.name)
    if not fmt.animates:
        frames = frames[:1]
    frames = [prepare(frame, fmt, options.background) for frame in frames]
    durations = (durations or [100] * len(frames))[:len(frames)]
    quality = options.quality or fmt.default_quality
    width, height = frames[0].size
    if max(width, height) > MAX_SIDE.get(fmt.name, width + height):
        raise ImageError(ErrorCode.OUTPUT_TOO_LARGE, f"the output would be {width}x{height}, and a "
                                                     f"{fmt_name.upper()} image can be at most "
                                                     f"{MAX_SIDE[fmt.name]} pixels a side")

    def attempt(q: int | None, still: Image.Image | None = None) -> bytes:
        try:
            if still is not None:       # one still image with the same settings (auto's search)
                return _encode_once([still], [100], None, fmt, _save_args(fmt, options, q))
            return _encode_once(frames, durations, loop, fmt, _save_args(fmt, options, q))
        except (OSError, ValueError, MemoryError, RuntimeError) as exc:   # RuntimeError: libjxl's
            log.warning("the %s encoder failed on a %dx%d image: %s: %s", fmt_name, width, height,
                        type(exc).__name__, exc)
            raise ImageError(ErrorCode.INVALID,
                             f"a {width}x{height} image could not be encoded as {fmt_name.upper()}") from None

    choices: dict = {}
    if options.quality == "auto":
        data, choices = autoquality.choose(attempt, frames[0], fmt, options, _shrink,
                                           encode_still=lambda still, q: attempt(q, still),
                                           animated=len(frames) > 1)
    else:
        data = attempt(quality)
        if options.max_bytes and len(data) > options.max_bytes:
            data = _shrink(attempt, data, quality, fmt, options)
    if len(data) > limits.max_output_bytes:
        raise ImageError(ErrorCode.OUTPUT_TOO_LARGE, f"the {fmt_name.upper()} output is {len(data)} bytes, over the "
                                                     f"limit of {limits.max_output_bytes} bytes")
    return Rendered(data, fmt.name, fmt.mime, fmt.ext, width, height, variant, choices=choices)


def _shrink(attempt, data: bytes, quality: int | None, fmt: OutputFormat, options: EncodeOptions) -> bytes:
    """The highest quality whose output fits ``max_bytes`` (binary search, ~7 encodes)."""
    limit = options.max_bytes
    if not fmt.lossy or options.lossless:
        kind = "a lossless" if fmt.lossy else f"a {fmt.name.upper()}"
        raise ImageError(ErrorCode.OUTPUT_TOO_LARGE, f"the {fmt.name.upper()} output is {len(data)} bytes, over max_bytes "
                                                     f"{limit}, and {kind} output has no quality to lower; max_bytes "
                                                     f"lowers the quality of JPEG, WebP, AVIF, JPEG XL and HEIC only")
    low, high, best, smallest = 1, quality - 1, None, data
    while low <= high:
        middle = (low + high) // 2
        candidate = attempt(middle)
        if len(candidate) <= limit:
            best, low = candidate, middle + 1
        else:
            high, smallest = middle - 1, candidate
    if best is None:
        raise ImageError(ErrorCode.OUTPUT_TOO_LARGE, f"even at quality 1 the {fmt.name.upper()} output is "
                                                     f"{len(smallest)} bytes, over max_bytes {limit}: resize it smaller")
    return best
