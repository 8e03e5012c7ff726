"""The renderer: one decode, the pixel operations in order, then one encode per output.

Speed comes from decoding only what is needed: when the first size-changing operation
is a downscale (a resize, or the largest variant), a JPEG is decoded at the smallest N/8
scale not below the size the resize needs (libjpeg-turbo's DCT scaling) and a still PNG or
WebP straight to that size (libvips), see :func:`decoding.load`. Variants are encoded one
at a time, so memory does not grow with their number.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Mapping

from PIL import Image

from ..domain import ErrorCode
from . import documents, placeholders, privacy, report
from . import schema as ops
from .decoding import SCALABLE, Source, decode_error, load, open_source, to_working, turn
from .failures import too_large
from .encoding import DEFAULT_OUTPUT, OUTPUT_FORMATS, EncodeOptions, Rendered, encode
from .limits import ImageError, Limits, RenderBudget
from .transforms import apply, resize_target
from .variants import Variant, expand, largest_width

log = logging.getLogger(__name__)

# Inputs whose frames are an animation; a multi-page TIFF or a HEIC collection gives its
# first (primary) image.
ANIMATED_INPUTS = frozenset({"gif", "webp", "png", "avif"})

# The variant names of the small previews ``render(..., previews=N)`` appends to its outputs.
INPUT_PREVIEW, OUTPUT_PREVIEW = "preview-in", "preview-out"
PREVIEW_QUALITY = 70

# Operations that neither read nor change the pixel grid: a draft decode may run before them.
_GRID_NEUTRAL = {"grayscale", "brightness", "contrast", "saturation", "flip"}


@dataclass
class Plan:
    """Validated operations split into pixel operations and render-wide settings."""
    pixel_ops: list = field(default_factory=list)
    variants: ops.Variants | None = None
    auto_orient: bool = True
    metadata: ops.Metadata = field(default_factory=lambda: ops.Metadata(op="metadata"))
    frames: ops.Frames = field(default_factory=lambda: ops.Frames(op="frames"))
    page: int = 1                    # a PDF's page (documents.PdfImageFile)
    format: ops.Format | None = None

    @classmethod
    def from_operations(cls, operations: list[dict]) -> "Plan":
        try:
            models = ops.parse_operations(list(operations or []))
        except ops.OperationsError as exc:
            raise ImageError(ErrorCode.INVALID, exc.message) from None
        plan = cls()
        for model in models:
            if model.op == "auto_orient":
                plan.auto_orient = model.enabled
            elif model.op == "metadata":
                plan.metadata = model
            elif model.op == "frames":
                plan.frames = model
            elif model.op == "page":
                plan.page = model.number
            elif model.op == "format":
                plan.format = model
            elif model.op == "variants":
                plan.variants = model
            else:
                plan.pixel_ops.append(model)
        return plan

    def output_formats(self, input_kind: str) -> list[str]:
        base = self.format.format if self.format else DEFAULT_OUTPUT[input_kind]
        if self.variants and self.variants.formats:
            return list(self.variants.formats)
        return [base]

    def draft_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The smallest decode size (in upright pixels) the operations allow, or None
        when the first grid-changing operation needs full resolution."""
        target = self.target_size(size)
        if target is None or target[0] >= size[0] or target[1] >= size[1]:
            return None
        return target

    def target_size(self, size: tuple[int, int], vector: bool = False) -> tuple[int, int] | None:
        """The size (in decode pixels) the first grid-changing operation resizes the image to,
        or None. With ``vector`` (a drawing, which loses nothing when made larger), a resize or a
        variant wider than ``size`` counts as if ``upscale`` were on."""
        width, height = size
        target, turned = None, False
        for op in self.pixel_ops:
            if op.op in _GRID_NEUTRAL:
                continue
            if op.op == "rotate" and op.degrees % 90 == 0:
                if op.degrees % 180:
                    width, height, turned = height, width, not turned
                continue
            if op.op == "resize":
                out, region = resize_target((width, height), op.model_copy(update={"upscale": True}) if vector else op)
                if region is not None and op.gravity == "face":
                    break   # the face detector needs the faces at full size: no shrink on load
                if region is None:
                    target = out
                else:   # cover: the whole image at the scale the kept region needs
                    target = (math.ceil(width * out[0] / region[0]), math.ceil(height * out[1] / region[1]))
            break
        else:
            wanted = largest_width(self.variants)
            if wanted and (wanted < width or vector):
                target = (wanted, math.ceil(height * wanted / width))
        if target is None:
            return None
        # quarter turns before the resize: the decode happens before them
        return (target[1], target[0]) if turned else target


# TIFF tags that describe how the pixels are stored, not the picture: a TIFF's getexif()
# returns them with its EXIF, and copied into another file they would describe it wrongly.
_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 284, 317, 320, 322,
                          323, 324, 325, 338, 339, 340, 341, 513, 514, 529, 530, 531, 532})


def _exif_to_keep(source: Source, plan: Plan) -> bytes | None:
    """The input's EXIF for ``metadata strip: false`` (orientation reset once applied), its
    artist and copyright notice alone for ``keep_copyright``; notes what the output leaves out."""
    metadata = plan.metadata
    if receipt := privacy.removed(source.image, metadata.strip, metadata.keep_copyright):
        report.note("metadata_removed", receipt)  # absent: nothing identifying was in the file
    if metadata.strip:
        return privacy.copyright_exif(source.image) if metadata.keep_copyright else None
    try:
        exif = source.image.getexif()
        for tag in _LAYOUT_TAGS & set(exif):
            del exif[tag]
        # the tag says what the output pixels still need: nothing once they are upright, the
        # file's orientation when they keep the stored order (a decoder that turned them
        # itself, as Pillow does a TIFF, has already dropped it)
        pending = 1 if plan.auto_orient else source.orientation
        if pending != 1 or 0x0112 in exif:
            exif[0x0112] = pending
        return exif.tobytes() if len(exif) else None
    except Exception:               # unreadable EXIF is dropped, not fatal
        return None


def _decode_still(source: Source, plan: Plan) -> tuple[list[Image.Image], bytes | None]:
    correction = source.correction(plan.auto_orient)
    if source.kind.name in SCALABLE:    # drawn at the size the operations need, up or down
        draft = plan.target_size(source.size_after(correction), vector=True)
    else:
        draft = plan.draft_size(source.size_after(correction))
    if draft and correction in (5, 6, 7, 8):
        draft = (draft[1], draft[0])
    image = load(source, draft)
    image, icc = to_working(image, plan.metadata.icc)
    return [turn(image, correction)], icc


def _decode_animation(source: Source, plan: Plan, limits: Limits,
                      budget: RenderBudget) -> tuple[list[Image.Image], list[int], int | None]:
    count = min(source.frames, plan.frames.max or source.frames, limits.max_frames)
    width, height = source.image.size
    if count * width * height > limits.max_animation_pixels:
        raise ImageError(ErrorCode.TOO_LARGE, f"the animation has {count} frames of {width}x{height} "
                                              f"({count * width * height / 1e6:.0f} megapixels in all), over the limit of "
                                              f"{limits.max_animation_pixels / 1e6:.0f} megapixels; keep fewer frames")
    image = source.image
    loop = image.info.get("loop")
    frames, durations = [], []
    correction = source.correction(plan.auto_orient)
    canvas = image.size     # the first frame's, once decoded
    for index in range(count):
        try:
            image.seek(index)
        except EOFError:
            break
        except Exception as exc:
            raise decode_error(exc, source, limits) from None
        # a GIF's canvas grows on seek to fit a frame larger than its logical screen: checked before decoding
        budget.check([f.size for f in frames] + [image.size], f"decoding frame {index + 1}")
        frame = load(source)
        if not frames:
            canvas = frame.size
        elif frame.size != canvas:
            # a frame placed partly outside the canvas (Pillow grows the canvas to fit it): shown
            # clipped to the canvas, as browsers do; an animation's encoder wants one size for all
            frame = frame.crop((0, 0, *canvas))
        working, _ = to_working(frame, "drop" if plan.metadata.icc == "keep" else plan.metadata.icc)
        if working is frame:
            working = frame.copy()     # the next seek reuses the decoder's buffer
        frames.append(turn(working, correction))
        durations.append(int(image.info.get("duration") or 100))
    return frames, durations, loop


def _same_mode(frames: list[Image.Image]) -> list[Image.Image]:
    """Animation encoders want one mode for every frame."""
    modes = {frame.mode for frame in frames}
    if len(modes) == 1:
        return frames
    grey = modes <= {"L", "LA"}
    alpha = bool(modes & {"LA", "RGBA"})
    mode = ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")
    return [frame if frame.mode == mode else frame.convert(mode) for frame in frames]


def _rgb(image: Image.Image) -> Image.Image:
    """RGBX (the zero-copy JPEG decode) becomes RGB once the image is as small as it gets."""
    return image.convert("RGB") if image.mode == "RGBX" else image


def _apply_all(frames: list[Image.Image], plan: Plan, limits: Limits, budget: RenderBudget) -> list[Image.Image]:
    for index, op in enumerate(plan.pixel_ops):
        step = f"operations[{index}] ({op.op})"
        try:
            for n, frame in enumerate(frames):  # in place, so each input frame is released once replaced
                frames[n] = apply(frame, op, limits)
                if op.op not in _GRID_NEUTRAL:
                    frames[n] = _rgb(frames[n])
                budget.check([f.size for f in frames], step)
        except ImageError:
            raise
        except (MemoryError, Image.DecompressionBombError):
            raise ImageError(ErrorCode.TOO_LARGE, f"not enough memory for {step}") from None
        except (ValueError, OSError, TypeError) as exc:
            log.info("%s failed: %s: %s", step, type(exc).__name__, exc)
            raise ImageError(ErrorCode.INVALID, f"operations[{index}] ({op.op}) cannot be applied to this "
                                                f"{frames[0].width}x{frames[0].height} image") from None
    return _same_mode(frames)


def _preview(frame: Image.Image, size: int, limits: Limits, variant: str) -> Rendered:
    """A WebP of at most ``size`` px a side, from a frame already decoded (no second decode)."""
    scale = min(1.0, size / max(frame.size))
    target = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
    # resize() makes a new image (no copy of the frame); reducing_gap shrinks by whole factors first
    thumb = frame.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0) if scale < 1 else frame
    return encode([thumb], "webp", EncodeOptions(quality=PREVIEW_QUALITY), limits, variant=variant)


def render(data: bytes, operations: list[dict], limits: Limits,
           assets: Mapping[str, bytes] | None = None, *, previews: int = 0) -> list[Rendered]:
    """Apply validated operations (the output of ``resolve_operations``) to an image.

    Returns one :class:`Rendered` per output: variants give several, named like
    ``w320-webp``; without variants exactly one, with variant ``""``. Without a format
    operation the output keeps the input's format (BMP becomes PNG, HEIC becomes JPEG).
    EXIF orientation is applied and metadata stripped unless the operations say
    otherwise. ``assets`` holds the files operations name (an overlay's image). Each
    output carries its placeholders and the ``choices`` made (see :mod:`.report`). With
    ``previews``, two more items come last: WebP previews of at most that many pixels of the
    input (upright, before the operations) and of the first output encoded, made from the
    frames this render decoded anyway (variants ``preview-in``, ``preview-out``).
    Raises :class:`ImageError` with a clear reason on bad input."""
    with report.recording(assets) as context:
        results = _render_data(data, operations, limits, previews)
        return [replace(result, choices={**context.choices, **result.choices}) for result in results]


def _render_data(data: bytes, operations: list[dict], limits: Limits, previews: int = 0) -> list[Rendered]:
    plan = Plan.from_operations(operations)
    budget = RenderBudget(limits)
    source = open_source(data, limits)
    try:
        if isinstance(source.image, documents.PdfImageFile):
            source.image.select_page(plan.page)
        return _render_source(source, plan, limits, budget, previews)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # any Pillow size limit: the image is too large, not a glitch
        raise too_large(exc, limits) from None
    except MemoryError:
        raise ImageError(ErrorCode.TOO_LARGE, "the render needs more memory than is available") from None
    finally:
        source.image.close()


def _render_source(source: Source, plan: Plan, limits: Limits, budget: RenderBudget,
                   previews: int = 0) -> list[Rendered]:
    formats = plan.output_formats(source.kind.name)
    animate = (source.frames > 1 and source.kind.name in ANIMATED_INPUTS and plan.frames.mode == "all"
               and any(OUTPUT_FORMATS[name].animates for name in formats))
    if animate:
        frames, durations, loop = _decode_animation(source, plan, limits, budget)
        icc = None
    else:
        if source.frames > 1:
            source.image.seek(0)
        frames, icc = _decode_still(source, plan)
        durations, loop = None, None
        budget.check([f.size for f in frames], "decoding")
    exif = _exif_to_keep(source, plan)
    input_preview = _preview(frames[0], previews, limits, INPUT_PREVIEW) if previews else None
    frames = _apply_all(frames, plan, limits, budget)
    placeholder = placeholders.of(frames[0])  # from the final pixels, before variants take them over
    default = plan.format.format if plan.format else DEFAULT_OUTPUT[source.kind.name]
    if plan.variants:
        # each variant is encoded before the next is scaled, and ``frames`` is handed
        # over, so that peak memory does not grow with the number of variants
        outputs, frames = expand(frames, plan.variants, default, limits, budget), None
    else:
        outputs = iter([Variant("", frames, default)])
    fmt = plan.format or ops.Format(op="format", format=default)
    results, output_preview = [], None
    for output in outputs:
        budget.check_time(f"encoding {output.name or output.format}")
        same_format = plan.format is not None and output.format == plan.format.format
        options = EncodeOptions(
            # quality and max_bytes were chosen for the format op's format; other
            # variant formats get their own defaults
            quality=fmt.quality if same_format else None, target=fmt.target,
            progressive=fmt.progressive, lossless=fmt.lossless,
            max_bytes=fmt.max_bytes, background=fmt.background, icc_profile=icc, exif=exif)
        results.append((output.order, encode(output.frames, output.format, options, limits, durations, loop,
                                             output.name)))
        if previews and output_preview is None:  # from the first output's frames, while they are alive
            output_preview = _preview(output.frames[0], previews, limits, OUTPUT_PREVIEW)
        output = None       # the generator alone keeps the copy the next width needs
    ordered = [replace(rendered, **placeholder) for _, rendered in sorted(results, key=lambda item: item[0])]
    return ordered + [input_preview, output_preview] if previews else ordered
