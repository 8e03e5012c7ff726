"""overlay: a logo lands at the stated corner, at the stated scale and opacity, with its
transparency honoured; tiles cover the picture."""
from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops

from imageflow.engine import ImageError, Limits, render
from imageflow.engine.schema import OperationsError, resolve_operations

from engine_samples import close, encode, open_output

GREY = (128, 128, 128)


def logo(size=(20, 10), fmt="PNG") -> bytes:
    """Opaque red on its left half, fully transparent on its right half."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (size[0] // 2, size[1]), (255, 0, 0, 255)), (0, 0))
    return encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {}))


def run(operations, assets, picture=None):
    picture = picture or Image.new("RGB", (200, 100), GREY)
    outputs = render(encode(picture, "PNG"), resolve_operations(None, operations), Limits(), assets=assets)
    return outputs[0], open_output(outputs[0]).convert("RGB")


def red_box(image: Image.Image):
    """The box of the pixels that changed from the grey picture."""
    return ImageChops.difference(image, Image.new("RGB", image.size, GREY)).convert("L").point(
        lambda v: 255 if v > 40 else 0).getbbox()


@pytest.mark.parametrize("position, box", [
    ("southeast", (200 - 5 - 20, 100 - 5 - 10, 200 - 5 - 10, 100 - 5)),
    ("northwest", (5, 5, 15, 15)),
    ("northeast", (200 - 5 - 20, 5, 200 - 5 - 10, 15)),
    ("southwest", (5, 100 - 5 - 10, 15, 100 - 5)),
    ("center", (90, 45, 100, 55)),
])
def test_the_logo_lands_at_the_stated_corner_and_its_transparent_half_changes_nothing(position, box):
    output, image = run([{"op": "overlay", "image": "logo.png", "position": position, "margin": 5}],
                        {"logo.png": logo()})
    assert red_box(image) == box            # only the opaque (left) half of the logo shows
    assert close(image.getpixel((box[0] + 2, box[1] + 2)), (255, 0, 0), 2)
    assert output.choices["overlay"]["copies"] == 1


def test_scale_is_relative_to_the_shorter_side_and_the_default_margin_is_two_percent():
    _, image = run([{"op": "overlay", "image": "logo.png", "scale": 0.4}], {"logo.png": logo()})
    # longer side 0.4 * 100 = 40 px (so 20 px tall; its opaque half 20 wide), margin 2 px
    assert red_box(image) == (200 - 2 - 40, 100 - 2 - 20, 200 - 2 - 20, 100 - 2)


def test_opacity_blends_the_logo_with_the_picture():
    _, image = run([{"op": "overlay", "image": "logo.png", "position": "northwest", "margin": 0, "opacity": 0.5}],
                   {"logo.png": logo()})
    assert close(image.getpixel((2, 2)), (191, 64, 64), 3)


def test_a_webp_logo_with_alpha_is_honoured_too():
    _, image = run([{"op": "overlay", "image": "logo.webp", "position": "northwest", "margin": 0}],
                   {"logo.webp": logo(fmt="WEBP")})
    assert red_box(image) == (0, 0, 10, 10)


def test_tile_covers_the_picture_with_copies_a_margin_apart():
    output, image = run([{"op": "overlay", "image": "logo.png", "tile": True, "margin": 10}], {"logo.png": logo()})
    assert output.choices["overlay"]["copies"] == 7 * 5        # steps of 30 x 20 over 200 x 100
    for x, y in [(0, 0), (30, 0), (180, 80), (60, 40)]:
        assert close(image.getpixel((x + 2, y + 2)), (255, 0, 0), 2)
    assert close(image.getpixel((25, 5)), GREY, 2)             # the margin between copies


def test_a_logo_larger_than_the_picture_is_shrunk_to_fit():
    _, image = run([{"op": "overlay", "image": "big.png", "margin": 0}], {"big.png": logo((400, 50))},
                   picture=Image.new("RGB", (100, 100), GREY))
    assert red_box(image) == (0, 100 - 12, 50, 100)     # 400x50 fitted into 100 px: 100x12


def test_a_grey_picture_keeps_the_logos_colours():
    output, image = run([{"op": "overlay", "image": "logo.png"}], {"logo.png": logo()},
                        picture=Image.new("L", (200, 100), 128))
    assert red_box(image) is not None and max(image.getpixel(red_box(image)[:2])) == 255


def test_every_frame_of_an_animation_gets_the_logo():
    frames = [Image.new("RGB", (60, 40), GREY), Image.new("RGB", (60, 40), (0, 0, 200))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    outputs = render(data, resolve_operations(None, [{"op": "overlay", "image": "l.png", "margin": 0}]), Limits(),
                     assets={"l.png": logo()})
    image = open_output(outputs[0])
    for index in range(2):
        image.seek(index)
        assert close(image.convert("RGB").getpixel((60 - 18, 40 - 5)), (255, 0, 0), 30)


def test_a_missing_or_broken_overlay_fails_the_image_with_its_name():
    with pytest.raises(ImageError) as err:
        run([{"op": "overlay", "image": "logo.png"}], {})
    assert err.value.code == "invalid" and "logo.png" in err.value.reason
    with pytest.raises(ImageError) as err:
        run([{"op": "overlay", "image": "logo.png"}], {"logo.png": b"not an image at all"})
    assert "overlay 'logo.png' is not a usable image" in err.value.reason


def test_too_many_tiles_is_refused_with_a_reason():
    with pytest.raises(ImageError) as err:
        run([{"op": "overlay", "image": "dot.png", "tile": True, "margin": 0}],
            {"dot.png": encode(Image.new("RGBA", (1, 1), "red"), "PNG")})
    assert "copies" in err.value.reason


@pytest.mark.parametrize("bad, field", [({"image": ""}, "image"), ({"image": "ftp://x/logo.png"}, "image"),
                                        ({"image": "a.png", "opacity": 2}, "opacity"),
                                        ({"image": "a.png", "scale": 0}, "scale")])
def test_bad_overlay_parameters_name_the_field(bad, field):
    with pytest.raises(OperationsError) as err:
        resolve_operations(None, [{"op": "overlay", **bad}])
    assert err.value.details[0]["field"] == field


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_a_logo_stored_turned_is_placed_upright(fmt):
    """A logo with an orientation (PNG eXIf, the TIFF tag, which Pillow 13 applies itself on
    load) is used upright, turned exactly once, like any input."""
    upright = Image.open(io.BytesIO(logo())).convert("RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6                                    # stored turned: viewers rotate it 90 clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)   # 10 x 20, the opaque half at the bottom
    _, image = run([{"op": "overlay", "image": "l", "position": "northwest", "margin": 5}],
                   {"l": encode(stored, fmt, exif=exif.tobytes())})
    assert red_box(image) == (5, 5, 15, 15)
