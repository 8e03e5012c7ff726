"""A render's outcome does not depend on what its render worker did before (issue 22): a worker of a
RenderPool at the production memory cap that has rendered every operation and output format (face
crops load OpenCV, HEIC and JPEG XL their codecs) renders ``quality: "auto"`` exactly as a fresh worker
does. Under the old address-space cap the same request failed ``too_large`` after the face crops. The
cap still stops a render that really is too large, with the reason."""
from __future__ import annotations

import functools
import io
from pathlib import Path

import pytest
from PIL import Image

from imageflow.engine import ImageError, Limits
from imageflow.engine.schema import FORMATS, OPERATION_MODELS, resolve_operations
from imageflow.messages import Task
from imageflow.settings import Settings
from services.image_processor.processing import RenderPool, render_task

CAP_MB = Settings.from_env({}).processor_worker_memory_mb  # the production cap (k8s/base/config.env agrees)
PORTRAIT = Path(__file__).parents[3] / "data" / "faces" / "astronaut.jpg"
AUTO = [{"op": "resize", "width": 512}, {"op": "format", "format": "webp", "quality": "auto"}]

# Every operation of the schema at least once, and every output format, in one worker's history.
HISTORY = [
    [{"op": "resize", "width": 300, "height": 300, "fit": "cover", "gravity": "face"}],
    [{"op": "crop", "aspect": "1:1", "gravity": "face"}, {"op": "format", "format": "heic"}],
    [{"op": "crop", "x": 10, "y": 10, "width": 400, "height": 300}, {"op": "format", "format": "jxl"}],
    [{"op": "resize", "width": 400, "height": 200, "fit": "cover", "gravity": "smart"},
     {"op": "format", "format": "avif"}],
    [{"op": "rotate", "degrees": 30}, {"op": "flip", "direction": "vertical"}, {"op": "grayscale"},
     {"op": "format", "format": "tiff"}],
    [{"op": "blur", "radius": 3}, {"op": "sharpen"}, {"op": "brightness", "factor": 1.2},
     {"op": "contrast", "factor": 0.9}, {"op": "saturation", "factor": 1.5}, {"op": "format", "format": "png"}],
    [{"op": "pad", "width": 1200, "height": 1200}, {"op": "trim"},
     {"op": "watermark", "text": "ImageFlow"}, {"op": "overlay", "image": "logo.png", "tile": True},
     {"op": "format", "format": "jpeg", "quality": "auto"}],
    [{"op": "auto_orient", "enabled": False}, {"op": "metadata", "strip": False, "icc": "keep"},
     {"op": "page", "number": 1}, {"op": "frames", "mode": "first"}, {"op": "format", "format": "gif"}],
    [{"op": "resize", "width": 600}, {"op": "variants", "widths": [200, 400], "formats": ["webp", "avif", "jxl"]}],
    [{"op": "format", "format": "heic", "quality": "auto"}],
    [{"op": "format", "format": "jxl", "quality": "auto", "target": 90}],
]


def _encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, quality=92) if fmt == "JPEG" else image.save(out, fmt)
    return out.getvalue()


def _task(operations: list[dict]) -> Task:
    return Task(job_id="j", image_id="i", input_path="j/input/i-portrait.jpg", output_path="j/output/i",
                operations=resolve_operations(None, operations))


def _auto_quality(pool: RenderPool, photo: bytes):
    return pool.render(render_task, _task(AUTO), photo, Limits())[0]  # the output (then the previews)


def test_the_history_covers_every_operation_and_format():
    used = {op["op"] for operations in HISTORY for op in operations}
    formats = {op["format"] for operations in HISTORY for op in operations if op["op"] == "format"}
    formats |= {f for operations in HISTORY for op in operations if op["op"] == "variants" for f in op["formats"]}
    assert used == set(OPERATION_MODELS) and formats == set(FORMATS)


def test_quality_auto_after_every_operation_and_format_is_what_a_fresh_worker_renders():
    photo = _encoded(Image.open(PORTRAIT).convert("RGB").resize((1024, 1024)), "JPEG")
    render_with_logo = functools.partial(render_task, assets={"logo.png": _encoded(
        Image.new("RGBA", (48, 32), (255, 0, 0, 160)), "PNG")})
    fresh = RenderPool(1, memory_mb=CAP_MB)
    try:
        expected = _auto_quality(fresh, photo)
    finally:
        fresh.close()
    assert expected.choices["quality"] and expected.choices["score"] >= 80

    used = RenderPool(1, memory_mb=CAP_MB)
    try:
        for operations in HISTORY:
            rendered = used.render(render_with_logo, _task(operations), photo, Limits())
            assert rendered and all(item.data for item in rendered), operations
        faces = used.render(render_task, _task(HISTORY[0]), photo, Limits())[0].choices["faces"]
        assert faces, "the face crop found the astronaut's face (OpenCV ran in this worker)"
        after = _auto_quality(used, photo)  # failed too_large under the address-space cap
        assert used.replaced == 0, "one worker rendered the whole history"
    finally:
        used.close()
    assert (after.choices, after.width, after.height, after.data) == \
        (expected.choices, expected.width, expected.height, expected.data)


def touch_memory(task, data, limits):
    """A render that fills 2 GB page by page (a bomb past the engine's budgets, actually using it)."""
    hog = bytearray(b"\x01") * (2 << 30)
    return [len(hog)]


def test_a_render_using_more_than_the_cap_fails_too_large_and_the_pool_renders_on():
    pool = RenderPool(1, memory_mb=CAP_MB)
    try:
        with pytest.raises(ImageError) as err:
            pool.render(touch_memory, _task([{"op": "resize", "width": 32}]), b"", Limits())
        assert err.value.code == "too_large" and f"{CAP_MB} MB" in err.value.reason
        assert pool.replaced == 1
        photo = _encoded(Image.new("RGB", (64, 48), (10, 120, 200)), "PNG")
        assert pool.render(render_task, _task([{"op": "resize", "width": 32}]), photo, Limits())[0].width == 32
    finally:
        pool.close()
