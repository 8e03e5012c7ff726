"""Camera RAW through rawpy (issue 26). A valid RAW cannot be made here (LibRaw wants a real
camera's file), so the choice between the embedded preview and a demosaic, and the turn by the
RAW's own flip tag, are tested on a fake rawpy object; sniffing and a damaged DNG go through
the real engine and LibRaw."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy
import pytest
from PIL import Image

from imageflow.engine import ImageError, Limits, camera_raw, decoding, probe, render
from tests.broken_images import library_words


class FakeRaw:
    """What rawpy.RawPy gives: sizes (with LibRaw's flip), extract_thumb, postprocess."""

    def __init__(self, width, height, flip=0, preview=None):
        self.sizes = SimpleNamespace(width=width, height=height, flip=flip)
        self.preview = preview
        self.postprocessed = None

    def extract_thumb(self):
        if self.preview is None:
            raise camera_raw._rawpy().LibRawNoThumbnailError()
        out = io.BytesIO()
        self.preview.save(out, "JPEG", quality=95)
        return SimpleNamespace(format=camera_raw._rawpy().ThumbFormat.JPEG, data=out.getvalue())

    def postprocess(self, **params):
        self.postprocessed = params
        width, height = camera_raw.upright_size(self.sizes.width, self.sizes.height, self.sizes.flip)
        if params["half_size"]:
            width, height = width // 2, height // 2
        return numpy.full((height, width, 3), 128, dtype=numpy.uint8)


def preview(size=(1600, 1200)):
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1] // 2))     # red at the top left
    return image


def test_the_preview_is_used_when_it_is_at_least_the_output_size():
    raw = FakeRaw(6000, 4000, preview=preview())
    image = camera_raw.decode(raw, (1024, 683))
    assert image.size == (1600, 1200) and raw.postprocessed is None


def test_a_demosaic_with_the_camera_white_balance_in_srgb_when_the_preview_is_too_small():
    raw = FakeRaw(6000, 4000, preview=preview((160, 120)))
    image = camera_raw.decode(raw, (2048, 1365))
    rawpy = camera_raw._rawpy()
    assert raw.postprocessed == {"use_camera_wb": True, "output_color": rawpy.ColorSpace.sRGB, "output_bps": 8,
                                 "half_size": True}
    assert image.size == (3000, 2000)
    full = FakeRaw(6000, 4000)
    assert camera_raw.decode(full, None).size == (6000, 4000) and full.postprocessed["half_size"] is False


@pytest.mark.parametrize("flip, corner", [(0, (0, 0)), (6, (1199, 0)), (5, (0, 1599)), (3, (1599, 1199))])
def test_the_preview_is_turned_as_the_raws_own_flip_tag_says(flip, corner):
    raw = FakeRaw(6000, 4000, flip=flip, preview=preview())
    image = camera_raw.decode(raw, (100, 100))
    assert image.getpixel(corner)[0] > 200 and image.getpixel(corner)[2] < 60


def dng_header(extra=b"") -> bytes:
    """A little-endian TIFF whose first directory holds DNGVersion (50706) and nothing else usable."""
    entries = [(50706, 1, 4, 0x00000401)]
    ifd = len(entries).to_bytes(2, "little") + b"".join(
        tag.to_bytes(2, "little") + kind.to_bytes(2, "little") + count.to_bytes(4, "little") + value.to_bytes(4, "little")
        for tag, kind, count, value in entries) + bytes(4)
    return b"II*\x00" + (8).to_bytes(4, "little") + ifd + extra


def test_raws_are_sniffed_before_tiff_and_isobmff():
    assert decoding.sniff(dng_header()) == "raw"
    assert decoding.sniff(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(40)) == "raw"
    assert decoding.sniff(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01" + bytes(40)) == "raw"
    assert decoding.sniff(b"FUJIFILMCCD-RAW 0201" + bytes(40)) == "raw"
    plain = io.BytesIO()
    Image.new("RGB", (8, 8)).save(plain, "TIFF")
    assert decoding.sniff(plain.getvalue()) == "tiff"
    assert decoding.type_for_name("IMG_0001.CR2") == "image/x-adobe-dng"


@pytest.mark.parametrize("data", [dng_header(bytes(200)), dng_header()[:12], b"FUJIFILMCCD-RAW 0201" + bytes(100)])
def test_a_damaged_raw_is_refused_in_our_words(data):
    with pytest.raises(ImageError) as caught:
        probe(data, Limits())
        render(data, [], Limits())
    assert caught.value.code == "corrupt" and not library_words(caught.value.reason)
