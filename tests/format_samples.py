"""Sample files of the raster formats read besides the web's (issue 26), made here: Pillow writes
TGA, JPEG 2000, ICO, Netpbm, SGI and DDS; PAM, CUR, PSD and PSB are written by hand from their
specifications. Each comes with the picture it holds, for a reference decode."""
from __future__ import annotations

import io
import struct

from PIL import Image


def picture(size=(48, 32), mode="RGB") -> Image.Image:
    """A picture whose corners differ, so a flip or a turn shows."""
    image = Image.new("RGB", size, (40, 90, 200))
    width, height = size
    for x in range(width // 2):
        for y in range(height // 2):
            image.putpixel((x, y), (230, 40, 30))
    image.putpixel((width - 1, height - 1), (20, 200, 40))
    return image.convert(mode)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def pam(image: Image.Image) -> bytes:
    """Netpbm P7 (Pillow does not write it)."""
    depth = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[image.mode]
    header = (f"P7\nWIDTH {image.width}\nHEIGHT {image.height}\nDEPTH {depth}\nMAXVAL 255\n"
              f"TUPLTYPE {'RGB_ALPHA' if depth == 4 else 'RGB'}\nENDHDR\n").encode()
    return header + image.tobytes()


def cur(image: Image.Image) -> bytes:
    """A Windows cursor: an ICO of bitmaps whose type field says 2."""
    data = bytearray(encode(image, "ICO", sizes=[image.size], bitmap_format="bmp"))
    data[2:4] = b"\x02\x00"
    return bytes(data)


def _packbits(row: bytes) -> bytes:
    """PackBits with literal runs only (valid, if not small)."""
    out = bytearray()
    for start in range(0, len(row), 128):
        chunk = row[start:start + 128]
        out += bytes([len(chunk) - 1]) + chunk
    return bytes(out)


def psd(image: Image.Image, *, psb: bool = False, rle: bool = True, merged: bool = True,
        composite: bool = True) -> bytes:
    """A Photoshop document of ``image`` (RGB or RGBA), with no layers: its flattened composite
    (RLE or raw), the version-info resource saying whether that composite is real, or no
    image data section at all."""
    channels = len(image.mode)
    header = b"8BPS" + struct.pack(">H", 2 if psb else 1) + bytes(6) + struct.pack(
        ">HIIHH", channels, image.height, image.width, 8, 3)
    version_info = struct.pack(">IB", 1, 1 if merged else 0) + bytes(8)     # 13 bytes: padded to even
    resource = b"8BIM" + struct.pack(">H", 1057) + b"\x00\x00" + struct.pack(">I", len(version_info)) + version_info + b"\x00"
    body = header + struct.pack(">I", 0) + struct.pack(">I", len(resource)) + resource
    body += struct.pack(">Q", 0) if psb else struct.pack(">I", 0)
    if not composite:
        return body
    planes = [band.tobytes() for band in image.split()]
    if not rle:
        return body + b"\x00\x00" + b"".join(planes)
    rows = [_packbits(plane[y * image.width:(y + 1) * image.width]) for plane in planes for y in range(image.height)]
    counts = b"".join(struct.pack(">I" if psb else ">H", len(row)) for row in rows)
    return body + b"\x00\x01" + counts + b"".join(rows)


def samples() -> dict[str, tuple[bytes, Image.Image, str]]:
    """name -> (file, the picture in it, format key), one per format and variant."""
    rgb, rgba = picture(), picture(mode="RGBA")
    rgba.putpixel((0, 0), (230, 40, 30, 128))
    icon = picture((64, 64))
    return {
        "tga": (encode(rgb, "TGA"), rgb, "tga"),
        "tga-rle-alpha": (encode(rgba, "TGA", compression="tga_rle"), rgba, "tga"),
        "jp2": (encode(rgb, "JPEG2000", irreversible=False), rgb, "jpeg2000"),
        "j2k": (encode(rgb, "JPEG2000", no_jp2=True, irreversible=False), rgb, "jpeg2000"),
        "ico": (encode(icon, "ICO", sizes=[(16, 16), (64, 64), (32, 32)]), icon, "ico"),
        "cur": (cur(picture((32, 32))), picture((32, 32)), "ico"),
        "ppm": (encode(rgb, "PPM"), rgb, "pnm"),
        "pgm": (encode(rgb.convert("L"), "PPM"), rgb.convert("L"), "pnm"),
        "pbm": (encode(rgb.convert("1"), "PPM"), rgb.convert("1"), "pnm"),
        "plain-ppm": (b"P3\n2 1\n255\n230 40 30  40 90 200\n",
                      Image.frombytes("RGB", (2, 1), bytes([230, 40, 30, 40, 90, 200])), "pnm"),
        "plain-pgm": (b"P2\n2 2\n255\n0 64\n128 255\n", Image.frombytes("L", (2, 2), bytes([0, 64, 128, 255])), "pnm"),
        "plain-pbm": (b"P1\n# plain bitmap\n4 1\n0 1 0 1\n", Image.frombytes("L", (4, 1), bytes([255, 0, 255, 0])), "pnm"),
        "pam": (pam(rgba), rgba, "pnm"),
        "sgi": (encode(rgb, "SGI"), rgb, "sgi"),
        "dds": (encode(rgba, "DDS"), rgba, "dds"),
        "psd": (psd(rgb), rgb, "psd"),
        "psd-raw-alpha": (psd(rgba, rle=False), rgba, "psd"),
        "psb": (psd(rgb, psb=True), rgb, "psd"),
    }
