"""The raster formats Pillow reads besides the web's (issue 26): TGA, JPEG 2000, ICO/CUR, the
Netpbm family, SGI, DDS, PSD/PSB. Each is sniffed from its bytes, sized from its header, decoded
to the picture it holds, and a truncated or hostile one is refused in our words."""
from __future__ import annotations

import io
import struct

import pytest
from PIL import Image, ImageChops

from imageflow.engine import ImageError, Limits, decoding, probe, render
from imageflow.engine.pillow_inputs import NO_COMPOSITE
from tests.broken_images import ENGINE_CODES, library_words
from tests.format_samples import encode, picture, psd, samples

SAMPLES = samples()


def as_png(data: bytes, operations=()) -> Image.Image:
    outputs = render(data, [*operations, {"op": "format", "format": "png"}], Limits())
    image = Image.open(io.BytesIO(outputs[0].data))
    image.load()
    return image


def same_pixels(got: Image.Image, want: Image.Image) -> bool:
    want = want.convert("L") if want.mode == "1" else want
    return got.mode == want.mode and ImageChops.difference(got, want).getbbox() is None


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_format_is_sniffed_sized_and_decoded_to_its_picture(name):
    data, picture_in_it, key = SAMPLES[name]
    info = probe(data, Limits())
    assert (info.format, info.width, info.height, info.frames) == (key, *picture_in_it.size, 1)
    assert same_pixels(as_png(data), picture_in_it)


@pytest.mark.parametrize("name", ["tga", "jp2", "ico", "ppm", "pam", "sgi", "dds", "psd", "psb"])
def test_the_output_keeps_a_format_people_can_view(name):
    data, _, key = SAMPLES[name]
    output = render(data, [{"op": "resize", "width": 16}], Limits())[0]
    assert output.format == ("jpeg" if key == "jpeg2000" else "png")
    assert output.width == 16


def test_an_icon_gives_its_largest_image():
    data, _, _ = SAMPLES["ico"]
    assert probe(data, Limits()).width == 64


@pytest.mark.parametrize("name", ["tga", "jp2", "ico", "ppm", "pam", "sgi", "dds", "psd", "psb"])
def test_the_pixel_limit_is_checked_from_the_header(name):
    data, picture_in_it, _ = SAMPLES[name]
    with pytest.raises(ImageError) as caught:
        probe(data, Limits(max_pixels=picture_in_it.width * picture_in_it.height - 1))
    assert caught.value.code == "too_large"


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_file_is_refused_or_rendered_in_our_words(name, keep):
    data = SAMPLES[name][0]
    cut = data[:int(len(data) * keep)]
    try:
        probe(cut, Limits())
        render(cut, [{"op": "format", "format": "png"}], Limits())
    except ImageError as exc:
        assert exc.code in ENGINE_CODES and not library_words(exc.reason), (name, exc.reason)
        assert exc.code in ("corrupt", "unsupported"), (name, exc.code, exc.reason)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_file_cut_inside_its_header_is_not_called_text(name):
    data = SAMPLES[name][0]
    with pytest.raises(ImageError) as caught:
        render(data[:14], [], Limits())
    assert "text" not in caught.value.reason or name.startswith("plain"), caught.value.reason
    assert not library_words(caught.value.reason)


def test_a_photoshop_file_without_its_flattened_image_says_so():
    for data in (psd(picture(), merged=False), psd(picture(), composite=False), psd(picture(), psb=True, merged=False)):
        with pytest.raises(ImageError) as caught:
            probe(data, Limits())
        assert (caught.value.code, caught.value.reason) == ("unsupported", NO_COMPOSITE)


def test_a_photoshop_document_with_layers_is_one_picture_not_an_animation():
    data, _, _ = SAMPLES["psd"]
    assert probe(data, Limits(max_frames=1)).frames == 1


def test_a_dds_in_a_pixel_format_pillow_does_not_decode_names_it():
    header = bytearray(SAMPLES["dds"][0][:128])
    header[80:84] = struct.pack("<I", 4)          # DDPF_FOURCC
    header[84:88] = b"ZZZZ"
    with pytest.raises(ImageError) as caught:
        render(bytes(header) + bytes(48 * 32 * 4), [], Limits())
    assert caught.value.code in ("unsupported_compression", "corrupt")
    assert not library_words(caught.value.reason)


def test_text_and_other_files_are_not_taken_for_targa():
    for data in (b"hello world, this is text\n" * 4, bytes(64), b"\x00\x01\x09" + bytes(40)):
        assert decoding.sniff(data) is None


def test_colour_pfm_is_still_named_unsupported():
    with pytest.raises(ImageError) as caught:
        probe(b"PF\n1 1\n-1.0\n" + bytes(12), Limits())
    assert caught.value.reason == "unsupported format: PFM"


def test_every_format_is_in_the_accepted_types_with_its_extensions():
    types = decoding.accepted_types()
    for key in ("tga", "jpeg2000", "ico", "pnm", "sgi", "dds", "psd"):
        assert decoding.KINDS[key].mime in types
    assert decoding.type_for_name("shot.PSB") == "image/vnd.adobe.photoshop"
    assert decoding.type_for_name("icon.cur") == "image/x-icon"
    assert decoding.type_for_name("scan.pgm") == "image/x-portable-anymap"
    assert decoding.type_for_name("notes.txt") is None

