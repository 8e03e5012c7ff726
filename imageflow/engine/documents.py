"""Inputs drawn at the size the operations need rather than decoded: SVG (resvg) and PDF
(pdfium), as Pillow plugins whose ``load`` rasterises.

The header gives the picture's natural size (an SVG's width/height or viewBox; a PDF page's
size at :data:`PDF_DPI`), which the engine checks against the pixel limit like any header.
``decoding.load`` then sets :attr:`ScalableImageFile.wanted` to the size the first resize
needs, and the drawing is made at that size (a logo resized to 2000 px is drawn at 2000 px,
not enlarged from 100), checked against the pixel limit BEFORE anything is drawn.

SVG is drawn from a cleaned copy: no scripts, no event attributes, no foreignObject, and no
reference outside the file (an href that is not ``#id`` or an embedded raster image is
removed, as is a stylesheet ``@import`` or ``url()`` to anything but ``#id``): resvg never
reads a file or the network. Text uses the system's fonts only.
"""
from __future__ import annotations

import functools
import io
import logging
import math
import re
import threading
import xml.etree.ElementTree as ET

from PIL import Image, ImageFile

from ..domain import ErrorCode
from . import report
from .failures import megapixels
from .limits import ImageError, Limits

log = logging.getLogger(__name__)

PDF_DPI = 150
"""A PDF page's natural size in pixels (a Letter page is 1275x1650) when no resize says otherwise."""

SVG_DEFAULT_SIZE = (100, 100)   # what resvg uses for an SVG with neither width, height nor viewBox


def sniff(head: bytes) -> str | None:
    if head.startswith(b"%PDF-"):
        return "pdf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] == b"<" and b"<svg" in head[:4096].lower():
        return "svg"
    return None


class ScalableImageFile(ImageFile.ImageFile):
    """A picture drawn on ``load`` at :attr:`wanted` (or its natural size), within :attr:`limits`."""
    wanted: tuple[int, int] | None = None
    limits: Limits = Limits()

    def draw_size(self) -> tuple[int, int]:
        """The natural size scaled uniformly so that it covers ``wanted`` (the resize then makes it exact)."""
        width, height = self.size
        if not self.wanted:
            return width, height
        scale = max(self.wanted[0] / width, self.wanted[1] / height)
        return max(self.wanted[0], round(width * scale)), max(self.wanted[1], round(height * scale))

    def load(self):
        if self._im is None:
            width, height = self.draw_size()
            if width * height > self.limits.max_pixels:
                raise ImageError(ErrorCode.TOO_LARGE, f"drawing the {self.format_label} at {width}x{height} "
                                                      f"({megapixels(width * height)} megapixels) is over the limit of "
                                                      f"{megapixels(self.limits.max_pixels)} megapixels")
            image = self.draw(width, height)
            self.im, self._mode, self._size = image.im, image.mode, image.size
        return Image.Image.load(self)

    def load_seek(self, pos: int) -> None:     # no incremental decoding: load() draws it all
        pass

    format_label = "image"

    def draw(self, width: int, height: int) -> Image.Image:
        raise NotImplementedError


# -- SVG ----------------------------------------------------------------------------------------

_UNITS = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0,
          "em": 16.0, "ex": 8.0}
_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z%]*)\s*\Z")
_SAFE_DATA = re.compile(r"\s*data:image/(png|jpeg|jpg|gif|webp)[;,]", re.I)
_XLINK = "{http://www.w3.org/1999/xlink}href"


def _length(value: str | None) -> float | None:
    found = _LENGTH.match(value or "")
    if not found or found.group(2) not in _UNITS:
        return None         # absent, a percentage, or not a length: the viewBox decides
    return float(found.group(1)) * _UNITS[found.group(2)]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def clean_svg(data: bytes) -> tuple[bytes, tuple[int, int], int]:
    """(the SVG without scripts or outside references, its natural size, how many references
    were removed). Raises ImageError when it is no well-formed SVG."""
    try:
        # expat (2.4+) stops entity expansion bombs; external entities are never fetched
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        log.info("SVG parse error: %s", exc)
        reason = "the file is truncated: the SVG ends early" if "no element found" in str(exc) or \
            "unclosed token" in str(exc) else "the SVG is not well-formed XML"
        raise ImageError(ErrorCode.CORRUPT, reason) from None
    if _local(root.tag) != "svg":
        raise ImageError(ErrorCode.UNSUPPORTED, "not a supported image: the XML document is not an SVG")
    removed = 0
    for parent in list(root.iter()):
        for child in list(parent):
            if _local(child.tag) in ("script", "foreignObject"):
                parent.remove(child)
                removed += _local(child.tag) == "foreignObject"
        for name in list(parent.attrib):
            value = parent.attrib[name]
            if _local(name).lower().startswith("on"):
                del parent.attrib[name]
            elif name in ("href", _XLINK) and not (value.strip().startswith("#") or _SAFE_DATA.match(value)):
                del parent.attrib[name]
                removed += 1
            elif "url(" in value and re.search(r"url\(\s*['\"]?\s*[^#'\"\s)]", value):
                del parent.attrib[name]
                removed += 1
        if _local(parent.tag) == "style" and parent.text:
            text = re.sub(r"@import[^;]*;?", "", parent.text)
            text = re.sub(r"url\(\s*['\"]?\s*[^#'\"\s)][^)]*\)", "none", text)
            removed += parent.text != text
            parent.text = text
    size = _svg_size(root)
    return ET.tostring(root), size, removed


def _svg_size(root: ET.Element) -> tuple[int, int]:
    width, height = _length(root.get("width")), _length(root.get("height"))
    box = None
    try:
        numbers = [float(n) for n in re.split(r"[\s,]+", (root.get("viewBox") or "").strip()) if n]
        if len(numbers) == 4 and numbers[2] > 0 and numbers[3] > 0:
            box = numbers[2], numbers[3]
    except ValueError:
        pass
    if width is None and height is None:
        width, height = box or SVG_DEFAULT_SIZE
    elif width is None:
        width = height * box[0] / box[1] if box else SVG_DEFAULT_SIZE[0]
    elif height is None:
        height = width * box[1] / box[0] if box else SVG_DEFAULT_SIZE[1]
    if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
        raise ImageError(ErrorCode.CORRUPT, "the SVG declares an empty or invalid size")
    return max(1, math.ceil(width - 1e-6)), max(1, math.ceil(height - 1e-6))


class SvgImageFile(ScalableImageFile):
    format = "IF_SVG"
    format_description = "Scalable Vector Graphics"
    format_label = "SVG"

    def _open(self) -> None:
        data = self.fp.read()
        if sniff(data[:4096]) != "svg":
            raise SyntaxError("not an SVG")
        self._svg, self._size, self._removed = clean_svg(data)
        self._mode = "RGBA"

    def draw(self, width: int, height: int) -> Image.Image:
        resvg = _resvg()
        if self._removed:
            report.note("svg_references_removed", self._removed)
        try:
            png = resvg.svg_to_bytes(svg_string=self._svg.decode("utf-8"), width=width, height=height,
                                     resources_dir=None, skip_system_fonts=False)
            image = Image.open(io.BytesIO(bytes(png)), formats=["PNG"])
            image.load()
        except Exception as exc:
            log.info("resvg failed: %s: %s", type(exc).__name__, exc)
            raise ImageError(ErrorCode.CORRUPT, "the SVG cannot be drawn: it has no valid content") from None
        report.note("drawn_at", f"{image.width}x{image.height}")
        return image.convert("RGBA")


@functools.cache
def _resvg():
    import resvg_py
    return resvg_py


# -- PDF ----------------------------------------------------------------------------------------

_PDFIUM_LOCK = threading.Lock()     # pdfium is not thread-safe; the API's probe runs in threads


@functools.cache
def _pdfium():
    import pypdfium2
    return pypdfium2


class PdfImageFile(ScalableImageFile):
    """A page of a PDF (the first unless :meth:`select_page` says otherwise); its size at :data:`PDF_DPI`."""
    format = "IF_PDF"
    format_description = "PDF document"
    format_label = "PDF page"

    def _open(self) -> None:
        data = self.fp.read()
        if not data.startswith(b"%PDF-"):
            raise SyntaxError("not a PDF")
        pdfium = _pdfium()
        with _PDFIUM_LOCK:
            try:
                document = pdfium.PdfDocument(data)
            except pdfium.PdfiumError as exc:
                log.info("pdfium cannot open the PDF: %s", exc)
                if "password" in str(exc).lower():
                    raise ImageError(ErrorCode.UNSUPPORTED, "the PDF is password-protected") from None
                raise ImageError(ErrorCode.CORRUPT, "the PDF is damaged or incomplete: its pages cannot be read") from None
            try:
                pages = len(document)
                if pages < 1:
                    raise ImageError(ErrorCode.CORRUPT, "the PDF has no pages")
                page = document[0]
                points = page.get_size()
                page.close()
            except ImageError:
                document.close()
                raise
            except Exception as exc:
                document.close()
                log.info("pdfium cannot read the first page: %s", exc)
                raise ImageError(ErrorCode.CORRUPT,
                                 "the PDF is damaged or incomplete: its first page cannot be read") from None
        self._document, self._pages, self._page = document, pages, 0
        self._set_points(points)

    def _set_points(self, points: tuple[float, float]) -> None:
        self._points = points
        width, height = (max(1, math.ceil(side * PDF_DPI / 72 - 1e-6)) for side in points)
        self._size, self._mode = (width, height), "RGB"

    def select_page(self, number: int) -> None:
        """Draw page ``number`` (1-based) instead of the first; its own size from then on."""
        if number == self._page + 1:
            return
        if number > self._pages:
            raise ImageError(ErrorCode.INVALID, f"the PDF has {self._pages} page{'s' * (self._pages != 1)}: "
                                        f"page {number} does not exist (operation page)")
        with _PDFIUM_LOCK:
            try:
                page = self._document[number - 1]
                points = page.get_size()
                page.close()
            except Exception as exc:
                log.info("pdfium cannot read page %d: %s", number, exc)
                raise ImageError(ErrorCode.CORRUPT, f"the PDF is damaged: its page {number} cannot be read") from None
        self._page = number - 1
        self._set_points(points)
        if self._size[0] * self._size[1] > self.limits.max_pixels:
            raise ImageError(ErrorCode.TOO_LARGE, f"page {number} of the PDF is {self._size[0]}x{self._size[1]} "
                                          f"({megapixels(self._size[0] * self._size[1])} megapixels), over the limit "
                                          f"of {megapixels(self.limits.max_pixels)} megapixels")

    def draw(self, width: int, height: int) -> Image.Image:
        scale = width / self._points[0]
        report.note("pdf_page", f"{self._page + 1} of {self._pages}")
        with _PDFIUM_LOCK:
            try:
                page = self._document[self._page]
                bitmap = page.render(scale=scale, draw_annots=True, may_draw_forms=False)
                image = bitmap.to_pil().convert("RGB")
                page.close()
            except Exception as exc:
                log.info("pdfium cannot draw the page: %s: %s", type(exc).__name__, exc)
                raise ImageError(ErrorCode.CORRUPT, "the PDF page cannot be drawn: the file is damaged") from None
        report.note("drawn_at", f"{image.width}x{image.height}")
        return image

    def close(self) -> None:
        document = getattr(self, "_document", None)
        if document is not None:
            with _PDFIUM_LOCK:
                document.close()
            self._document = None
        super().close()


def _register() -> None:
    # Pillow shows a plugin 16 bytes, often just "<?xml ...": _open sniffs the whole start
    Image.register_open(SvgImageFile.format, SvgImageFile,
                        lambda prefix: prefix.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<")
    Image.register_open(PdfImageFile.format, PdfImageFile, lambda prefix: prefix.startswith(b"%PDF-"))


_register()
