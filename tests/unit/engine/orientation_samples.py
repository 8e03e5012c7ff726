"""Pictures stored with an orientation, in every format that carries one, and the upright
reference to compare a render with (used by the engine's and the estimate's tests)."""
from __future__ import annotations

import functools
import io
import struct

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


STORED = (192, 96)      # width, height as stored: non-square, a multiple of the JPEG blocks
COLOURS = ((230, 30, 30), (30, 200, 30), (30, 30, 230), (230, 230, 30))   # TL, TR, BL, BR as stored
ORIENTATIONS = range(1, 9)


def stored_pixels() -> np.ndarray:
    width, height = STORED
    pixels = np.empty((height, width, 3), np.uint8)
    for index, colour in enumerate(COLOURS):
        row, col = divmod(index, 2)
        pixels[row * height // 2:(row + 1) * height // 2, col * width // 2:(col + 1) * width // 2] = colour
    return pixels


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The displayed picture, from TIFF 6.0's definition of the Orientation tag (where the
    stored 0th row and 0th column go), written out here rather than taken from the engine."""
    return {
        1: lambda a: a,                            # row 0 top, column 0 left
        2: lambda a: a[:, ::-1],                   # row 0 top, column 0 right
        3: lambda a: a[::-1, ::-1],                # row 0 bottom, column 0 right
        4: lambda a: a[::-1, :],                   # row 0 bottom, column 0 left
        5: lambda a: a.transpose(1, 0, 2),         # row 0 left, column 0 top
        6: lambda a: a[::-1, :].transpose(1, 0, 2),   # row 0 right, column 0 top
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
        8: lambda a: a[:, ::-1].transpose(1, 0, 2),   # row 0 left, column 0 bottom
    }[orientation](pixels)


def exif_with(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        size = size or len(data) - pos
        boxes.append((kind, data[pos:pos + size]))
        pos += size
    return boxes


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def jxl_from_jpeg(orientation: int, reconstruct: bool) -> bytes:
    """A JPEG with that EXIF orientation transcoded losslessly to JPEG XL: libjxl writes the
    orientation into the codestream header (where JPEG XL keeps it). With ``reconstruct``
    the file keeps its JPEG reconstruction data and the plugin hands back the original JPEG;
    without it libjxl decodes the pixels. The EXIF goes in a plain Exif box, with the same
    orientation (as digiKam and exiftool write it)."""
    from pillow_jxl import Encoder
    from imageflow.engine import jxl
    jxl.available()
    jpeg = encode(Image.fromarray(stored_pixels()), "JPEG", quality=95, exif=exif_with(orientation))
    data = Encoder(mode="RGB", lossless=True, quality=100, decoding_speed=0, effort=7, use_container=True,
                   use_original_profile=False, num_threads=1)(jpeg, *STORED, jpeg_encode=True)
    dropped = {b"brob"} | (set() if reconstruct else {b"jbrd"})   # brob: the Exif, compressed
    boxes = [box for kind, box in _boxes(data) if kind not in dropped]
    return b"".join(boxes[:2]) + _box(b"Exif", bytes(4) + exif_with(orientation)[6:]) + b"".join(boxes[2:])


def _pillow(fmt: str, **params):
    return lambda orientation: encode(Image.fromarray(stored_pixels()), fmt, exif=exif_with(orientation), **params)


def _heic(orientation: int) -> bytes:
    from imageflow.engine import decoding
    decoding.heic_available()           # pillow-heif writes the orientation as irot/imir
    return _pillow("HEIF", quality=95)(orientation)


# How each format carries an orientation, as the tools that write it do.
WRITERS = {
    "jpeg": _pillow("JPEG", quality=95),          # EXIF in APP1
    "tiff": _pillow("TIFF"),                      # the Orientation tag in IFD0
    "png": _pillow("PNG"),                        # eXIf chunk
    "webp": _pillow("WEBP", quality=95),          # EXIF chunk
    "avif": _pillow("AVIF", quality=95),          # Pillow writes it as irot/imir
    "heic": _heic,                                # irot/imir
    "jxl": functools.partial(jxl_from_jpeg, reconstruct=False),           # codestream header
    "jxl-jpeg": functools.partial(jxl_from_jpeg, reconstruct=True),      # codestream + JPEG reconstruction
}
LOSSY = {"jpeg", "webp", "avif", "heic", "jxl", "jxl-jpeg"}


@functools.cache
def sample(kind: str, orientation: int) -> bytes:
    return WRITERS[kind](orientation)


def quadrant_colours(image: Image.Image) -> list[tuple[int, ...]]:
    rgb = image.convert("RGB")
    width, height = rgb.size
    return [rgb.getpixel((width * x // 4, height * y // 4)) for y in (1, 3) for x in (1, 3)]


def assert_upright(image: Image.Image, orientation: int, tolerance: int, where: str):
    """``image`` is the stored picture turned as ``orientation`` says (at any scale): the same
    shape, to a pixel, and the same colour at the centre of each quadrant."""
    reference = Image.fromarray(upright(stored_pixels(), orientation))
    scaled_height = image.width * reference.height / reference.width
    assert abs(image.height - scaled_height) <= 1, f"{where}: {image.size}, upright is {reference.size}"
    for got, want in zip(quadrant_colours(image), quadrant_colours(reference)):
        assert max(abs(a - b) for a, b in zip(got, want)) <= tolerance, \
            f"{where}: quadrants {quadrant_colours(image)}, upright {quadrant_colours(reference)}"
