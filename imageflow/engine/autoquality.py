"""``quality: "auto"``: the lowest quality whose SSIMULACRA2 score reaches ``target``.

SSIMULACRA2 (the ``ssimulacra2`` package, a NumPy/SciPy port of the metric libjxl ships)
scores a decoded output against the pixels before encoding, 0-100: about 90 is visually
lossless, 70 high quality, 50 medium. The search is a binary search over quality 1-100,
so at most 7 encode + decode + score rounds (each memoised); where even 100 misses the
target, 100 is used and the report says so. The port holds a dozen float64 copies of
what it scores (about 530 MB for one megapixel), so an image larger than 512 x 512 is
scored on the 512 x 512 window with the most detail (smart gravity's choice: where
artifacts show first), about 140 MB and 0.15 s a round; the report gives that window. ``max_bytes`` then applies as usual: if the
chosen output is too big the quality drops until it fits, and the report says that
``max_bytes`` decided. Animations are scored on their first frame.
"""
from __future__ import annotations

import functools
import io
from typing import Callable

from PIL import Image

DEFAULT_TARGET = 80.0
MIN_SIDE = 8         # the metric's first scale needs 8 x 8 pixels
SCORED_SIDE = 512    # the largest window scored (memory and time grow with its pixels)


@functools.cache
def _metric():
    # imported on first use: it brings SciPy into the process
    from ssimulacra2 import compute_ssimulacra2
    return compute_ssimulacra2


def score(reference: bytes, candidate: bytes, box: tuple[int, int, int, int] | None = None) -> float:
    """SSIMULACRA2 of an encoded ``candidate`` against ``reference`` (see :func:`reference`);
    ``box``: the window of the candidate the reference is."""
    with Image.open(io.BytesIO(candidate)) as decoded:
        pixels = _flat(decoded)
    return float(_metric()(io.BytesIO(reference), io.BytesIO(_png(pixels.crop(box) if box else pixels))))


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


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def reference(image: Image.Image, box: tuple[int, int, int, int] | None) -> bytes:
    """The pixels before encoding, as the metric compares them (PNG bytes)."""
    flat = _flat(image)
    return _png(flat.crop(box) if box else flat)


def score_output(image: Image.Image, candidate: bytes) -> float:
    """The score ``choose`` gives an output ``candidate`` of the pre-encode ``image``."""
    box = scored_window(image)
    return score(reference(image, box), candidate, box)


def scored_window(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The window scored: None for the whole image, else the most detailed 512 x 512 one."""
    if image.width <= SCORED_SIDE and image.height <= SCORED_SIDE:
        return None
    from .transforms import window
    return window(image, SCORED_SIDE, SCORED_SIDE, "smart")


def choose(attempt: Callable[[int], bytes], image: Image.Image, fmt, options, shrink) -> tuple[bytes, dict]:
    """The output and the report (``quality``, ``score``, ``target``, ``quality_by``).
    ``attempt(q)`` encodes at quality ``q``; ``shrink`` is the encoder's ``max_bytes`` search."""
    target = options.target if options.target is not None else DEFAULT_TARGET
    if min(image.size) < MIN_SIDE:
        # too small to score: the format's usual quality
        quality = fmt.default_quality
        data, by = attempt(quality), "too_small_to_score"
        return _fit(attempt, data, quality, fmt, options, shrink, None, {"target": target, "quality_by": by})
    box = scored_window(image)
    original = reference(image, box)
    encoded: dict[int, bytes] = {}
    scores: dict[int, float] = {}

    def measure(quality: int) -> float:
        if quality not in scores:
            encoded[quality] = attempt(quality)
            scores[quality] = score(original, encoded[quality], box)
        return scores[quality]

    low, high, best = 1, 100, None
    while low <= high:
        middle = (low + high) // 2
        if measure(middle) >= target:
            best, high = middle, middle - 1
        else:
            low = middle + 1
    by = "target"
    if best is None:
        best, by = 100, "target_not_reached"
        measure(100)
    report = {"target": target, "quality_by": by}
    if box:
        report["scored_window"] = list(box)
    return _fit(attempt, encoded[best], best, fmt, options, shrink, (original, box, scores[best]), report)


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
            scored = (scored[0], scored[1], score(scored[0], data, scored[1]))
    report["quality"] = quality
    report["score"] = round(scored[2], 2) if scored is not None else None
    return data, report
