"""The raster formats Pillow reads besides the web's (TGA, JPEG 2000, ICO/CUR, Netpbm, SGI, DDS,
PSD): how to know them from their bytes, and the two readers Pillow lacks, PAM (Netpbm's P7)
and PSB (Photoshop's large document format), registered as Pillow plugins.

TGA has no signature: it is known by a header whose every field has one of its few legal
values, and is tried last of all formats (a text file can never pass: its second byte would
have to be 0 or 1).
"""
from __future__ import annotations

import re
import struct

from PIL import Image, ImageFile, ImagePalette, PsdImagePlugin

from ..domain import ErrorCode
from .limits import ImageError

_NETPBM = re.compile(rb"\AP([1-7f])\s")
_JP2 = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")


def sniff(head: bytes) -> str | None:
    """The key of one of these formats (``decoding.KINDS``) from the first bytes, or None."""
    if head.startswith(_JP2):
        return "jpeg2000"
    if head[:4] == b"8BPS" and head[4:6] in (b"\x00\x01", b"\x00\x02"):
        return "psd"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(head) >= 22 and head[4:6] != b"\x00\x00":
        return "ico"
    if head[:4] == b"DDS ":
        return "dds"
    if head[:2] == b"\x01\xda" and head[2:3] in (b"\x00", b"\x01") and head[3:4] in (b"\x01", b"\x02"):
        return "sgi"
    if _NETPBM.match(head):
        return "pnm"
    if _is_tga(head):
        return "tga"
    return None


def _is_tga(head: bytes) -> bool:
    if len(head) < 18:
        return False
    id_length, colormap, kind = head[0], head[1], head[2]
    cmap_first, cmap_length, cmap_depth = struct.unpack("<HHB", head[3:8])
    width, height, depth, descriptor = struct.unpack("<HHBB", head[12:18])
    if kind not in (1, 2, 3, 9, 10, 11) or colormap not in (0, 1) or width == 0 or height == 0:
        return False
    if kind in (1, 9):      # colour-mapped: needs a map of a real depth, pixels as indexes
        return colormap == 1 and cmap_length > 0 and cmap_depth in (15, 16, 24, 32) and depth in (8, 16)
    if colormap == 1 and cmap_depth not in (15, 16, 24, 32):
        return False
    # bits 6-7 of the descriptor (interleaving) are zero in every file since TGA 2.0
    return depth in ((8, 16) if kind in (3, 11) else (15, 16, 24, 32)) and descriptor & 0xC0 == 0


# -- PSD and PSB: the flattened composite ---------------------------------------------------------

NO_COMPOSITE = ("the Photoshop file has no flattened image (it was saved without \"Maximize compatibility\"); "
                "save it again with that option on, or export it as PNG or TIFF")


def psd_composite_problem(data: bytes) -> ImageError | None:
    """Why a PSD/PSB gives no picture without its layers, or None: Photoshop says in its
    version-info resource (1057) whether it wrote a real merged image, and a file may also end
    before the image data section."""
    psb = data[4:6] == b"\x00\x02"
    try:
        pos = 26
        pos += 4 + struct.unpack(">I", data[pos:pos + 4])[0]               # colour mode data
        resources = struct.unpack(">I", data[pos:pos + 4])[0]
        start, pos = pos + 4, pos + 4 + resources
        if _has_no_merged_data(data[start:pos]):
            return ImageError(ErrorCode.UNSUPPORTED, NO_COMPOSITE)
        size = 8 if psb else 4                                              # layer and mask information
        pos += size + struct.unpack(">Q" if psb else ">I", data[pos:pos + size])[0]
    except struct.error:
        return ImageError(ErrorCode.CORRUPT, "the file is truncated: the Photoshop header ends early")
    if len(data) < pos + 2:
        return ImageError(ErrorCode.UNSUPPORTED, NO_COMPOSITE)
    return None


def _has_no_merged_data(resources: bytes) -> bool:
    pos = 0
    while pos + 12 <= len(resources) and resources[pos:pos + 4] == b"8BIM":
        ident = struct.unpack(">H", resources[pos + 4:pos + 6])[0]
        name = resources[pos + 6]
        pos += 6 + ((name + 2) & ~1)                                        # Pascal string, padded to even
        length = struct.unpack(">I", resources[pos:pos + 4])[0]
        if ident == 1057 and length >= 5:
            return resources[pos + 8] == 0                                  # hasRealMergedData
        pos += 4 + length + (length & 1)
    return False


class PsbImageFile(ImageFile.ImageFile):
    """Photoshop's large document format: PSD's layout with 8-byte section lengths and 4-byte
    row byte counts. Reads the flattened composite only (as Pillow's PSD reader does by default)."""
    format = "IF_PSB"
    format_description = "Adobe Photoshop large document"

    def _open(self) -> None:
        read = self.fp.read
        header = read(26)
        if header[:4] != b"8BPS" or header[4:6] != b"\x00\x02":
            raise SyntaxError("not a PSB file")
        channels, height, width, bits, colour = struct.unpack(">HIIHH", header[12:26])
        mode, wanted = PsdImagePlugin.MODES[(colour, bits)]
        if wanted > channels:
            raise OSError("not enough channels")
        if mode == "RGB" and channels == 4:
            mode, wanted = "RGBA", 4
        self._mode, self._size = mode, (width, height)
        data = read(struct.unpack(">I", read(4))[0])
        if mode == "P" and len(data) == 768:
            self.palette = ImagePalette.raw("RGB;L", data)
        read(struct.unpack(">I", read(4))[0])                               # image resources
        self.fp.seek(struct.unpack(">Q", read(8))[0], 1)                    # layers: not read
        compression = struct.unpack(">H", read(2))[0]
        tiles, offset = [], self.fp.tell()
        box = (0, 0, width, height)
        if compression == 0:
            for channel in range(wanted):
                tiles.append(ImageFile._Tile("raw", box, offset, mode[channel] + (";I" if mode == "CMYK" else "")))
                offset += width * height
        elif compression == 1:
            counts = ImageFile._safe_read(self.fp, channels * height * 4)
            offset = self.fp.tell()
            rows = struct.unpack(f">{channels * height}I", counts)
            for channel in range(wanted):
                tiles.append(ImageFile._Tile("packbits", box, offset, mode[channel] + (";I" if mode == "CMYK" else "")))
                offset += sum(rows[channel * height:(channel + 1) * height])
        else:
            raise OSError(f"PSB compression {compression} is not read")
        self.tile = tiles


# -- PAM (Netpbm P7) ------------------------------------------------------------------------------

# (depth, maxval) -> (mode, rawmode)
_PAM_MODES = {(1, 1): ("1", "1;8"), (1, 255): ("L", "L"), (2, 255): ("LA", "LA"), (3, 255): ("RGB", "RGB"),
              (4, 255): ("RGBA", "RGBA"), (1, 65535): ("I;16B", "I;16B"), (3, 65535): ("RGB", "RGB;16B"),
              (4, 65535): ("RGBA", "RGBA;16B")}


class PamImageFile(ImageFile.ImageFile):
    """Netpbm's PAM (P7): a text header of named fields up to ENDHDR, then the samples."""
    format = "IF_PAM"
    format_description = "Netpbm PAM"

    def _open(self) -> None:
        header = self.fp.read(1024)
        end = header.find(b"ENDHDR\n")
        if not header.startswith(b"P7\n") or end < 0:
            raise SyntaxError("not a PAM file")
        fields = {}
        for line in header[3:end].splitlines():
            parts = line.split(b"#", 1)[0].split()
            if len(parts) >= 2:
                fields[parts[0].upper()] = parts[1]
        try:
            width, height = int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
            depth, maxval = int(fields[b"DEPTH"]), int(fields[b"MAXVAL"])
        except (KeyError, ValueError):
            raise SyntaxError("PAM header lacks WIDTH, HEIGHT, DEPTH or MAXVAL") from None
        if (depth, maxval) not in _PAM_MODES:
            raise NotImplementedError(f"PAM with depth {depth} and maxval {maxval}")
        self._mode, rawmode = _PAM_MODES[(depth, maxval)]
        self._size = (width, height)
        self.tile = [ImageFile._Tile("raw", (0, 0, width, height), end + 7, (rawmode, 0, 1))]


def _register() -> None:
    Image.register_open(PsbImageFile.format, PsbImageFile, lambda prefix: prefix[:6] == b"8BPS\x00\x02")
    Image.register_open(PamImageFile.format, PamImageFile, lambda prefix: prefix[:3] == b"P7\n")


_register()
