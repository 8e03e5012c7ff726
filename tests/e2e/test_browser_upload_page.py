"""The upload page's import by address, API key, estimate and overlay logo (issues 16, 17) in a
real browser against the running stack with API keys on (frontend/e2e/upload_page.mjs does the
clicking; this file prepares the files, starts the processes and checks what the jobs hold).

Needs what tests/e2e/browser_support.py says (Chromium, frontend packages and build)."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
import requests
from PIL import Image

from devtools.browser_scripts import ARTIFACTS, landscape, run_script
from devtools.stack import Stack
from tests.e2e.conftest import make_image
from tests.e2e.browser_support import require_browser
from tests.http_servers import ImageServer

pytestmark = pytest.mark.browser

KEY = "upload-page-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_browser()
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("browser-upload-page") / "data",
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "RATE_LIMIT_PER_SECOND": "0",
                                     "API_KEYS": f"studio={KEY}", "FETCH_ALLOW_CIDRS": "127.0.0.1/32"})
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def image_server():
    server = ImageServer({"/shoe-red.png": (make_image("PNG", (240, 160), (200, 30, 30)), "image/png"),
                          "/shoe-blue.png": (make_image("PNG", (200, 200), (30, 30, 200)), "image/png")})
    yield server
    server.stop()


def run_page(stack, tmp_path, scenario, **args) -> dict:
    argv = ["--base-url", stack.base_url, "--artifacts", str(ARTIFACTS), "--scenario", scenario, "--key", KEY]
    for name, value in args.items():
        argv += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    return run_script("upload_page.mjs", *argv, timeout=400)


def photo_file(tmp_path, name, size=(640, 480), colour=(90, 140, 200)) -> str:
    path = tmp_path / name
    path.write_bytes(make_image("JPEG", size, colour))
    return str(path)


def job(stack, job_id) -> dict:
    response = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_page_asks_for_the_key_says_when_it_is_wrong_and_works_with_the_right_one(stack, tmp_path):
    result = run_page(stack, tmp_path, "key", photos=[photo_file(tmp_path, "a.jpg")])
    assert "kept in this browser tab only" in result["hint"]
    assert result["missing"] == "Enter your API key: this server asks for one."
    assert result["refused"].startswith("The API key was not accepted.")
    assert result["stored"] == {"session": KEY, "local": None}     # sessionStorage, never localStorage
    done = job(stack, result["job_id"])
    assert done["status"] == "completed" and done["total"] == 1
    assert requests.get(f"{stack.base_url}/api/v1/jobs/{result['job_id']}", timeout=10).status_code == 401
    # the job page in a new tab (no key there) asked for the key in place, then showed the job
    assert result["job_page_heading"] == "Enter your API key to see this job"


def test_pasted_addresses_and_a_csv_become_jobs_with_the_refusals_shown(stack, tmp_path, image_server):
    urls = [image_server.url("/shoe-red.png"), "ftp://old.example/shoe.png", "",
            "https://user:secret@cdn.example/shoe.png", image_server.url("/shoe-blue.png")]
    table = tmp_path / "products.csv"
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "name", "product"])
        writer.writerow([image_server.url("/shoe-blue.png"), "Blue shoe.png", "SKU-22"])
    result = run_page(stack, tmp_path, "urls", urls=urls, csv=str(table))
    assert "addresses per job" in result["limits"] and "CSV" in result["limits"]
    # refused on the page before sending, by its line
    assert "Line 2: ftp://old.example/shoe.png is not an http:// or https:// address" in result["refused_before"]
    # refused by the server (a password in the address), shown by the line the user typed
    assert "https://user:secret@cdn.example/shoe.png" in result["refused_after"]
    assert "Line 4: URLs with a user name or password are not accepted" in result["refused_after"]
    pasted = job(stack, result["job_id"])
    assert pasted["status"] == "completed" and pasted["total"] == 2
    assert sorted(i["source_url"] for i in pasted["images"]) == sorted([urls[0], urls[4]])
    imported = job(stack, result["csv_job_id"])
    assert imported["status"] == "completed" and [i["filename"] for i in imported["images"]] == ["Blue shoe.png"]


def test_the_estimate_is_shown_in_words_before_process_and_process_still_runs(stack, tmp_path):
    photos = [str(landscape(tmp_path / f"p{i}.jpg", seed=i, size=(1200 + 100 * i, 900))) for i in range(3)]
    result = run_page(stack, tmp_path, "estimate", photos=photos)
    # the change in the words the job page uses for a result (format.js changeInWords)
    assert re.fullmatch(r"Results of about [\d.]+ (KB|MB) from [\d.]+ (KB|MB) of photos: (\d+% (smaller|larger)|same size)\.",
                        result["size"]), result["size"]
    assert result["time"].startswith("Ready in ") and "processed at a time" in result["time"]
    assert result["count"].strip() == "3 photos would be processed."
    assert result["stale"] == "The photos or steps changed since this estimate."
    done = job(stack, result["job_id"])
    assert done["status"] == "completed" and done["total"] == 3
    assert all((i["width"], i["height"]) == (256, 256) for i in done["images"])    # the thumbnail preset, chosen after


def test_a_logo_file_from_the_editor_lands_on_the_photo(stack, tmp_path):
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (40, 40), (255, 0, 0, 255)).save(logo, "PNG")
    result = run_page(stack, tmp_path, "overlay", photos=[photo_file(tmp_path, "grey.jpg", (400, 300), (128, 128, 128))],
                      logo=str(logo))
    assert result["missing"] == "Logo needs a file: choose a PNG or WebP."
    assert result["chosen"].startswith("Chosen: logo.png")
    done = job(stack, result["job_id"])
    assert done["status"] == "completed", done
    [image] = done["images"]
    assert image["choices"]["overlay"]["image"] == "logo.png"
    output = requests.get(f"{stack.base_url}/api/v1/jobs/{done['job_id']}/images/{image['image_id']}/output",
                          headers=AUTH, timeout=10)
    picture = Image.open(io.BytesIO(output.content)).convert("RGB")
    left, top, right, bottom = image["choices"]["overlay"]["box"]
    assert left < 40 and top < 40                                      # top left, as chosen
    red = picture.getpixel(((left + right) // 2, (top + bottom) // 2))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, red
    assert picture.getpixel((350, 250))[0] < 160                       # the rest stays grey
    # the same steps saved as a preset: the logo is asked for again when it is used, then sent
    assert result["preset_missing"].startswith("Choose the logo file for “logo.png”")
    again = job(stack, result["preset_job_id"])
    assert again["status"] == "completed", again
    assert again["images"][0]["choices"]["overlay"]["image"] == "logo.png"


def noise_png(path, size=(2400, 2400)) -> int:
    """A PNG of random pixels: it does not compress, so 2400x2400 weighs about 17 MB."""
    import os
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, "PNG", compress_level=1)
    return path.stat().st_size


def test_a_selection_with_a_large_file_ends_in_one_job_each_photo_once(stack, tmp_path):
    big = tmp_path / "big-noise.png"
    size = noise_png(big)
    assert size >= 16 * 1024 * 1024  # the page's (and the CLI's) LARGE_FILE_BYTES
    photos = [photo_file(tmp_path, f"IMG_{i:04d}.jpg", colour=(20 * i, 100, 200)) for i in range(5)] + [str(big)]
    result = run_page(stack, tmp_path, "shoot", photos=photos)

    # the job holds every photo exactly once, all processed
    done = job(stack, result["job_id"])
    assert (done["status"], done["total"], done["succeeded"]) == ("completed", 6, 6), done
    names = sorted(image["filename"] for image in done["images"])
    assert names == sorted(["big-noise.png"] + [f"IMG_{i:04d}.jpg" for i in range(5)])
    [image] = [image for image in done["images"] if image["filename"] == "big-noise.png"]
    assert image["input_bytes"] == size
    # the large file went to its upload target in 8 MiB chunks (the rest in a multipart batch)
    chunk = 8 * 1024 * 1024
    expected = [f"bytes {start}-{min(start + chunk, size) - 1}/{size}" for start in range(0, size, chunk)]
    assert [c["range"] for c in result["chunks"]] == expected, result["chunks"]
    assert all(c["key"] for c in result["chunks"])  # the local target is on the API's origin
    # each photo said its state on the way
    assert "Sent" in result["states"], result["states"]
    assert {"Waiting", "Sending N %"} & set(result["states"]), result["states"]
    # the script panel showed the same job as commands
    assert result["cli"] == f"imageflow --server {stack.base_url} submit photos/ --preset web"
    assert result["curl"].startswith(f"curl -s {stack.base_url}/api/v1/jobs")
    assert '-H "Authorization: Bearer $IMAGEFLOW_API_KEY"' in result["curl"]
