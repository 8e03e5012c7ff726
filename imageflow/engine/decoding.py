"""Decoding: sniff the real format from the bytes, check limits from the header, then
decode only what is needed (JPEG draft / shrink-on-load) into a working mode.

Every failure becomes an :class:`ImageError` with a specific reason; nothing here trusts
a file name or a declared content type.
"""
from __future__ import annotations

import functools
import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageCms, UnidentifiedImageError

from ..domain import ErrorCode
from . import camera_raw, documents, jxl, pillow_inputs, report, vips
from .failures import cut_short, decoder_error, label, megapixels, unsupported_format, unsupported_tiff_compression
from .limits import ImageError, Limits

FAST_JPEG = True
"""Decode JPEGs through simplejpeg when shrinking on load, if it is installed (the
benchmark turns this off to compare with Pillow alone)."""


@functools.cache
def _simplejpeg():
    """libjpeg-turbo's finer shrink-on-load (by N/8) through the simplejpeg wheel; imported
    on first use because it brings numpy (about 20 MB) into the process."""
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a pinned dependency; Pillow's draft is the fallback
        return None
    return simplejpeg


@functools.cache
def heic_available() -> bool:
    """HEIC/HEIF through the pillow-heif wheel, registered on the first HEIC file."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # pragma: no cover - a pinned dependency
        return False
    register_heif_opener()
    return True


# The engine enforces its own pixel limit from the header (Limits.max_pixels); Pillow's
# global warning would only be noise. Its hard error (2x its default) is still mapped.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Kind:
    """An input format the engine reads."""
    name: str
    mime: str
    ext: str
    pillow: tuple[str, ...]     # Pillow plugins allowed to open it (never "try every plugin")
    also: tuple[str, ...] = ()  # other MIME types browsers and systems give such files
    exts: tuple[str, ...] = ()  # other file name extensions


KINDS = {kind.name: kind for kind in (
    Kind("jpeg", "image/jpeg", "jpg", ("JPEG", "MPO")),
    Kind("png", "image/png", "png", ("PNG",)),
    Kind("gif", "image/gif", "gif", ("GIF",)),
    Kind("webp", "image/webp", "webp", ("WEBP",)),
    Kind("tiff", "image/tiff", "tiff", ("TIFF",)),
    Kind("bmp", "image/bmp", "bmp", ("BMP",)),
    Kind("avif", "image/avif", "avif", ("AVIF",)),
    Kind("heic", "image/heic", "heic", ("HEIF",)),
    Kind("jxl", "image/jxl", "jxl", ("JXL",)),
    Kind("tga", "image/x-tga", "tga", ("TGA",), ("image/x-targa", "image/tga"), ("icb", "vda", "vst")),
    Kind("jpeg2000", "image/jp2", "jp2", ("JPEG2000",), ("image/jpx", "image/j2k", "image/jpm"), ("j2k", "jpx", "jpf", "j2c")),
    Kind("ico", "image/x-icon", "ico", ("ICO", "CUR"), ("image/vnd.microsoft.icon",), ("cur",)),
    Kind("pnm", "image/x-portable-anymap", "pnm", ("PPM", "IF_PAM"),
         ("image/x-portable-bitmap", "image/x-portable-graymap", "image/x-portable-pixmap",
          "image/x-portable-arbitrarymap"), ("pbm", "pgm", "ppm", "pam", "pfm")),
    Kind("sgi", "image/sgi", "sgi", ("SGI",), ("image/x-sgi", "image/x-rgb"), ("rgb", "rgba", "bw")),
    Kind("dds", "image/vnd-ms.dds", "dds", ("DDS",), ("image/vnd.ms-dds", "image/x-dds")),
    Kind("raw", "image/x-adobe-dng", "dng", ("IF_RAW",),
         ("image/x-canon-cr2", "image/x-canon-cr3", "image/x-nikon-nef", "image/x-sony-arw", "image/x-fuji-raf",
          "image/x-olympus-orf", "image/x-panasonic-rw2", "image/x-pentax-pef", "image/x-samsung-srw"),
         ("cr2", "cr3", "nef", "arw", "raf", "orf", "rw2", "pef", "srw")),
    Kind("svg", "image/svg+xml", "svg", ("IF_SVG",)),
    Kind("pdf", "application/pdf", "pdf", ("IF_PDF",), ("application/x-pdf",)),
    Kind("psd", "image/vnd.adobe.photoshop", "psd", ("PSD", "IF_PSB"),
         ("image/x-photoshop", "application/x-photoshop", "application/photoshop"), ("psb",)),
)}


def accepted_types() -> list[str]:
    """Every MIME type of a format we read (the main one of each first), for GET /operations."""
    return [kind.mime for kind in KINDS.values()] + [mime for kind in KINDS.values() for mime in kind.also]


def type_for_name(filename: str) -> str | None:
    """The MIME type a file name's extension claims, for formats we read (None otherwise)."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    for kind in KINDS.values():
        if ext == kind.ext or ext in kind.exts or (kind.name == "jpeg" and ext in ("jpeg", "jpe")) \
                or (kind.name == "tiff" and ext == "tif") or (kind.name == "heic" and ext == "heif"):
            return kind.mime
    return None

_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}

# Recognisable non-images, so the user learns what they actually uploaded (images in formats
# we do not read are named by failures.unsupported_format).
_OTHER_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\x7fELF", "a program"), (b"MZ", "a Windows program"), (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg media file"),
)


def sniff(data: bytes) -> str | None:
    """The input format from the first bytes (a key of :data:`KINDS`), or None."""
    head = data[:64]
    if camera_raw.sniff(data):           # before TIFF and ISOBMFF: DNG, CR2, NEF... are TIFFs, CR3 is ISOBMFF
        return "raw"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if jxl.is_jxl(head):
        return "jxl"
    if head[4:8] == b"ftyp" and len(head) >= 16:
        size = struct.unpack(">I", head[:4])[0]
        brands = {data[i:i + 4] for i in range(16, min(max(size, 16), 256), 4)} | {head[8:12]}
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIC_BRANDS:
            return "heic"
    return documents.sniff(data[:4096]) or pillow_inputs.sniff(head)


def describe_unknown(data: bytes) -> str:
    """A sentence saying what a file in no format we read looks like."""
    unsupported = unsupported_format(data)
    if unsupported:
        return unsupported
    for magic, what in _OTHER_MAGIC:
        if data.startswith(magic):
            return f"not a supported image: the content is {what}"
    head = data[:512].lstrip()
    if head[:1] in (b"<", b"{", b"[") or _looks_like_text(data[:512]):
        return "not an image: the content is text"
    return ("not a supported image: the content matches no known format (JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF, "
            "HEIC, JPEG XL, TGA, JPEG 2000, ICO, PBM/PGM/PPM/PAM, SGI, DDS, PSD, SVG, PDF)")


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")     # a character cut at the end of the sample
    return bool(text) and all(ch.isprintable() or ch in "\r\n\t" for ch in text)


@dataclass(frozen=True)
class ProbeInfo:
    """What the header says: format key, MIME type, extension, size (as displayed, after
    EXIF orientation) and frame count."""
    format: str
    mime: str
    ext: str
    width: int
    height: int
    frames: int


# EXIF orientation -> the transpose that turns the stored pixels upright.
ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}
# the orientation whose transpose undoes that one's (each is its own inverse but the quarter turns)
_INVERSE = {6: 8, 8: 6}


def turn(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` transposed as EXIF ``orientation`` says (1 or unknown: unchanged)."""
    return image.transpose(ORIENT[orientation]) if orientation in ORIENT else image


@dataclass
class Source:
    """An opened (not yet decoded) image and what the engine learnt from its header.

    ``orientation`` is the file's orientation as a tag describing the stored pixels (1-8);
    ``upright`` says the decoder itself turns the pixels upright when it loads them, so
    :meth:`correction` knows whether the engine still has to."""
    image: Image.Image
    kind: Kind
    frames: int
    orientation: int
    data: bytes
    upright: bool = False

    def correction(self, auto_orient: bool = True) -> int:
        """The orientation transform the engine applies to the decoded pixels: the file's
        orientation when the decoder left the pixels as stored; with ``auto_orient`` off,
        the inverse of what the decoder applied, to give back the stored pixel order."""
        if auto_orient:
            return 1 if self.upright else self.orientation
        return _INVERSE.get(self.orientation, self.orientation) if self.upright else 1

    def size_after(self, correction: int) -> tuple[int, int]:
        """The size once ``correction`` is applied (``image.size`` is what the decoder gives)."""
        width, height = self.image.size
        return (height, width) if correction in (5, 6, 7, 8) else (width, height)

    @property
    def oriented_size(self) -> tuple[int, int]:
        return self.size_after(self.correction())


def open_source(data: bytes, limits: Limits) -> Source:
    """Open the header only, check the pixel and frame limits, and return the source.
    Raises :class:`ImageError` (empty, unsupported, corrupt, too_large, too_many_frames)."""
    if not data:
        raise ImageError(ErrorCode.EMPTY, "the file is empty (0 bytes)")
    name = sniff(data)
    if name is None:
        short = cut_short(data)
        raise ImageError(ErrorCode.CORRUPT, short) if short else ImageError(ErrorCode.UNSUPPORTED, describe_unknown(data))
    kind = KINDS[name]
    if name == "heic" and not heic_available():
        raise ImageError(ErrorCode.UNSUPPORTED, "HEIC images are not supported by this installation "
                                                "(pillow-heif is missing)")
    if name == "jxl":
        jxl.check(data, limits)     # its decoder decodes on open: check the size first
    if name == "tiff":
        unsupported = unsupported_tiff_compression(data)     # refused at upload, not at render
        if unsupported:
            raise unsupported
    if name == "psd":
        missing = pillow_inputs.psd_composite_problem(data)  # a layered file without its flattened image
        if missing:
            raise missing
    try:
        image = Image.open(io.BytesIO(data), formats=kind.pillow)
    except UnidentifiedImageError:
        raise ImageError(ErrorCode.CORRUPT, f"the {label(name)} header is unreadable: the file is "
                                            "truncated or corrupt") from None
    except Exception as exc:  # every decoder error is the file's fault, never the process's
        # (Pillow's own decompression-bomb stop, far above the usual limit, included)
        raise decoder_error(exc, name, data, limits, where="header") from None
    if isinstance(image, documents.ScalableImageFile):
        image.limits = limits           # checked again at the size the operations draw it
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(ErrorCode.CORRUPT, f"the {name.upper()} header gives an empty size ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageError(ErrorCode.TOO_LARGE, f"the image is {width}x{height} ({megapixels(width * height)} megapixels), "
                                              f"over the limit of {megapixels(limits.max_pixels)} megapixels")
    frames = count_frames(image, name, data, limits.max_frames)
    if frames > limits.max_frames:
        raise ImageError(ErrorCode.TOO_MANY_FRAMES, f"the image has more than {limits.max_frames} frames "
                                                    f"(the limit is {limits.max_frames})")
    orientation, upright = _orientation(image, name)
    return Source(image, kind, frames, orientation, data, upright)


def probe(data: bytes, limits: Limits) -> ProbeInfo:
    """Sniff the real format from the bytes (never the name), read the header only and
    enforce the pixel and frame limits before any pixel is decoded. Raises ImageError."""
    source = open_source(data, limits)
    width, height = source.oriented_size
    try:
        return ProbeInfo(source.kind.name, source.kind.mime, source.kind.ext, width, height, source.frames)
    finally:
        source.image.close()


def count_frames(image: Image.Image, name: str, data: bytes, cap: int) -> int:
    """Frames in the file, counting at most ``cap + 1`` so a hostile file cannot make the
    count itself expensive."""
    if name == "gif":
        return _count_gif_frames(data, cap + 1)
    if name in _SINGLE_IMAGE:
        return 1
    if name == "tiff":
        # step through the directories (none is decoded); Pillow's n_frames would walk
        # them all, and after a failed far seek it reports a wrong count
        count = 1
        try:
            while count <= cap:
                image.seek(count)
                count += 1
        except EOFError:
            pass
        except Exception as exc:
            raise decoder_error(exc, name, where="directory chain") from None
        image.seek(0)
        return count
    try:
        return int(getattr(image, "n_frames", 1) or 1)
    except Exception as exc:
        raise decoder_error(exc, name, where="frame table") from None


# Formats read as one picture: a PSD's "frames" are its layers (we read the flattened image), an
# ICO gives its largest image, a DDS its first surface.
_SINGLE_IMAGE = frozenset({"tga", "jpeg2000", "ico", "pnm", "sgi", "dds", "psd", "svg", "pdf", "raw"})
# Formats drawn at the size asked for (larger than their natural size too), see documents.py.
SCALABLE = frozenset({"svg", "pdf"})


def _count_gif_frames(data: bytes, stop: int) -> int:
    """Count GIF image descriptors by walking the block structure (no decoding)."""
    try:
        pos = 13
        flags = data[10]
        if flags & 0x80:
            pos += 3 << ((flags & 7) + 1)
        frames = 0
        while pos < len(data) and frames < stop:
            block = data[pos]
            if block == 0x3B:                      # trailer
                break
            if block == 0x21:                      # extension: label, then sub-blocks
                pos = _skip_sub_blocks(data, pos + 2)
            elif block == 0x2C:                    # image descriptor
                frames += 1
                flags = data[pos + 9]
                pos += 10
                if flags & 0x80:
                    pos += 3 << ((flags & 7) + 1)
                pos = _skip_sub_blocks(data, pos + 1)   # LZW minimum code size, then data
            else:
                break
        return max(frames, 1)
    except IndexError:
        return 1     # truncated structure: decoding reports it properly


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def _orientation(image: Image.Image, name: str) -> tuple[int, bool]:
    """(orientation, upright): the orientation (1-8) the header gives for the stored pixels,
    read from the header only (1 when absent or unreadable), and whether the decoder turns
    the pixels upright itself on load. Per decode path:

    - JPEG, PNG (eXIf), WebP: EXIF; Pillow, simplejpeg and libvips decode the stored order.
    - AVIF: Pillow reports the irot/imir transforms as the EXIF orientation and decodes the
      stored order.
    - TIFF: the Orientation tag; Pillow 13 turns the pixels on load (and reports the upright
      size from the header), earlier versions did not (see :func:`_pillow_turns_tiff`).
    - HEIC: libheif applies irot/imir and pillow-heif resets the EXIF orientation to 1:
      nothing is left to apply (or known to undo).
    - JPEG XL: the orientation is in the codestream header, which libjxl applies; an EXIF
      orientation is ignored, as the format says. A JPEG rebuilt from its reconstruction
      data, though, is the original JPEG: its pixels are stored order, its EXIF says how.
    """
    if name == "heic" or (name == "jxl" and not getattr(image, "jpeg", False)):
        return 1, True
    if name == "raw":                   # turned upright on load as the RAW's own flip tag says
        return camera_raw.FLIP_TO_ORIENTATION.get(image.flip, 1), True
    try:
        if name == "tiff":
            value = image.getexif().get(0x0112, 1)
        elif image.info.get("exif"):
            exif = Image.Exif()
            exif.load(image.info["exif"])
            value = exif.get(0x0112, 1)
        else:
            return 1, False
        value = int(value)
    except Exception:
        return 1, False
    value = value if 1 <= value <= 8 else 1
    return value, name == "tiff" and value != 1 and _pillow_turns_tiff()


@functools.cache
def _pillow_turns_tiff() -> bool:
    """Whether this Pillow applies a TIFF's Orientation tag when it loads the pixels (13 does),
    found out from a 2x1 TIFF flipped left to right rather than from the version number."""
    out = io.BytesIO()
    image = Image.new("L", (2, 1))
    image.putpixel((1, 0), 255)
    exif = Image.Exif()
    exif[0x0112] = 2
    image.save(out, "TIFF", exif=exif.tobytes())
    with Image.open(out) as tiff:
        return tiff.getpixel((0, 0)) == 255


def decode_error(exc: BaseException, source: Source, limits: Limits | None = None) -> ImageError:
    """Map an exception decoding ``source``'s pixels to a specific, readable ImageError."""
    return decoder_error(exc, source.kind.name, source.data, limits)


def load(source: Source, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode the current frame. With ``draft_size`` (the first operation is a downscale
    to that size), decode only what the resize needs: a JPEG scaled by N/8 while decoding
    (libjpeg-turbo through simplejpeg, else 1/2, 1/4 or 1/8 through Pillow's draft), then
    reduced to ``draft_size`` by libvips; a still PNG or WebP decoded by libvips straight
    to ``draft_size``. The result is never smaller than ``draft_size``, and exactly that
    size when libvips did the reduce."""
    image = source.image
    if isinstance(image, (documents.ScalableImageFile, camera_raw.RawImageFile)):
        image.wanted = draft_size       # drawn, or a RAW's preview or demosaic chosen, for this size
    if draft_size and FAST_JPEG and source.kind.name == "jpeg" and image.mode in ("RGB", "L") and _simplejpeg():
        fast = _load_scaled_jpeg(source, draft_size)
        if fast is not None:
            return fast
    if draft_size and source.frames == 1 and source.kind.name in ("png", "webp"):
        scaled = vips.decode_scaled(source.data, source.kind.name, draft_size, _working_mode(image))
        if scaled is not None:
            scaled.info = _colour_info(image)
            return scaled
    try:
        if draft_size and source.kind.name == "jpeg" and image.mode in ("RGB", "L", "CMYK"):
            image.draft(image.mode, draft_size)
        image.load()
    except Exception as exc:
        raise decode_error(exc, source) from None
    return image


def _colour_info(image: Image.Image) -> dict:
    """The decoder's info that colour handling needs (the ICC profile), nothing else."""
    return {key: value for key, value in image.info.items() if key in ("icc_profile",)}


def _working_mode(image: Image.Image) -> str:
    """The mode :func:`to_working` makes of a frame Pillow would open in ``image.mode``."""
    if image.mode == "P":
        return "RGBA" if has_alpha(image) else "RGB"
    if "transparency" in image.info:
        return "keyed"          # a colour key on L or RGB: Pillow's decode keeps its rules
    return image.mode


def _load_scaled_jpeg(source: Source, draft_size: tuple[int, int]) -> Image.Image | None:
    """Decode a YCbCr or grey JPEG at the smallest N/8 scale not below ``draft_size``
    (Pillow offers only 1/2, 1/4, 1/8: for 4000 -> 1024 px that is 2000 px instead of
    1500, a third more pixels to decode and resample), then let libvips reduce it to
    ``draft_size`` (a fraction of the cost of Pillow's Lanczos). None when simplejpeg
    declines the file; Pillow then decodes it and reports any problem in its own words."""
    image = source.image
    width, height = draft_size
    eighths = next(n for n in range(1, 9) if -(-image.width * n // 8) >= width and -(-image.height * n // 8) >= height)
    # the fast DCT and upsampling lose a little precision that the resize still to come
    # averages away; when the scaled decode is already the final size, stay exact
    further = (-(-image.width * eighths // 8), -(-image.height * eighths // 8)) != (width, height)
    grey = image.mode == "L"
    with_vips = further and vips.pyvips() is not None
    # Without libvips, RGBX (4 bytes a pixel) is Pillow's own memory layout: the decoded
    # buffer becomes the image without a copy; it is then made RGB (one cheap copy),
    # because Pillow resamples RGB as 3 bands but RGBX as 4. libvips takes RGB as it is.
    colorspace = "GRAY" if grey else ("RGB" if with_vips else "RGBX")
    try:
        pixels = _simplejpeg().decode_jpeg(source.data, colorspace=colorspace, min_width=width, min_height=height,
                                           fastdct=further, fastupsample=further)
    except Exception:
        return None
    rows, cols = pixels.shape[:2]
    if cols < width or rows < height:
        return None
    decoded = vips.reduce_array(pixels, draft_size) if with_vips else None
    if decoded is None:
        if colorspace == "RGB":
            decoded = Image.frombuffer("RGB", (cols, rows), pixels, "raw", "RGB", 0, 1)
        else:
            mode = "L" if grey else "RGBX"
            decoded = Image.frombuffer(mode, (cols, rows), pixels, "raw", mode, 0, 1)
            if mode == "RGBX":
                decoded = decoded.convert("RGB")
    decoded.info = _colour_info(image)
    return decoded


# -- colour: the working modes are L, LA, RGB, RGBA -------------------------------------------

_SRGB = ImageCms.createProfile("sRGB")
_ALPHA_MODES = ("LA", "RGBA", "La", "RGBa", "PA")


def has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def _profile_name(profile: ImageCms.ImageCmsProfile) -> str:
    try:
        return ImageCms.getProfileDescription(profile).strip() or "an unnamed ICC profile"
    except Exception:
        return "an unnamed ICC profile"


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    try:
        return "srgb" in ImageCms.getProfileDescription(profile).lower()
    except Exception:
        return False


def to_working(image: Image.Image, icc_policy: str = "srgb") -> tuple[Image.Image, bytes | None]:
    """Convert a decoded frame to L, LA, RGB or RGBA (RGBX from the fast JPEG decoder is
    left for the first resize to turn into RGB), handling its ICC profile:
    ``srgb`` converts colours to sRGB, ``keep`` keeps the profile to embed in the output,
    ``drop`` ignores it. CMYK is always converted (through its profile when present).
    Returns the image and the profile to embed (or None)."""
    icc = image.info.get("icc_profile") or None
    mode = image.mode
    if icc and (mode == "CMYK" or (icc_policy == "srgb" and mode in ("RGB", "RGBA", "RGBX"))):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if mode == "CMYK" or not _is_srgb(profile):
                if mode == "RGBX":
                    image = image.convert("RGB")
                out_mode = "RGBA" if mode == "RGBA" else "RGB"
                image = ImageCms.profileToProfile(image, profile, _SRGB, outputMode=out_mode)
                report.note("color_converted_from", _profile_name(profile))
        except Exception:   # a broken profile: fall back to the plain conversion below
            pass
        icc = None          # converted to sRGB, or already sRGB: nothing to embed
        mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale to 8 bits (a plain convert would clip at 255)
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    elif mode == "F":
        image = image.convert("L")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        image = image.convert("RGBA" if has_alpha(image) else "RGB")
    elif mode in ("La",):
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA", "RGBX"):
        image = image.convert("RGB")      # CMYK without profile, YCbCr, LAB, HSV
    return image, (icc if icc_policy == "keep" else None)
