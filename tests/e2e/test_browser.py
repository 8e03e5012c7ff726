"""The web page in a real browser against the running local stack.

Debian's Chromium (/usr/bin/chromium) is driven by playwright-core from frontend/node_modules
(frontend/e2e/browser.mjs does the clicking; this file prepares the files, starts and stops
processes and checks what came back). Screenshots land in .test-artifacts/screenshots/.

Needs what tests/e2e/browser_support.py says (Chromium, frontend packages and build).
"""
from __future__ import annotations

import io
import random
import time
import zipfile
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import requests
from PIL import Image

from devtools.browser_scripts import ARTIFACTS, landscape, run_script
from devtools.stack import Stack
from tests.e2e.browser_support import require_browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def browser_ready():
    require_browser()


def run_browser(phase: str, *args: str, on_line=None, timeout: float = 300) -> dict:
    """Run one phase of frontend/e2e/browser.mjs; returns its RESULT."""
    return run_script("browser.mjs", phase, "--artifacts", str(ARTIFACTS), *args, on_line=on_line, timeout=timeout)


def email_link(data_dir: Path, job_id: str, timeout: float = 60) -> str:
    """The results link from the job's email in the local outbox."""
    path = data_dir / "outbox" / f"{job_id}.eml"
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"no email for job {job_id} in {path.parent}"
        time.sleep(0.3)
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    text = message.get_body(preferencelist=("plain",)).get_content()
    links = [word for word in text.split() if word.rstrip(".,)").endswith(f"/jobs/{job_id}")]
    assert links, f"the email has no link to the job:\n{text}"
    return links[0].rstrip(".,)")


def test_upload_process_download_and_open_the_email_link(stack, tmp_path):
    photos = [landscape(tmp_path / f"holiday-{i}.jpg", seed=i) for i in range(1, 4)]
    good = io.BytesIO()
    Image.new("RGB", (800, 600), (30, 90, 200)).save(good, "JPEG")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.getvalue()[: len(good.getvalue()) // 3])   # a header, then the data ends early
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a picture\n")                        # the server refuses it
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")                                # the page refuses it

    result = run_browser("upload", "--base-url", stack.base_url,
                         "--photos", ",".join(str(p) for p in photos), "--broken", str(broken),
                         "--refused", str(fake), "--not-image", str(notes))
    job_id = result["job_id"]

    # The server holds what the page showed.
    job = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
    assert (job["status"], job["succeeded"], job["failed"]) == ("completed_with_errors", 3, 1)
    assert job["email"] == "e2e@example.com"
    assert job["operations"][0]["op"] == "resize" and job["operations"][0]["width"] == 400
    # The steps the page saved as a preset are stored on the server, resolved.
    presets = requests.get(f"{stack.base_url}/api/v1/presets", timeout=10).json()["presets"]
    assert [(p["name"], [op["op"] for op in p["operations"]]) for p in presets] == [
        ("E2E grey 400", ["resize", "grayscale", "format"])]

    # The downloaded result is what the chosen steps make: 400 wide, grey, JPEG.
    with Image.open(result["downloads"]["one"]) as image:
        assert image.format == "JPEG"
        assert image.size == (400, 300)
        assert image.mode == "L"
    with zipfile.ZipFile(result["downloads"]["zip"]) as archive:
        names = archive.namelist()
    assert len(names) == 3 and all(name.endswith(".jpg") for name in names)

    # The email's link opens the results cold, in a fresh browser.
    link = email_link(stack.data_dir, job_id)
    opened = run_browser("open", "--base-url", stack.base_url, "--url", link, "--job-id", job_id)
    assert opened["cards"] == 4


def test_a_running_job_opened_cold_follows_progress_live(stack, tmp_path):
    # With the processor stopped the job cannot start, so the page is sure to see it waiting.
    stack.stop_process("image-processor")
    try:
        files = [("files", (f"street-{i}.jpg", landscape(tmp_path / f"s{i}.jpg", seed=10 + i, size=(900, 600)).read_bytes(),
                            "image/jpeg")) for i in range(3)]
        response = requests.post(f"{stack.base_url}/api/v1/jobs", files=files, data={"preset": "thumbnail"},
                                 timeout=30)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]

        def resume(line: str) -> None:
            if line == "WAITING":
                stack.start_process("image-processor")

        run_browser("watch", "--base-url", stack.base_url,
                    "--url", f"{stack.base_url}/jobs/{job_id}", "--total", "3", on_line=resume)
    finally:
        if stack.procs["image-processor"].poll() is not None:
            stack.start_process("image-processor")
    job = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "completed" and job["succeeded"] == 3


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory):
    """A local stack that takes 300 photos in one job (open jobs will lift the limit)."""
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("bigstack") / "data",
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "PROCESSOR_CONCURRENCY": "2",
                                     "MAX_FILES_PER_JOB": "300"})
    stack.start()
    yield stack
    stack.stop()


def small_photo(seed: int, size=(800, 600)) -> bytes:
    """A quick photo-like JPEG: a colour of its own under noise (about 100 KB)."""
    rng = random.Random(seed)
    base = Image.new("RGB", size, (rng.randint(30, 220), rng.randint(30, 220), rng.randint(30, 220)))
    img = Image.blend(base, Image.effect_noise(size, 60).convert("RGB"), 0.25)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def test_a_300_photo_job_page_draws_and_loads_only_what_is_on_screen(big_stack):
    files = [("files", (f"photo-{i}.jpg", small_photo(i), "image/jpeg")) for i in range(1, 301)]
    originals = sum(len(f[1][1]) for f in files)
    response = requests.post(f"{big_stack.base_url}/api/v1/jobs", files=files, data={"preset": "web"}, timeout=120)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    result = run_browser("bigjob", "--base-url", big_stack.base_url, "--url", f"{big_stack.base_url}/jobs/{job_id}",
                         "--job-id", job_id, "--total", "300")
    job = requests.get(f"{big_stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
    outputs = sum(image["bytes"] for image in job["images"])
    print(f"\n300-photo job page: {result['drawn']} cards drawn, {result['first_view_image_bytes']} B of pictures "
          f"on first view, {result['after_scroll_image_bytes']} B after scrolling to the end; originals + results "
          f"{originals + outputs} B; job view {result['job_view_bytes_on_wire']} B on the wire (gzip)")
    # Only the pictures of the cards drawn are fetched: a small part of everything.
    assert result["first_view_image_bytes"] < (originals + outputs) / 10
