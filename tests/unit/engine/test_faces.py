"""gravity "face": the crop window contains a face box marked by hand on a public-domain
portrait (tests/data/faces), where centre or smart gravity would miss it; without faces it
is smart gravity."""
from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from imageflow.engine import Limits, render
from imageflow.engine.schema import resolve_operations

from engine_samples import encode

PORTRAIT = Image.open(Path(__file__).parents[2] / "data" / "faces" / "astronaut.jpg").convert("RGB")
FACE = (92, 43, 133, 80)        # marked by hand, see tests/data/faces/README.md


def noise(size, block=8) -> Image.Image:
    """Busy texture of random blocks (coarse enough to stay busy on smart gravity's small
    copy): what smart gravity, the most detail, goes for."""
    rnd = random.Random(3)
    small = (-(-size[0] // block), -(-size[1] // block))
    blocks = Image.frombytes("RGB", small, rnd.randbytes(small[0] * small[1] * 3))
    return blocks.resize((small[0] * block, small[1] * block), Image.Resampling.NEAREST).crop((0, 0, *size))


def canvas(size, at) -> Image.Image:
    """The portrait at ``at`` on flat grey, with busy texture in the first 300 px."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste(noise((min(300, size[0]), min(300, size[1]))), (0, 0))
    image.paste(PORTRAIT, at)
    return image


def contains(window, box) -> bool:
    return window[0] <= box[0] and window[1] <= box[1] and window[2] >= box[2] and window[3] >= box[3]


def shifted(box, at):
    return (box[0] + at[0], box[1] + at[1], box[2] + at[0], box[3] + at[1])


def run(image: Image.Image, operations):
    [output] = render(encode(image, "PNG"), resolve_operations(None, operations), Limits())
    return output, Image.open(io.BytesIO(output.data)).convert("RGB")


def locate(picture: Image.Image, part: Image.Image) -> tuple[int, int]:
    """Where ``part`` (an exact crop, PNG round trip) was cut from ``picture``: rows compared."""
    first = part.crop((0, 0, part.width, 1)).tobytes()
    for y in range(picture.height - part.height + 1):
        row = picture.crop((0, y, picture.width, y + 1)).tobytes()
        index = row.find(first)
        while index != -1:
            if index % 3 == 0 and picture.crop((index // 3, y, index // 3 + part.width, y + part.height)) \
                    .tobytes() == part.tobytes():
                return index // 3, y
            index = row.find(first, index + 1)
    raise AssertionError("the output is not a crop of the input")


def test_a_square_crop_of_a_wide_picture_contains_the_face():
    at = (700, 0)
    picture = canvas((1000, 256), at)
    output, image = run(picture, [{"op": "crop", "aspect": "1:1", "gravity": "face"}])
    x, y = locate(picture, image)
    window = (x, y, x + image.width, y + image.height)
    assert contains(window, shifted(FACE, at)), window
    assert output.choices["gravity"] == "face"
    [found] = output.choices["faces"]
    found_box = (found["x"], found["y"], found["x"] + found["width"], found["y"] + found["height"])
    overlap_w = min(found_box[2], shifted(FACE, at)[2]) - max(found_box[0], shifted(FACE, at)[0])
    assert overlap_w > 0.8 * (FACE[2] - FACE[0])              # the detector found that face
    # a fixed gravity misses it on this picture: the test can tell face gravity from those
    for gravity in ("center", "west"):
        _, other = run(picture, [{"op": "crop", "aspect": "1:1", "gravity": gravity}])
        ox, oy = locate(picture, other)
        assert not contains((ox, oy, ox + other.width, oy + other.height), shifted(FACE, at)), gravity


def test_a_cover_resize_of_a_tall_picture_keeps_the_face():
    at = (0, 640)
    picture = canvas((256, 1024), at)
    output, image = run(picture, [{"op": "resize", "width": 256, "height": 128, "fit": "cover", "gravity": "face"}])
    assert image.size == (256, 128)
    x, y = locate(picture, image)            # no scaling here: the window is cut as it is
    assert contains((x, y, x + 256, y + 128), shifted(FACE, at))
    assert output.choices["gravity"] == "face"


def test_a_scaled_cover_resize_still_centres_on_the_face():
    at = (0, 640)
    picture = canvas((256, 1024), at)
    output, image = run(picture, [{"op": "resize", "width": 64, "height": 64, "fit": "cover", "gravity": "face"}])
    assert image.size == (64, 64)
    [found] = output.choices["faces"]
    face_centre_y = found["y"] + found["height"] / 2
    assert abs(face_centre_y - (at[1] + (FACE[1] + FACE[3]) / 2)) < 20


def test_without_a_face_it_is_smart_gravity():
    picture = Image.new("RGB", (600, 200), (200, 200, 200))
    picture.paste(noise((120, 120)), (440, 40))            # the only detail, on the right
    face_output, face_image = run(picture, [{"op": "crop", "aspect": "1:1", "gravity": "face"}])
    _, smart_image = run(picture, [{"op": "crop", "aspect": "1:1", "gravity": "smart"}])
    assert face_image.tobytes() == smart_image.tobytes()
    assert face_output.choices["faces"] == [] and face_output.choices["gravity"] == "smart (no face found)"


@pytest.mark.parametrize("size", [(10, 30), (40, 20)])
def test_tiny_images_have_no_faces_and_do_not_fail(size):
    output, image = run(noise(size), [{"op": "crop", "aspect": "1:1", "gravity": "face"}])
    assert image.width == image.height == min(size)
