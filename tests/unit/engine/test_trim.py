"""trim: the box kept is the picture drawn inside a known border."""
from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from imageflow.engine import Limits, render
from imageflow.engine.schema import OperationsError, resolve_operations

from engine_samples import encode, gradient, open_output


def framed(border=(255, 255, 255), box=(13, 7, 45, 31), size=(60, 40), mode="RGB") -> Image.Image:
    """A gradient picture at ``box`` inside a uniform border."""
    image = Image.new(mode, size, border)
    inner = gradient((box[2] - box[0], box[3] - box[1])).convert(mode)
    image.paste(inner, box[:2])
    return image


def run(data: bytes, operations):
    outputs = render(data, resolve_operations(None, operations), Limits())
    assert len(outputs) == 1
    return outputs[0], open_output(outputs[0])


def test_trim_keeps_exactly_the_picture_inside_a_white_border():
    output, image = run(encode(framed(), "PNG"), [{"op": "trim"}])
    assert image.size == (32, 24)
    assert output.choices["trim"] == [13, 7, 45, 31]
    assert image.getpixel((0, 0)) == framed().getpixel((13, 7))


def test_trim_auto_takes_the_corner_colour_and_a_named_colour_works_too():
    dark = encode(framed(border=(20, 30, 40)), "PNG")
    assert run(dark, [{"op": "trim"}])[1].size == (32, 24)
    assert run(dark, [{"op": "trim", "background": "rgb(20,30,40)"}])[1].size == (32, 24)
    # a background that is not the border's colour finds nothing uniform to cut
    assert run(dark, [{"op": "trim", "background": "white", "threshold": 5}])[1].size == (60, 40)


def test_threshold_lets_jpeg_noise_in_the_border_go():
    noisy = encode(framed(border=(250, 250, 250)), "JPEG", quality=60)
    _, strict = run(noisy, [{"op": "trim", "threshold": 0}])
    output, tolerant = run(noisy, [{"op": "trim", "threshold": 30}])
    assert strict.size[0] > tolerant.size[0]
    # the picture is kept whole; at most the ringing of its 8 px JPEG blocks comes along
    left, top, right, bottom = output.choices["trim"]
    assert 13 - 8 <= left <= 13 and 7 - 8 <= top <= 7 and 45 <= right <= 45 + 8 and 31 <= bottom <= 31 + 8


def test_a_transparent_border_is_trimmed_whatever_its_hidden_colour():
    image = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((10, 20, 29, 39), fill=(255, 0, 0, 255))
    image.putpixel((0, 49), (255, 255, 255, 0))        # invisible, other colour channels
    output, trimmed = run(encode(image, "PNG"), [{"op": "trim"}])
    assert output.choices["trim"] == [10, 20, 30, 40]
    assert trimmed.size == (20, 20) and trimmed.getpixel((10, 10)) == (255, 0, 0, 255)


def test_an_image_that_is_all_border_is_kept_whole():
    output, image = run(encode(Image.new("RGB", (30, 20), "white"), "PNG"), [{"op": "trim"}])
    assert image.size == (30, 20)
    assert output.choices["trim"] is None


def test_every_frame_of_an_animation_is_cut_to_the_first_frames_box():
    frames = [framed(), framed(box=(5, 5, 55, 35))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    output, image = run(data, [{"op": "trim"}])
    assert image.n_frames == 2 and image.size == (32, 24)
    assert output.choices["trim"] == [13, 7, 45, 31]


@pytest.mark.parametrize("bad, field", [({"threshold": 300}, "threshold"), ({"background": "nope"}, "background")])
def test_bad_trim_parameters_name_the_field(bad, field):
    with pytest.raises(OperationsError) as err:
        resolve_operations(None, [{"op": "trim", **bad}])
    assert err.value.details[0]["field"].startswith(field)
