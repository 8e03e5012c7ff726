"""libvips (the pyvips and pyvips-binary wheels) where it is the faster tool: the Lanczos
reduce, and decoding PNG and WebP straight to the size the resize needs.

The engine's images stay Pillow images: libvips takes pixels in and hands pixels back,
so every operation, format, metadata and colour rule stays where it was. Each function
returns None when libvips is missing or declines, and the caller does what it did before.
"""
from __future__ import annotations

import ctypes
import functools
import os

from PIL import Image

ENABLED = True
"""Use libvips when it is installed (tests and the benchmark turn it off to compare)."""

# Box-shrink by whole factors first when the ratio is over 3, as the Pillow path does
# (transforms.REDUCING_GAP): the same look for far less work, and libvips' reduce refuses
# very large factors.
_REDUCING_GAP = 3.0

_BANDS_MODE = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _one_malloc_arena() -> None:
    """Keep glibc to one malloc arena (unless MALLOC_ARENA_MAX says otherwise). libvips
    works on a thread of its own, which would get an arena of its own: 64 MB more address
    space reserved (the render workers run under an address-space cap) and buffers that
    cannot reuse what the decode freed on the main thread. Measured with bench/peers.py on
    the progressive 12 MP JPEG (whose decoder holds every DCT coefficient, 36 MB): 41-46 MB
    above the idle process either way, varying with the heap's state from run to run, at
    the same CPU time (the main thread waits while libvips' one worker runs, so nothing
    contends for the arena). It takes effect only before a second thread has allocated,
    hence at import."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL(None).mallopt(-8, 1)        # M_ARENA_MAX, from glibc's malloc.h
    except (OSError, AttributeError):           # pragma: no cover - not glibc (musl has no arenas)
        pass


_one_malloc_arena()


@functools.cache
def _load():
    # one thread per render: the processor runs renders side by side, one per core
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    try:
        import pyvips
    except (ImportError, OSError):  # pragma: no cover - a pinned dependency; Pillow is the fallback
        return None
    pyvips.cache_set_max(0)         # the operation cache would keep pixels alive between renders
    return pyvips


def pyvips():
    """The pyvips module, or None when it is unavailable or turned off."""
    return _load() if ENABLED else None


def _reduce(image, size: tuple[int, int]):
    """Lanczos-3 down to exactly ``size`` (a box shrink first for large ratios); alpha is
    premultiplied for the resample, as Pillow does, so transparent pixels bleed no colour."""
    alpha = image.bands in (2, 4)
    if alpha:
        # premultiply() gives float pixels, and libvips' shrink and reduce on float are
        # several times slower than on uchar (no SIMD path): a 14.7 MP RGBA PNG took 3.5x
        # the opaque one. Back to 8 bits before the resample, rounded: exactly Pillow's
        # RGBa (what libvips' own thumbnail does, truncated), so the resample runs as it
        # does for an opaque image and only the small output is unpremultiplied in float.
        # The line cache: the reduce's windows overlap (27 rows of input for each row out
        # at 4.4x), and each would premultiply its rows again (the loader caches its own
        # rows, which is why the opaque path needs none): 170 -> 128 ms on a palette PNG.
        image = image.premultiply(max_alpha=255).rint().cast("uchar").linecache(access="sequential", tile_height=16)
    image = _resample(image, size)
    if alpha:
        image = image.unpremultiply(max_alpha=255).rint()     # cast alone truncates: 254.9999 would be 254
        # a pixel that ends fully transparent gets no colour, as in Pillow (encoders such
        # as GIF's tell transparency by the whole pixel)
        image = (image[image.bands - 1] == 0).ifthenelse(0, image)
    if image.format != "uchar":
        image = image.cast("uchar")
    return image if (image.width, image.height) == size else None


def _resample(image, size: tuple[int, int]):
    """The shrink and Lanczos reduce of 8-bit pixels (premultiplied when there is alpha)."""
    vips = _load()
    width, height = size
    shrink_x, shrink_y = int(image.width / width / _REDUCING_GAP), int(image.height / height / _REDUCING_GAP)
    if shrink_x > 1 or shrink_y > 1:
        image = image.shrink(max(1, shrink_x), max(1, shrink_y))
    if (image.width, image.height) != size:
        image = image.reduce(image.width / width, image.height / height, kernel=vips.enums.Kernel.LANCZOS3)
    return image


def _to_pillow(image) -> Image.Image:
    return Image.frombytes(_BANDS_MODE[image.bands], (image.width, image.height), image.write_to_memory())


def resize(image: Image.Image, size: tuple[int, int], box: tuple[int, int, int, int] | None) -> Image.Image | None:
    """Pillow's ``image.resize(size, LANCZOS, box=box)`` for a downscale of an 8-bit L,
    LA, RGB or RGBA image, done by libvips; None for anything else."""
    vips = pyvips()
    if vips is None or image.mode not in ("L", "LA", "RGB", "RGBA"):
        return None
    left, top, right, bottom = box or (0, 0, *image.size)
    if size[0] > right - left or size[1] > bottom - top:
        return None             # an upscale: Pillow's
    try:
        source = vips.Image.new_from_memory(image.tobytes(), image.width, image.height, len(image.mode), "uchar")
        if (left, top, right, bottom) != (0, 0, *image.size):
            source = source.crop(left, top, right - left, bottom - top)
        reduced = _reduce(source, size)
        return None if reduced is None else _to_pillow(reduced)
    except vips.Error:
        return None


def reduce_array(pixels, size: tuple[int, int]) -> Image.Image | None:
    """A decoded H x W x bands uint8 array (simplejpeg's scaled JPEG decode) reduced to
    ``size`` without a copy on the way in; None without libvips."""
    vips = pyvips()
    if vips is None:
        return None
    rows, cols = pixels.shape[:2]
    bands = pixels.shape[2] if pixels.ndim == 3 else 1
    try:
        source = vips.Image.new_from_memory(pixels.data, cols, rows, bands, "uchar")
        reduced = _reduce(source, size)
        return None if reduced is None else _to_pillow(reduced)
    except vips.Error:
        return None


def decode_scaled(data: bytes, kind: str, size: tuple[int, int], mode: str) -> Image.Image | None:
    """Decode a still PNG or WebP straight to ``size``, streaming (the full-size image is
    never held in memory): WebP scaled while decoding by libwebp, as libvips' thumbnail
    does, PNG decoded row by row through the Lanczos reduce. ``mode`` is the working mode
    Pillow's decode would give; anything else (16-bit grey, which Pillow keeps at 16 bits;
    16-bit grey with alpha, which it makes RGBA; a transparent colour key) is declined, and
    so is any file libvips finds fault with, so that Pillow decodes it and reports the
    problem in its own words."""
    vips = pyvips()
    if vips is None or kind not in ("png", "webp"):
        return None
    try:
        # read in place: new_from_buffer copies the whole file first (24 ms for a 36 MB PNG)
        def source():
            return vips.Source.new_from_memory(data)
        options = {}
        if kind == "webp":
            header = vips.Image.new_from_source(source(), "")
            options["scale"] = min(1.0, max(size[0] / header.width, size[1] / header.height))
        image = vips.Image.new_from_source(source(), "", access="sequential", fail_on="truncated", **options)
        if image.format == "ushort" and image.bands in (3, 4):
            # 16-bit RGB(A): Pillow's decode keeps each sample's high byte, and so does
            # this, before the resample (streamed, and the resample on 8 bits like any PNG)
            image = image.cast("uchar", shift=True)
        if image.format != "uchar" or _BANDS_MODE.get(image.bands) != mode:
            return None
        reduced = _reduce(image, size) if (image.width, image.height) != size else image
        return None if reduced is None else _to_pillow(reduced)
    except vips.Error:
        return None


def thumbnail(data: bytes, size: tuple[int, int]) -> Image.Image | None:
    """Any image libvips reads, reduced to ``size`` as its thumbnail does: shrink-on-load
    where the format has it (JPEG, WebP, TIFF pyramids), else a sequential decode through
    the reduce (the full-size image is never held, except where the decoder itself needs it
    whole: HEIC and AVIF). 16-bit images come out as 8 bits. No orientation is applied.
    None without libvips or for a file it declines."""
    vips = pyvips()
    if vips is None:
        return None
    try:
        return _eight_bit_pillow(vips.Image.thumbnail_buffer(data, size[0], height=size[1], size="force",
                                                             no_rotate=True, fail_on="truncated"))
    except vips.Error:
        return None


def crop(data: bytes, box: tuple[int, int, int, int]) -> Image.Image | None:
    """The region ``(left, top, width, height)`` of a still image libvips reads, at full
    resolution, decoded sequentially: only the rows down to the region's bottom are decoded
    and only the region is kept. None without libvips or for a file it declines."""
    vips = pyvips()
    if vips is None:
        return None
    try:
        image = vips.Image.new_from_buffer(data, "", access="sequential", fail_on="truncated")
        return _eight_bit_pillow(image.crop(*box))
    except vips.Error:
        return None


def _eight_bit_pillow(image) -> Image.Image | None:
    """A libvips image as 8-bit Pillow pixels (16-bit and float brought to 8 bits), or None for a
    band layout Pillow has no mode for."""
    if image.format != "uchar":
        image = image.colourspace("b-w" if image.bands <= 2 else "srgb")
    if image.format != "uchar" or image.bands not in _BANDS_MODE:
        return None
    return _to_pillow(image)
