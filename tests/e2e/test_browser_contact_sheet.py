"""The job page's contact sheet and lightbox in a real browser (issue 25): a named job of
photo-like 1600x1200 JPEGs, looked through as a photographer would, with the keyboard
(frontend/e2e/contact_sheet.mjs does the pressing; Chromium counts the requests).

Needs what tests/e2e/browser_support.py says (Chromium, frontend packages and build)."""
from __future__ import annotations

import pytest

from devtools.browser_scripts import ARTIFACTS, all_images, finished_named_job, landscape, run_script
from devtools.stack import Stack
from tests.e2e.browser_support import require_browser

pytestmark = pytest.mark.browser

NAME = "Harbour, spring shoot"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_browser()
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("browser-sheet") / "data",
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "PROCESSOR_CONCURRENCY": "2",
                                     "RATE_LIMIT_PER_SECOND": "0"})
    stack.start()
    yield stack
    stack.stop()


def test_keyboard_opens_the_lightbox_on_previews_and_only_zoom_loads_the_full_result(stack, tmp_path):
    # in an order that is not the names' (the sheet sorts them)
    photos = [landscape(tmp_path / f"IMG_{n:04d}.jpg", n, (1600, 1200)) for n in (12, 3, 7, 1, 10, 2, 9, 4, 11, 5, 8, 6, 13, 14)]
    job_id = finished_named_job(stack.base_url, photos, NAME, [{"op": "format", "format": "webp"}])
    images = {image["filename"]: image for image in all_images(stack.base_url, job_id)}
    assert all(image["status"] == "succeeded" for image in images.values())

    result = run_script("contact_sheet.mjs", "--base-url", stack.base_url, "--job-id", job_id, "--name", NAME,
                        "--artifacts", str(ARTIFACTS), timeout=600)

    # 8-10 a row on a 1440 px desktop, in name order
    assert 8 <= result["columns"] <= 10
    assert result["names"] == sorted(p.name for p in photos)[:len(result["names"])]
    # right then down from the first tile, Enter: the photo below the second
    assert result["opened"] == result["names"][1 + result["columns"]]
    opened = images[result["opened"]]
    # the sheet and the opened lightbox asked for previews only...
    assert result["full_before_zoom"] == []
    assert all("/preview" in src for src in result["opened_sources"])
    # ...and the zoom for the full-size result of that one photo, drawn at its 1600 px
    assert result["full_after_zoom"] == [{"image_id": opened["image_id"], "kind": "output"}]
    assert result["zoomed_natural"]["width"] == 1600
