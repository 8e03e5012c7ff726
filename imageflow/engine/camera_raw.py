"""Camera RAW (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2...) through rawpy (LibRaw), as a Pillow
plugin: the embedded preview when it is at least the size the output needs, else a demosaic
with the camera's white balance into sRGB. Either way the pixels come out upright, turned as the
RAW's own orientation tag (LibRaw's ``flip``) says.
"""
from __future__ import annotations

import functools
import io
import logging
import struct

from PIL import Image, ImageFile

from ..domain import ErrorCode
from . import report
from .limits import ImageError

log = logging.getLogger(__name__)

# LibRaw's flip -> the EXIF orientation it stands for
FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
_TURN = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def sniff(data: bytes) -> bool:
    """Whether the bytes are a camera RAW: the RAW-only signatures, or a TIFF that is a DNG
    (DNGVersion tag) or a CR2 ("CR" after the header)."""
    head = data[:16]
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00") or head.startswith(b"FUJIFILMCCD-RAW"):
        return True
    if head[4:8] == b"ftyp" and head[8:12] == b"crx ":
        return True
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return head[8:10] == b"CR" or _has_tag(data, 50706)
    return False


def _has_tag(data: bytes, wanted: int) -> bool:
    order = "<" if data[:2] == b"II" else ">"
    try:
        ifd = struct.unpack(order + "I", data[4:8])[0]
        count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
        return any(struct.unpack(order + "H", data[entry:entry + 2])[0] == wanted
                   for entry in range(ifd + 2, ifd + 2 + 12 * min(count, 4096), 12))
    except struct.error:
        return False


@functools.cache
def _rawpy():
    import rawpy
    return rawpy


def upright_size(width: int, height: int, flip: int) -> tuple[int, int]:
    return (height, width) if flip in (5, 6) else (width, height)


def decode(raw, wanted: tuple[int, int] | None) -> Image.Image:
    """The picture of an opened rawpy object, upright: the embedded JPEG or bitmap preview when
    it is at least ``wanted`` (the full size when None), else a demosaic (at half size when that
    is still at least ``wanted``)."""
    sizes = raw.sizes
    flip = sizes.flip if sizes.flip in _TURN else 0
    full = upright_size(sizes.width, sizes.height, flip)
    need = wanted or full
    preview = _preview(raw)
    if preview is not None:
        # a preview already turned by the camera is rare; LibRaw's flip describes the sensor's pixels
        turned = preview.transpose(_TURN[flip]) if flip else preview
        if turned.width >= need[0] and turned.height >= need[1]:
            report.note("raw_decode", f"embedded preview {turned.width}x{turned.height}")
            return turned
    half = need[0] <= full[0] // 2 and need[1] <= full[1] // 2
    rawpy = _rawpy()
    pixels = raw.postprocess(use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB, output_bps=8, half_size=half)
    report.note("raw_decode", "demosaic (half size)" if half else "demosaic")
    return Image.fromarray(pixels).convert("RGB")       # LibRaw applied the flip itself


def _preview(raw) -> Image.Image | None:
    rawpy = _rawpy()
    try:
        thumb = raw.extract_thumb()
    except Exception as exc:       # no preview, or one LibRaw cannot extract
        log.info("no usable RAW preview: %s", exc)
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            image = Image.open(io.BytesIO(bytes(thumb.data)), formats=["JPEG"])
            image.load()
            return image.convert("RGB")
        return Image.fromarray(thumb.data).convert("RGB")
    except Exception as exc:
        log.info("the RAW preview does not decode: %s", exc)
        return None


class RawImageFile(ImageFile.ImageFile):
    format = "IF_RAW"
    format_description = "camera RAW"
    wanted: tuple[int, int] | None = None

    def _open(self) -> None:
        data = self.fp.read()
        if not sniff(data):
            raise SyntaxError("not a camera RAW")
        rawpy = _rawpy()
        raw = rawpy.RawPy()
        try:
            raw.open_buffer(io.BytesIO(data))
            sizes = raw.sizes
        except Exception as exc:
            raw.close()
            log.info("LibRaw cannot open the RAW: %s: %s", type(exc).__name__, exc)
            raise ImageError(ErrorCode.CORRUPT, "the camera RAW file is damaged, truncated or from a camera LibRaw "
                                                "does not know") from None
        self._raw = raw
        self.flip = sizes.flip if sizes.flip in _TURN else 0
        self._size, self._mode = upright_size(sizes.width, sizes.height, self.flip), "RGB"

    def load(self):
        if self._im is None:
            try:
                image = decode(self._raw, self.wanted)
            except ImageError:
                raise
            except MemoryError:
                raise
            except Exception as exc:
                log.info("LibRaw cannot decode the RAW: %s: %s", type(exc).__name__, exc)
                raise ImageError(ErrorCode.CORRUPT, "the camera RAW image data is damaged or truncated") from None
            self.im, self._mode, self._size = image.im, image.mode, image.size
        return Image.Image.load(self)

    def load_seek(self, pos: int) -> None:
        pass

    def close(self) -> None:
        raw = getattr(self, "_raw", None)
        if raw is not None:
            raw.close()
            self._raw = None
        super().close()


Image.register_open(RawImageFile.format, RawImageFile, lambda prefix: True)
