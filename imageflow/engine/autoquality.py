"""``quality: "auto"``: the lowest quality whose SSIMULACRA2 score reaches ``target``.

SSIMULACRA2 scores a decoded output against the pixels before encoding, 0-100: about 90 is
visually lossless, 70 high quality, 50 medium. The score is the pinned ``ssimulacra2``
package's (a NumPy/SciPy port of the metric libjxl ships), computed by :mod:`.metric` in
float32 with the reference's half done once (within about 0.005 of the port; tested). An
image larger than 512 x 512 is scored on the 512 x 512 window with the most detail (smart
gravity's choice: where artifacts show first); the report gives that window.

The search (:func:`search`) ends, as the bisection it replaces did, on a quality that
reaches the target whose neighbour below does not; it starts where a typical image of the
format reaches the target, predicts the next quality from that score, then interpolates:
3-5 scored encodes instead of 7. It encodes only what it scores: the window alone (for a
JPEG with a one-block margin, which decodes to the very pixels of the whole output). The
output is then encoded whole; unless it is a JPEG or the window is the whole image, its own
score is taken too, and the quality raised while it misses the target (an encoder that
tunes to the whole picture). Where even 100 misses the target, 100 is used and the report
says so. ``max_bytes`` then applies as usual: if the chosen output is too big the quality
drops until it fits, and the report says that ``max_bytes`` decided. Animations are scored
on their first frame.
"""
from __future__ import annotations

import functools
import io
import math
from typing import Callable

import numpy as np
from PIL import Image

DEFAULT_TARGET = 80.0
MIN_SIDE = 8         # the metric's first scale needs 8 x 8 pixels
SCORED_SIDE = 512    # the largest window scored (time grows with its pixels)
BLOCK = 16           # a JPEG's largest MCU (4:2:0): its blocks are encoded alone

# The score a typical picture gets at quality 1, 10, 20, ..., 100 in each format: the
# median over the inputs of `python -m bench.autoquality --calibrate` (2 photos, a graphic,
# a cut-out at 1024 px; the JPEG, WebP and AVIF rows also a small grainy gradient, measured
# the same way; HEIC, not measured, borrows AVIF's). The shape the
# search expects of an image's curve before it has scored anything, scaled to the image
# by its first score.
QUALITIES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
TYPICAL = {
    "jpeg": (-51, 4, 34, 50, 56, 61, 64, 69, 74, 80, 87),
    "webp": (26, 44, 52, 59, 63, 67, 70, 72, 75, 78, 85),
    "avif": (23, 38, 51, 60, 69, 75, 76, 79, 81, 83, 86),
    "jxl": (43, 61, 63, 73, 76, 79, 80, 83, 85, 89, 100),
}


@functools.cache
def _metric():
    # imported on first use: OpenCV is large
    from . import metric
    return metric


def _pixels(encoded: bytes, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The decoded output (its first frame) as the metric reads it, cropped to ``box``."""
    with Image.open(io.BytesIO(encoded)) as decoded:
        flat = _flat(decoded)
    return np.asarray(flat.crop(box) if box else flat)


def score(reference: Image.Image, candidate: bytes, box: tuple[int, int, int, int] | None = None) -> float:
    """SSIMULACRA2 of an encoded ``candidate`` against the pre-encode pixels ``reference``
    (flattened as :func:`_flat` does); ``box``: the window of both that is scored."""
    ref = _flat(reference)
    return _metric().Reference(np.asarray(ref.crop(box) if box else ref)).score(_pixels(candidate, box))


def _flat(image: Image.Image) -> Image.Image:
    """RGB for the metric (which reads colour only): transparency composited onto mid grey,
    so an alpha error shows, and colour hidden under transparent pixels (which encoders
    may change freely) does not."""
    if image.mode in ("RGBA", "LA", "PA", "P"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (128, 128, 128))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def score_output(image: Image.Image, candidate: bytes) -> float:
    """The score ``choose`` gives an output ``candidate`` of the pre-encode ``image``."""
    return score(image, candidate, scored_window(image))


def scored_window(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The window scored: None for the whole image, else the most detailed 512 x 512 one."""
    if image.width <= SCORED_SIDE and image.height <= SCORED_SIDE:
        return None
    from .transforms import window
    return window(image, SCORED_SIDE, SCORED_SIDE, "smart")


def _jpeg_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part of the image to encode so that a JPEG of it decodes to the same pixels in
    ``box`` as a JPEG of the whole: ``box`` out to whole 16 px blocks, plus one block for
    the chroma upsampling across the edge (libjpeg codes each block alone)."""
    left, top, right, bottom = box
    return (max(0, left // BLOCK * BLOCK - BLOCK), max(0, top // BLOCK * BLOCK - BLOCK),
            min(size[0], -(-right // BLOCK) * BLOCK + BLOCK), min(size[1], -(-bottom // BLOCK) * BLOCK + BLOCK))


def choose(attempt: Callable[[int], bytes], image: Image.Image, fmt, options, shrink,
           encode_still: Callable[[Image.Image, int], bytes] | None = None,
           animated: bool = False) -> tuple[bytes, dict]:
    """The output and the report (``quality``, ``score``, ``target``, ``quality_by``).
    ``attempt(q)`` encodes the output at quality ``q``; ``encode_still(part, q)`` one still
    image with the same settings (the search encodes only the part it scores); ``shrink``
    is the encoder's ``max_bytes`` search."""
    target = options.target if options.target is not None else DEFAULT_TARGET
    if min(image.size) < MIN_SIDE:
        # too small to score: the format's usual quality
        quality = fmt.default_quality
        data, by = attempt(quality), "too_small_to_score"
        return _fit(attempt, data, quality, fmt, options, shrink, None, {"target": target, "quality_by": by})
    box = scored_window(image)
    flat = _flat(image)
    reference = _metric().Reference(np.asarray(flat.crop(box) if box else flat))
    # What the search encodes: the window alone (a quarter of a 1024 px image's pixels), for a
    # JPEG with a margin that makes its pixels those of the whole output; an output with
    # more than the still scored (an animation) is encoded whole.
    if encode_still is None or (animated and box is None):
        part, inner, exact = None, box, True
    elif box is None:
        part, inner, exact = image, None, True
    else:
        part = _jpeg_box(box, image.size) if fmt.name == "jpeg" else box
        inner = (box[0] - part[0], box[1] - part[1], box[2] - part[0], box[3] - part[1])
        exact = fmt.name == "jpeg" and not animated
        part = image.crop(part)
    outputs: dict[int, bytes] = {}
    scores: dict[int, float] = {}

    def measure(quality: int) -> float:
        if quality not in scores:
            data = attempt(quality) if part is None else encode_still(part, quality)
            if part is None or part is image:
                outputs[quality] = data
            scores[quality] = reference.score(_pixels(data, inner))
        return scores[quality]

    best, reached = search(measure, target, TYPICAL.get(fmt.name, TYPICAL["avif"]))
    by = "target" if reached else "target_not_reached"
    data = outputs[best] if best in outputs else attempt(best)
    final = scores[best]
    if not exact:
        # the search scored the window encoded alone; the output is scored as delivered, and
        # its quality raised while it misses (an encoder that tunes to the whole picture)
        final = reference.score(_pixels(data, box))
        while reached and final < target and best < 100:
            best += 1
            data = attempt(best)
            final = reference.score(_pixels(data, box))
        if final < target:
            by = "target_not_reached"
    report = {"target": target, "quality_by": by}
    if box:
        report["scored_window"] = list(box)
    return _fit(attempt, data, best, fmt, options, shrink, (reference, box, final), report)


def search(measure: Callable[[int], float], target: float, typical) -> tuple[int, bool]:
    """The lowest quality ``q`` whose ``measure(q)`` reaches ``target`` where ``q - 1``'s does
    not (what a bisection finds, in fewer scores), and whether one reached it (if none does:
    100, False). The first quality tried is where a typical image reaches the target; its
    score scales the typical curve to this image, which predicts the next; from then on the
    two nearest scores either side of the target are interpolated (bisected when one side
    keeps moving), and the search ends on two neighbours."""
    low, high = 0, 101            # measure(low) < target <= measure(high); 0 and 101 unscored
    probe = _inverse(typical, target)
    same_side, last_side = 0, None
    while high - low > 1:
        probe = min(max(probe, low + 1), high - 1)
        passed = measure(probe) >= target
        if passed:
            high = probe
        else:
            low = probe
        same_side = same_side + 1 if passed == last_side else 0
        last_side = passed
        if high - low <= 1:
            break
        if same_side >= 2:
            probe = (low + high) // 2                  # interpolation stalls: bisect once
            same_side = 0
        elif 1 <= low and high <= 100:
            s_low, s_high = measure(low), measure(high)
            fraction = (target - s_low) / (s_high - s_low) if s_high > s_low else 0.5
            probe = math.ceil(low + fraction * (high - low) - 1e-9)
        else:
            probe = _predicted(typical, probe, measure(probe), target)
    if high > 100:
        return 100, False
    return high, True


def _curve(typical, quality: float) -> float:
    """The typical score at ``quality`` (linear between the tabled ones)."""
    return float(np.interp(quality, QUALITIES, typical))


def _inverse(typical, score: float) -> int:
    """The lowest quality where the typical curve reaches ``score`` (1 below it, 100 above)."""
    return min(100, max(1, math.ceil(float(np.interp(score, typical, QUALITIES)) - 1e-9)))


def _predicted(typical, quality: int, scored: float, target: float) -> int:
    """Where this image reaches ``target``, if its distance from a perfect score is the
    typical one's times what it was at ``quality``."""
    expected = 100.0 - _curve(typical, quality)
    if expected <= 0 or scored >= 100:
        return quality - 1 if scored >= target else quality + 1
    factor = max((100.0 - scored) / expected, 1e-3)
    return _inverse(typical, 100.0 - (100.0 - target) / factor)


def _fit(attempt, data: bytes, quality: int, fmt, options, shrink, scored, report: dict) -> tuple[bytes, dict]:
    """Apply ``max_bytes`` after the choice: the smaller of the two wins."""
    if options.max_bytes and len(data) > options.max_bytes:
        tried: dict[int, int] = {}

        def remembering(q: int) -> bytes:
            candidate = attempt(q)
            tried[id(candidate)] = q
            return candidate

        data = shrink(remembering, data, quality, fmt, options)
        quality = tried[id(data)]
        report["quality_by"] = "max_bytes"
        if scored is not None:
            scored = (scored[0], scored[1], scored[0].score(_pixels(data, scored[1])))
    report["quality"] = quality
    report["score"] = round(scored[2], 2) if scored is not None else None
    return data, report
