"""SVG (resvg) and PDF (pdfium) inputs (issue 26): drawn at the size the operations need, within
the pixel limit checked before drawing, with no outside references, and hostile files refused in
our words."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from imageflow.engine import ImageError, Limits, probe, render
from tests.broken_images import ENGINE_CODES, library_words

SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="50" viewBox="0 0 100 50">'
       b'<rect width="50" height="50" fill="red"/><rect x="50" width="50" height="50" fill="blue"/></svg>')


def pdf(size=(200, 100), color=(255, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PDF", resolution=72)     # a page of size points
    return out.getvalue()


def drawn(data: bytes, operations=()) -> tuple[Image.Image, dict]:
    output = render(data, list(operations), Limits())[0]
    image = Image.open(io.BytesIO(output.data))
    image.load()
    return image, output.choices


def test_an_svg_is_sized_from_its_header_and_drawn():
    assert (probe(SVG, Limits()).format, probe(SVG, Limits()).width, probe(SVG, Limits()).height) == ("svg", 100, 50)
    image, choices = drawn(SVG)
    assert image.format == "PNG" and image.size == (100, 50) and image.mode == "RGBA"
    assert image.getpixel((10, 10)) == (255, 0, 0, 255) and image.getpixel((90, 10)) == (0, 0, 255, 255)


@pytest.mark.parametrize("width", [2000, 20])
def test_an_svg_is_drawn_at_the_size_the_resize_needs_not_enlarged(width):
    image, choices = drawn(SVG, [{"op": "resize", "width": width}])
    assert image.size == (width, width // 2) and choices["drawn_at"] == f"{width}x{width // 2}"
    # drawn, not enlarged: the edge between red and blue is sharp at any size
    assert image.getpixel((width // 2 - 1, 1))[:3] == (255, 0, 0) and image.getpixel((width // 2, 1))[:3] == (0, 0, 255)


def test_the_size_comes_from_the_viewbox_or_units():
    assert probe(b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 150"/>', Limits()).width == 300
    assert probe(b'<svg xmlns="http://www.w3.org/2000/svg" width="1in" height="72pt"/>', Limits()).height == 96


def test_a_huge_declared_svg_is_refused_before_drawing():
    huge = b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="9" height="9"/></svg>'
    with pytest.raises(ImageError) as caught:
        probe(huge, Limits())
    assert caught.value.code == "too_large" and "megapixels" in caught.value.reason


def test_a_resize_past_the_pixel_limit_is_refused_before_drawing():
    with pytest.raises(ImageError) as caught:
        render(SVG, [{"op": "resize", "width": 16000}], Limits(max_pixels=10_000_000))
    assert caught.value.code == "too_large" and caught.value.reason.startswith("drawing the SVG at 16000x8000")


def test_outside_references_and_scripts_are_removed_before_drawing(tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (10, 10), (0, 255, 0)).save(secret)
    hostile = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" '
               f'height="10"><image href="file://{secret}" width="10" height="10"/>'
               f'<image xlink:href="{secret}" width="10" height="10"/>'
               f'<image href="http://127.0.0.1:9/x.png" width="10" height="10"/>'
               f'<style>@import url("http://127.0.0.1:9/a.css"); rect {{ fill: url(file:///etc/x) }}</style>'
               f'<script>alert(1)</script><rect width="10" height="10" onload="alert(2)" fill-opacity="0"/></svg>').encode()
    image, choices = drawn(hostile)
    assert choices["svg_references_removed"] == 4
    assert image.getpixel((5, 5))[3] == 0            # the file on disk was never drawn


def test_an_entity_bomb_is_stopped():
    entities = "".join(f'<!ENTITY {c} "{f"&{p};" * 10}">' for p, c in zip("abcdefgh", "bcdefghi"))
    bomb = (f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">{entities}]>'
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&i;</text></svg>').encode()
    with pytest.raises(ImageError) as caught:
        probe(bomb, Limits())
    assert caught.value.code == "corrupt" and not library_words(caught.value.reason)


def test_a_pdf_gives_its_first_page_at_150_dpi_or_the_size_asked():
    info = probe(pdf(), Limits())
    assert (info.format, info.width, info.height) == ("pdf", 417, 209)
    image, choices = drawn(pdf(), [{"op": "resize", "width": 800}])
    assert image.size == (800, 400) and choices["pdf_page"] == "1 of 1" and choices["drawn_at"].startswith("800x")
    assert max(abs(a - b) for a, b in zip(image.getpixel((400, 200)), (255, 0, 0))) <= 2


def three_pages() -> bytes:
    """A PDF of three pages: red 200x100 pt, green 100x200 pt, blue 300x300 pt."""
    pages = [Image.new("RGB", size, color) for size, color in
             (((200, 100), (255, 0, 0)), ((100, 200), (0, 255, 0)), ((300, 300), (0, 0, 255)))]
    out = io.BytesIO()
    pages[0].save(out, "PDF", resolution=72, save_all=True, append_images=pages[1:])
    return out.getvalue()


@pytest.mark.parametrize("number, size, color", [(1, (417, 209), (255, 0, 0)), (2, (209, 417), (0, 255, 0)),
                                                 (3, (625, 625), (0, 0, 255))])
def test_the_page_operation_chooses_the_page_drawn_at_its_own_size(number, size, color):
    image, choices = drawn(three_pages(), [{"op": "page", "number": number}])
    assert abs(image.width - size[0]) <= 1 and abs(image.height - size[1]) <= 1  # pdfium rounds each side
    assert choices["pdf_page"] == f"{number} of 3"
    assert max(abs(a - b) for a, b in zip(image.getpixel((size[0] // 2, size[1] // 2)), color)) <= 2


def test_a_page_past_the_end_fails_naming_the_page_count():
    with pytest.raises(ImageError) as caught:
        drawn(three_pages(), [{"op": "page", "number": 4}])
    assert caught.value.code == "invalid" and "the PDF has 3 pages: page 4 does not exist" in caught.value.reason


def test_other_inputs_ignore_the_page():
    image, _ = drawn(SVG, [{"op": "page", "number": 2}])
    assert image.size == (100, 50)


def test_a_pdf_with_a_huge_page_is_refused_from_its_size():
    # 200 inches a side (30000 px at 150 dpi), written over the same number of bytes
    page = pdf().replace(b"/MediaBox [ 0 0 200.0 100.0 ]", b"/MediaBox [ 0 0 14400 14400 ]")
    assert b"14400" in page
    with pytest.raises(ImageError) as caught:
        probe(page, Limits())
    assert caught.value.code == "too_large"


@pytest.mark.parametrize("name", ["svg", "pdf"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_a_truncated_document_is_refused_in_our_words(name, keep):
    data = SVG if name == "svg" else pdf()
    try:
        render(data[:max(8, int(len(data) * keep))], [], Limits())
    except ImageError as exc:
        assert exc.code in ENGINE_CODES and not library_words(exc.reason)
        assert exc.code in ("corrupt", "unsupported"), exc.reason   # cut before "<svg": text
