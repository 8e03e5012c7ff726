"""Every kind of broken (or merely unusual) file we can make with Pillow and a few bytes of
hand-written headers, and the test of a failure reason: ours, in plain words, never a library's.

Used by the engine's test (tests/unit/engine/test_failure_reasons.py) and the HTTP one
(tests/e2e/test_failure_reasons_e2e.py)."""
from __future__ import annotations

import io
import re
import struct
import zlib

from PIL import Image

from imageflow.engine import ImageError

# What a library's message looks like. A reason containing any of these was passed through
# from Pillow, libtiff, libwebp, zlib or Python instead of being said in our words.
LIBRARY_WORDS = (
    "decoder error", "encoder error", "PngImagePlugin", "ERROR", "Image.", "cannot identify", "errno",
    "exceeds limit of", "could be decompression bomb", "MAX_TEXT_CHUNK", "broken PNG", "image file is truncated",
    "bytes not processed", "Invalid frame dimensions", "not a TIFF", "Traceback", "NoneType", "unpack",
    "index out of range", "tile", "buffer", "libtiff", "libwebp", "zlib",
)
# Python exception class names (ValueError, SyntaxError, UnidentifiedImageError, struct.error...)
_EXCEPTION_NAME = re.compile(r"\b[A-Z]?[a-z]*(Error|Exception|Warning)\b|struct\.error")

# The reason's code, as documented in docs/api.md.
ENGINE_CODES = set(ImageError.CODES)


def library_words(reason: str) -> list[str]:
    """The library phrases in ``reason`` (empty when the reason is ours)."""
    found = [word for word in LIBRARY_WORDS if word in reason]
    return found + _EXCEPTION_NAME.findall(reason)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def picture(size=(48, 32), mode="RGB") -> Image.Image:
    """Some detail everywhere, so every encoder writes real entropy-coded data."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([((x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1), (x * y) % 256)
                   for y in range(height) for x in range(width)])
    return image.convert(mode) if mode != "RGB" else image


def _frames(count=3, size=(24, 16)) -> list[Image.Image]:
    return [Image.new("RGB", size, (80 * i % 256, 40, 200 - 50 * i)) for i in range(count)]


def valid_files() -> dict[str, bytes]:
    """One file per input format (and flavour) the engine accepts."""
    frames = _frames()
    files = {
        "jpeg": encode(picture(), "JPEG", quality=90),
        "jpeg-progressive": encode(picture(), "JPEG", progressive=True),
        "jpeg-grey": encode(picture(mode="L"), "JPEG"),
        "jpeg-cmyk": encode(picture(mode="CMYK"), "JPEG"),
        "png": encode(picture(), "PNG"),
        "png-rgba": encode(picture(mode="RGBA"), "PNG"),
        "png-palette": encode(picture(mode="P"), "PNG"),
        "png-16bit": encode(picture(mode="I;16"), "PNG"),
        "apng": encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "gif": encode(picture(mode="P"), "GIF"),
        "gif-animated": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], optimize=False),
        "webp": encode(picture(), "WEBP"),
        "webp-lossless": encode(picture(mode="RGBA"), "WEBP", lossless=True),
        "webp-animated": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "tiff": encode(picture(), "TIFF"),
        "tiff-lzw": encode(picture(), "TIFF", compression="tiff_lzw"),
        "tiff-deflate": encode(picture(), "TIFF", compression="tiff_adobe_deflate"),
        "tiff-jpeg": encode(picture(), "TIFF", compression="jpeg"),
        "tiff-packbits": encode(picture(), "TIFF", compression="packbits"),
        "tiff-group4": encode(picture(mode="1"), "TIFF", compression="group4"),
        "tiff-pages": encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "bmp": encode(picture(), "BMP"),
        "bmp-palette": encode(picture(mode="P"), "BMP"),
        "avif": encode(picture(), "AVIF"),
    }
    try:
        from pillow_heif import register_heif_opener
        register_heif_opener()
        files["heic"] = encode(picture(), "HEIF")
    except ImportError:  # pragma: no cover - a pinned dependency
        pass
    try:
        import pillow_jxl  # noqa: F401  (registers JXL)
        files["jxl"] = encode(picture(), "JXL")
    except ImportError:  # pragma: no cover - a pinned dependency
        pass
    return files


def truncations(data: bytes) -> dict[str, bytes]:
    """The file cut at several offsets: inside the magic, the header, the data, the last byte."""
    size = len(data)
    offsets = sorted({1, 4, 8, 12, 16, 24, 33, 64, size // 4, size // 2, 3 * size // 4, size - 2, size - 1})
    return {f"cut at {n}": data[:n] for n in offsets if 0 < n < size}


def scribbles(data: bytes) -> dict[str, bytes]:
    """Header bytes and body bytes overwritten."""
    out = {}
    for start, length, fill in ((8, 8, 0xFF), (12, 16, 0x00), (20, 12, 0xA5), (len(data) // 3, 64, 0x00),
                                (len(data) // 2, 200, 0xFF)):
        if start + 1 < len(data):
            broken = bytearray(data)
            broken[start:start + length] = bytes([fill]) * len(broken[start:start + length])
            out[f"{length} bytes of {fill:#04x} at {start}"] = bytes(broken)
    return out


# -- format-specific damage --------------------------------------------------------------------

def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)


def png_with(width: int, height: int, *extra: bytes, idat: bytes | None = None, ihdr_crc: int | None = None) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = idat if idat is not None else zlib.compress(b"".join(b"\0" + bytes(3 * width) for _ in range(min(height, 4))))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header, ihdr_crc) + b"".join(extra) + png_chunk(b"IDAT", rows)
            + png_chunk(b"IEND", b""))


def png_damage() -> dict[str, bytes]:
    good = encode(picture(), "PNG")
    bad_idat_crc = bytearray(good)
    at = good.index(b"IDAT")
    length = struct.unpack(">I", good[at - 4:at])[0]
    bad_idat_crc[at + 4 + length:at + 8 + length] = b"\0\0\0\0"
    text_bomb = png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"A" * (2 * 1024 * 1024), 9))
    icc_bomb = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (20 * 1024 * 1024), 9))
    return {
        "png bad IHDR CRC": png_with(48, 32, ihdr_crc=0x12345678),
        "png bad IDAT CRC": bytes(bad_idat_crc),
        "png lying dimensions": png_with(4000, 3000),
        "png huge declared size": png_with(100_000, 100_000),
        "png 179 MP (past Pillow's own bomb limit)": png_with(13_400, 13_400),
        "png zero width": png_with(0, 32),
        "png text chunk bomb": png_with(48, 32, text_bomb),
        "png ICC profile bomb": png_with(48, 32, icc_bomb),
        "png IDAT not zlib": png_with(48, 32, idat=b"this is not deflate data" * 4),
        "png unknown critical chunk": png_with(48, 32, png_chunk(b"ABCD", b"x")),
    }


def gif_descriptors(data: bytes) -> list[int]:
    """Offsets of a GIF's image descriptors."""
    pos, flags, found = 13, data[10], []
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:
            pos += 2
        else:
            found.append(pos)
            local = data[pos + 9]
            pos += 10 + ((3 << ((local & 7) + 1)) if local & 0x80 else 0) + 1
        while data[pos]:
            pos += 1 + data[pos]
        pos += 1
    return found


def gif_frame_past_canvas() -> bytes:
    """A valid animated GIF whose second frame is placed partly outside the logical screen."""
    data = bytearray(encode(_frames()[0], "GIF", save_all=True, append_images=_frames()[1:], optimize=False))
    second = gif_descriptors(bytes(data))[1]
    data[second + 1:second + 5] = struct.pack("<HH", 10, 6)     # left, top: 24x16 at (10, 6) on 24x16
    return bytes(data)


def gif_damage() -> dict[str, bytes]:
    good = bytearray(encode(_frames()[0], "GIF", save_all=True, append_images=_frames()[1:], optimize=False))
    huge, zero, bad_lzw = bytearray(good), bytearray(good), bytearray(good)
    huge[6:10] = struct.pack("<HH", 65535, 65535)
    zero[6:10] = struct.pack("<HH", 0, 0)
    first = gif_descriptors(bytes(good))[0]
    bad_lzw[first + 10] = 0x0F                                      # LZW minimum code size out of range
    huge_frame = bytearray(good)
    huge_frame[first + 5:first + 9] = struct.pack("<HH", 40000, 40000)
    return {"gif huge screen": bytes(huge), "gif zero screen": bytes(zero), "gif bad LZW code size": bytes(bad_lzw),
            "gif huge frame": bytes(huge_frame)}


def jpeg_damage() -> dict[str, bytes]:
    good = encode(picture(), "JPEG")
    sof = good.index(b"\xff\xc0")
    out = {}
    for name, (height, width) in {"jpeg huge declared size": (65535, 65535), "jpeg lying dimensions": (3000, 4000),
                                  "jpeg zero height": (0, 48)}.items():
        broken = bytearray(good)
        broken[sof + 5:sof + 9] = struct.pack(">HH", height, width)
        out[name] = bytes(broken)
    no_tables = bytearray(good)
    dht = good.index(b"\xff\xc4")
    no_tables[dht + 1] = 0xFE                                       # the Huffman tables become a comment
    out["jpeg without Huffman tables"] = bytes(no_tables)
    out["jpeg no end marker"] = good[:-2]
    return out


def tiff_with(data: bytes, tag: int, value: int) -> bytes:
    """A little-endian TIFF with one SHORT/LONG tag of its first directory set to ``value``."""
    data = bytearray(data)
    ifd = struct.unpack("<I", data[4:8])[0]
    for index in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * index
        number, kind = struct.unpack("<HH", data[entry:entry + 4])
        if number == tag:
            data[entry + 8:entry + 12] = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
    return bytes(data)


def tiff_webp() -> bytes:
    """A TIFF whose pixels are WebP-compressed (compression 50001), a codec libtiff may lack."""
    return tiff_with(encode(picture(), "TIFF"), 259, 50001)


def tiff_damage() -> dict[str, bytes]:
    plain = encode(picture(), "TIFF")
    return {
        "tiff WebP compression": tiff_webp(),
        "tiff JPEG 2000 compression": tiff_with(plain, 259, 34712),
        "tiff unknown compression": tiff_with(plain, 259, 12345),
        "tiff huge width": tiff_with(plain, 256, 200_000),
        "tiff strips past the end": tiff_with(plain, 273, 10_000_000),
        "tiff directory past the end": plain[:4] + struct.pack("<I", 10_000_000) + plain[8:],
        "tiff bits per sample 3": tiff_with(plain, 258, 3),
    }


def bmp_damage() -> dict[str, bytes]:
    good = bytearray(encode(picture(), "BMP"))
    huge, depth, offset = bytearray(good), bytearray(good), bytearray(good)
    huge[18:26] = struct.pack("<ii", 100_000, 100_000)
    depth[28:30] = struct.pack("<H", 7)
    offset[10:14] = struct.pack("<I", 10_000_000)
    return {"bmp huge declared size": bytes(huge), "bmp bit depth 7": bytes(depth),
            "bmp pixels past the end": bytes(offset)}


def webp_damage() -> dict[str, bytes]:
    good = bytearray(encode(picture(), "WEBP"))
    lying = bytearray(good)
    lying[4:8] = struct.pack("<I", 10_000_000)                      # RIFF size larger than the file
    vp8 = bytearray(good)
    at = good.index(b"VP8 ")
    vp8[at + 14:at + 18] = struct.pack("<HH", 16383, 16383)         # frame width/height
    return {"webp lying RIFF size": bytes(lying), "webp huge frame": bytes(vp8)}


# -- images in formats we do not read ----------------------------------------------------------

def fits() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
             "NAXIS1  =                    4", "NAXIS2  =                    4", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode("ascii")
    return header + bytes(16).ljust(2880, b"\0")


XPM = b"""/* XPM */
static char *pixel[] = {
"2 2 2 1",
"a c #FF0000",
"b c #0000FF",
"ab",
"ba"
};
"""

# Images in formats we do not read: their file, and the name the reason gives them.
UNSUPPORTED_IMAGES = {
    "XPM": (XPM, "XPM"),
    "XBM": (encode(picture(mode="1"), "XBM"), "XBM"),
    "colour PFM": (b"PF\n1 1\n-1.0\n" + bytes(12), "PFM"),
    "EPS": (encode(picture(), "EPS"), "EPS (PostScript)"),
    "FITS": (fits(), "FITS"),
    "PCX": (encode(picture(), "PCX"), "PCX"),
    "QOI": (encode(picture(), "QOI"), "QOI"),
}


def broken_files() -> dict[str, dict[str, bytes]]:
    """Every broken file, in groups: each valid file truncated and scribbled over, the damage
    particular to each format, and images in formats we do not read (zero bytes among them)."""
    groups: dict[str, dict[str, bytes]] = {}
    for name, data in valid_files().items():
        groups[name] = {f"{name} {what}": broken for what, broken in {**truncations(data), **scribbles(data)}.items()}
    for damage in (png_damage, gif_damage, jpeg_damage, tiff_damage, bmp_damage, webp_damage):
        groups[damage.__name__] = damage()
    groups["unsupported"] = {"zero bytes": b"", **{name: data for name, (data, _) in UNSUPPORTED_IMAGES.items()}}
    return groups
