"""Why an input cannot be read, in our words: the boundary where the decoders' exceptions
(Pillow, libtiff, libwebp, zlib...) become an :class:`ImageError` with a code and a plain
sentence. A library's own message is logged here and never shown to the user.

Also the files we recognise but do not read ("unsupported format: XPM"), files cut short
inside their signature, and TIFF compressions this installation cannot decode.
"""
from __future__ import annotations

import functools
import io
import logging
import re
import struct

from PIL import Image, TiffImagePlugin

from ..domain import ErrorCode
from .limits import ImageError, Limits

log = logging.getLogger(__name__)


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".rstrip("0").rstrip(".")


# -- files that are not a format we read ----------------------------------------------------------

# Images in formats the engine does not read: each says "unsupported format: <name>". Several
# are text (XPM, XBM, plain PBM/PGM/PPM, EPS, FITS headers): they are images all the same.
_UNSUPPORTED_MAGIC = (
    (b"/* XPM */", "XPM"), (b"! XPM2", "XPM"),
    (b"%!PS-Adobe", "EPS (PostScript)"), (b"\xc5\xd0\xd3\xc6", "EPS (PostScript)"), (b"%!", "PostScript"),
    (b"SIMPLE  =", "FITS"), (b"gimp xcf", "XCF (GIMP)"), (b"icns", "ICNS (Apple icon)"),
    (b"qoif", "QOI"), (b"\x59\xa6\x6a\x95", "Sun raster"), (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"),
)
_NETPBM = re.compile(rb"\AP([1-7fF])\s")
_NETPBM_NAMES = {b"1": "PBM", b"4": "PBM", b"2": "PGM", b"5": "PGM", b"3": "PPM", b"6": "PPM", b"7": "PAM",
                 b"f": "PFM", b"F": "PFM"}
_XBM = re.compile(rb"\A\s*(/\*.*?\*/\s*)?#define\s+\S*width\s+\d+", re.S)
_PCX = re.compile(rb"\A\x0a[\x00\x02-\x05]\x01[\x01\x02\x04\x08]")


def unsupported_format(data: bytes) -> str | None:
    """``unsupported format: <name>`` for an image in a format we recognise but do not read."""
    head = data[:512]
    for magic, name in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return f"unsupported format: {name}"
    netpbm = _NETPBM.match(head)
    if netpbm:
        return f"unsupported format: {_NETPBM_NAMES[netpbm.group(1)]}"
    if _XBM.match(head):
        return "unsupported format: XBM"
    if _PCX.match(head):
        return "unsupported format: PCX"
    return None


# The signatures of the formats we read, with the bytes needed to know one (RIFF and BM files
# need their header too): a file shorter than that which starts with them was cut short.
_SIGNATURES = ((b"\xff\xd8\xff", 3, "JPEG"), (b"\x89PNG\r\n\x1a\n", 8, "PNG"), (b"GIF87a", 6, "GIF"),
               (b"GIF89a", 6, "GIF"), (b"RIFF", 12, "WebP"), (b"II*\x00", 4, "TIFF"), (b"MM\x00*", 4, "TIFF"),
               (b"BM", 26, "BMP"), (b"\xff\x0a", 2, "JPEG XL"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 12, "JPEG XL"),
               (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 12, "JPEG 2000"), (b"8BPS", 6, "Photoshop"), (b"DDS ", 4, "DDS"))


def cut_short(data: bytes) -> str | None:
    """Why a file that is only the start of a supported format's signature is no image."""
    size = f"{len(data)} byte" + ("s" if len(data) != 1 else "")
    for magic, needed, name in _SIGNATURES:
        if len(data) < needed and data[:len(magic)] == magic[:len(data)]:
            return f"the file is truncated: it is only {size} long (the start of a {name} image)"
    if 8 <= len(data) < 16 and data[4:8] == b"ftyp":     # the brands that tell AVIF from HEIC are cut off
        return f"the file is truncated: it is only {size} long (the start of an AVIF or HEIC image)"
    return None


# -- TIFF compressions ----------------------------------------------------------------------------

TIFF_COMPRESSIONS = {1: "none", 2: "CCITT RLE", 3: "CCITT Group 3", 4: "CCITT Group 4", 5: "LZW",
                     6: "old-style JPEG", 7: "JPEG", 8: "Deflate", 32946: "Deflate", 32773: "PackBits",
                     32771: "raw 16-bit", 32809: "ThunderScan", 34676: "SGILog", 34677: "SGILog24",
                     34712: "JPEG 2000", 34887: "LERC", 34892: "lossy JPEG", 34925: "LZMA", 50000: "Zstandard",
                     50001: "WebP", 50002: "JPEG XL"}

# Pillow writes these through libtiff, so a round trip tells whether this libtiff decodes them.
_WRITABLE = {"tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg", "zstd", "lzma", "webp", "group3", "group4",
             "tiff_ccitt"}


def tiff_compression(data: bytes) -> int | None:
    """The Compression tag (259) of a classic TIFF's first directory, read from the bytes (Pillow
    refuses to open a TIFF whose compression it does not know); None when it is not there."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return None
    try:
        ifd = struct.unpack(order + "I", data[4:8])[0]
        count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
        for entry in range(ifd + 2, ifd + 2 + 12 * min(count, 4096), 12):
            tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
            if tag == 259:
                short = kind == 3
                return struct.unpack(order + ("H" if short else "I"), data[entry + 8:entry + (10 if short else 12)])[0]
    except struct.error:     # the directory is cut short
        return None
    return None


@functools.cache
def _tiff_codec_decodes(name: str) -> bool:
    """Whether this libtiff decodes ``name``: a tiny image written and read back once."""
    image = Image.new("1" if name in ("group3", "group4", "tiff_ccitt") else "RGB", (8, 8))
    try:
        buffer = io.BytesIO()
        image.save(buffer, "TIFF", compression=name)
        with Image.open(io.BytesIO(buffer.getvalue()), formats=["TIFF"]) as again:
            again.load()
        return True
    except Exception as exc:
        log.info("this libtiff cannot round-trip %s compression: %s", name, exc)
        return False


def unsupported_tiff_compression(data: bytes) -> ImageError | None:
    """An ``unsupported_compression`` error when the TIFF's pixels are compressed in a way this
    installation cannot decode (WebP, JPEG 2000, an unknown scheme...), else None."""
    code = tiff_compression(data)
    if code is None:
        return None
    name = TiffImagePlugin.COMPRESSION_INFO.get(code)
    if name is None or (name in _WRITABLE and not _tiff_codec_decodes(name)):
        what = TIFF_COMPRESSIONS.get(code, f"scheme {code}")
        return ImageError(ErrorCode.UNSUPPORTED_COMPRESSION, f"unsupported TIFF compression ({what})")
    return None


# -- decoder exceptions ---------------------------------------------------------------------------

def too_large(exc: BaseException, limits: Limits | None) -> ImageError:
    """Pillow's decompression-bomb stop (it fires above twice its own limit, which is not ours)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{megapixels(int(found.group(1)))} megapixels" if found else "too many pixels"
    limit = f"over the limit of {megapixels(limits.max_pixels)} megapixels" if limits else "too large to decode"
    return ImageError(ErrorCode.TOO_LARGE, f"the image is {size}, {limit}")


def label(kind: str) -> str:
    """A format key (:data:`decoding.KINDS`) as people write it."""
    return {"jxl": "JPEG XL", "webp": "WebP", "heic": "HEIC", "jpeg2000": "JPEG 2000", "pnm": "Netpbm",
            "psd": "Photoshop", "pdf": "PDF", "svg": "SVG"}.get(kind, kind.upper())


def _unread_variant(kind: str, data: bytes | None) -> str:
    """A format we read, stored in a variant this installation does not decode."""
    if kind == "dds" and data is not None and len(data) >= 88:
        fourcc = data[84:88]
        if fourcc == b"DX10" and len(data) >= 132:
            return f"unsupported DDS pixel format (DXGI format {struct.unpack('<I', data[128:132])[0]})"
        if fourcc.strip(b"\x00").isalnum():
            return f"unsupported DDS pixel format ({fourcc.decode('ascii').strip()})"
        return "unsupported DDS pixel format"
    return f"this {label(kind)} variant is not supported"


def decoder_error(exc: BaseException, kind: str, data: bytes | None = None, limits: Limits | None = None,
                  where: str = "image data") -> ImageError:
    """The ImageError for an exception a decoder raised on a ``kind`` file (``where``: the
    "header" when opening, the "image data" when decoding)."""
    if isinstance(exc, ImageError):
        return exc
    log.info("the %s decoder failed on the %s: %s: %s", kind, where, type(exc).__name__, exc)
    if isinstance(exc, Image.DecompressionBombError):
        return too_large(exc, limits)
    if isinstance(exc, MemoryError):
        return ImageError(ErrorCode.TOO_LARGE, "the image needs more memory to decode than is available")
    if kind == "tiff" and data is not None:
        unsupported = unsupported_tiff_compression(data)
        if unsupported is not None:
            return unsupported
    if isinstance(exc, NotImplementedError) or (kind == "dds" and "unsupported" in str(exc).lower()):
        code = ErrorCode.UNSUPPORTED_COMPRESSION if kind == "dds" else ErrorCode.UNSUPPORTED
        return ImageError(code, _unread_variant(kind, data))
    text = str(exc).lower()
    if "max_text_chunk" in text or "text chunks" in text:
        return ImageError(ErrorCode.TOO_LARGE, f"the {label(kind)} carries metadata (text or a colour profile) that "
                                               "decompresses to more than we read")
    if "truncated" in text or isinstance(exc, EOFError) or "end of file" in text or "ends early" in text:
        return ImageError(ErrorCode.CORRUPT, "the file is truncated: the image data ends early")
    if "crc" in text or "checksum" in text:
        return ImageError(ErrorCode.CORRUPT, f"the {label(kind)} file is corrupt: a checksum does not match its data")
    compression = tiff_compression(data) if kind == "tiff" and data is not None else None
    if compression not in (None, 1):
        return ImageError(ErrorCode.CORRUPT, f"the TIFF {where} ({TIFF_COMPRESSIONS.get(compression, 'unknown')} "
                                             "compression) is corrupt")
    return ImageError(ErrorCode.CORRUPT, f"the {label(kind)} {where} is corrupt")
