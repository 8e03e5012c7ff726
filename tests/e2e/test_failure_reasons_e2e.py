"""Failure reasons over HTTP on the local stack (issue 22): a file refused at upload and an image
that fails in processing both say why in our words, with a stable code; a valid GIF whose frame
extends past its canvas renders."""
from __future__ import annotations

import io
import json

import requests
from PIL import Image

from imageflow.engine import ImageError, Limits, probe, render
from tests.broken_images import (ENGINE_CODES, UNSUPPORTED_IMAGES, broken_files, gif_frame_past_canvas,
                                 library_words, png_damage, tiff_damage)
from tests.e2e.conftest import wait_for_job

OPERATIONS = [{"op": "format", "format": "webp"}]


def fails_only_in_processing(files: dict[str, bytes], count: int) -> dict[str, bytes]:
    """``count`` of ``files`` whose header passes the upload check and whose render fails."""
    chosen = {}
    for name, data in files.items():
        try:
            probe(data, Limits())
        except ImageError:
            continue
        try:
            render(data, OPERATIONS, Limits())
        except ImageError:
            chosen[name] = data
            if len(chosen) == count:
                break
    return chosen


def test_refused_and_failed_images_say_why_in_our_words(stack):
    groups = broken_files()
    refused = {"icon.xpm": UNSUPPORTED_IMAGES["XPM"][0], "paint.pcx": UNSUPPORTED_IMAGES["PCX"][0],
               "scan.tiff": tiff_damage()["tiff JPEG 2000 compression"],
               "bomb.png": png_damage()["png text chunk bomb"]}
    failing = {}
    for group in ("png", "jpeg", "gif-animated", "tiff-lzw", "webp"):
        for index, data in enumerate(fails_only_in_processing(groups[group], 2).values()):
            failing[f"broken-{group}-{index}.bin"] = data
    assert len(failing) >= 6
    files = [("files", (name, data, "application/octet-stream")) for name, data in {**refused, **failing}.items()]
    files.append(("files", ("canvas.gif", gif_frame_past_canvas(), "image/gif")))
    response = requests.post(f"{stack.base_url}/api/v1/jobs", files=files,
                             data={"operations": json.dumps(OPERATIONS)}, timeout=60)
    assert response.status_code == 202, response.text
    created = response.json()

    rejected = {r["filename"]: r["error"] for r in created["rejected"]}
    assert set(rejected) == set(refused), rejected
    assert rejected["icon.xpm"] == {"code": "unsupported_image", "message": "icon.xpm: unsupported format: XPM",
                                    "details": {"error_code": "unsupported"}}
    assert rejected["paint.pcx"]["message"] == "paint.pcx: unsupported format: PCX"
    assert rejected["scan.tiff"]["message"] == "scan.tiff: unsupported TIFF compression (JPEG 2000)"
    assert rejected["scan.tiff"]["details"] == {"error_code": "unsupported_compression"}
    assert rejected["bomb.png"]["code"] == "too_large"
    for error in rejected.values():
        assert error["details"]["error_code"] in ENGINE_CODES and not library_words(error["message"]), error

    job = wait_for_job(stack.base_url, created["job_id"])
    images = {image["filename"]: image for image in job["images"]}
    for name in failing:
        image = images[name]
        assert image["status"] == "failed", image
        assert image["error_code"] in ENGINE_CODES, image
        assert image["error"] and not library_words(image["error"]), image
    canvas = images["canvas.gif"]
    assert canvas["status"] == "succeeded", canvas
    output = Image.open(io.BytesIO(requests.get(canvas["output_url"], timeout=10).content))
    assert (output.format, output.size, output.n_frames) == ("WEBP", (24, 16), 3)
