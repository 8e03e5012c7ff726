"""Screenshots of the web page, taken in headless Chromium against a real local stack:

    python -m devtools.screenshots docs/screenshots [--photos 300]

starts the whole system on free ports (a fresh data dir), then with Debian's Chromium
(frontend/e2e/jobpage.mjs, playwright-core): the upload page on a desktop and on a phone,
a setting refused before upload, the job page and the lightbox, and the job page of a
300-photo job chosen through the page's file input, scrolled from top to bottom. It writes
JPEGs (1280x800 or 375x800, quality 80) and README.md with what the job page downloaded.

Also the shared part of tests/e2e/test_browser_big_job.py: the photos it makes and the way
it runs a phase of the browser script.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
FRONTEND = REPO / "frontend"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
STACK_ENV = {"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2"}


def landscape(path: Path, seed: int, size=(1600, 1200)) -> Path:
    """A photo-like JPEG (sky, sun, hills, grain), different for each seed."""
    rng = random.Random(seed)
    width, height = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    top, bottom = (rng.randint(40, 90), rng.randint(110, 170), rng.randint(200, 250)), (250, 220, 180)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    cx, cy, r = rng.randint(width // 8, width - width // 8), rng.randint(height // 10, height // 3), rng.randint(
        height // 20, height // 10)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 214, 90))
    for layer in range(3):
        base = int(height * (0.55 + 0.13 * layer))
        step = max(40, width // 8)
        points = [(0, height)] + [(x, base + rng.randint(-height // 13, height // 20))
                                  for x in range(0, width + step, step)] + [(width, height)]
        shade = 110 - layer * 30
        draw.polygon(points, fill=(shade // 3, shade, shade // 2))
    img = Image.blend(img, Image.effect_noise(size, 40).convert("RGB"), 0.12).filter(ImageFilter.SMOOTH)
    img.save(path, "JPEG", quality=88)
    return path


def big_job_photos(directory: Path, count: int, size=(800, 600)) -> list[Path]:
    """``count`` small photos under ``directory``: photo-001.jpg ..., and two called
    IMG_0001.jpg in different folders (the page must tell them apart)."""
    paths = [directory / "a" / "IMG_0001.jpg", directory / "b" / "IMG_0001.jpg"]
    paths += [directory / f"photo-{i:03d}.jpg" for i in range(1, count - 1)]
    for seed, path in enumerate(paths[:count]):
        path.parent.mkdir(parents=True, exist_ok=True)
        landscape(path, seed, size)
    return paths[:count]


def run_page_script(phase: str, *args: str, timeout: float = 900) -> dict:
    """Run one phase of frontend/e2e/jobpage.mjs; returns its RESULT (raises with its stderr)."""
    cmd = ["node", "e2e/jobpage.mjs", phase, "--chromium", CHROMIUM, *args]
    proc = subprocess.Popen(cmd, cwd=FRONTEND, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    results = [line[len("RESULT "):] for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        raise RuntimeError(f"browser phase {phase} failed (exit {proc.returncode}):\n{err[-4000:]}")
    return json.loads(results[-1])


def kb(n: float) -> str:
    return f"{n / 1024:,.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MB"


def readme(big: dict, inputs: int, outputs: int, seconds: float) -> str:
    total = big["total"]
    return f"""# Screenshots of the web page

Taken by `python -m devtools.screenshots docs/screenshots` (headless Debian Chromium against the
local stack started on free ports, two processor threads; {seconds:.0f} s for the whole run).

| file | what it shows |
|---|---|
| `upload.jpg` | the upload page on a desktop (1280x800), three photos chosen |
| `upload-phone.jpg` | the same page on a phone (375x800, touch): no "drag" wording |
| `upload-error-before-upload.jpg` | a background colour "blurple" refused by `POST /api/v1/operations/validate`, beside its field, before any photo was sent |
| `job.jpg` | the job page of those three photos |
| `lightbox.jpg` | the lightbox: before and after side by side, their sizes and the saving |
| `job-{total}.jpg` | the job page of a {total}-photo job chosen through the page's file input, first screen |
| `job-{total}-grid.jpg` | its grid of cards (previews, sizes, saving, Compare and Download) |
| `job-{total}-placeholders.jpg` | further down on a slow network (1.5 s latency): BlurHash placeholders until the previews come |
| `job-{total}-end.jpg` | the same job page scrolled to the end |

## What the {total}-photo job page downloaded

Counted by Chromium (DevTools protocol, bytes on the wire: headers plus compressed bodies), from
the moment the page moved to `/jobs/<id>` to the end of the scroll:

| figure | value |
|---|---|
| photos (800x600 JPEG, preset "web": WebP) | {total}: {kb(inputs)} of originals, {kb(outputs)} of results |
| upload through the page | {big['upload_requests']} requests, {big['upload_ms'] / 1000:.1f} s |
| upload start to all done | {big['done_ms'] / 1000:.1f} s |
| polling while it ran (job view and pages of `/images`) | {big['polls']} requests ({big['polls_not_modified']} answered 304), {kb(big['poll_bytes'])} |
| first screen | {big['first_view_cards']} cards in the DOM, {kb(big['first_view_picture_bytes'])} of pictures; {kb(big['first_view_bytes'])} in all since the page opened |
| scrolled top to bottom | {big['scroll_steps']} screens, at most {big['most_cards_in_dom']} cards in the DOM at once, {big['cards_seen']} cards seen |
| previews loaded | {big['preview_requests']} requests, {kb(big['preview_bytes'])} |
| originals or full results loaded as thumbnails | {big['full_picture_requests']} |
| **all the job page downloaded** | **{kb(big['job_page_bytes'])}** in {big['job_page_requests']} requests, against {kb(inputs + outputs)} of originals and results |
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--photos", type=int, default=300, help="photos in the big job (default 300)")
    args = parser.parse_args(argv)
    if not (FRONTEND / "dist" / "index.html").is_file():
        parser.error("the web page is not built (cd frontend && npm run build)")
    import requests

    from devtools.stack import Stack

    outdir = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imageflow-screenshots-") as tmp:
        tmp = Path(tmp)
        stack = Stack.on_free_ports(tmp / "data", env=STACK_ENV, python=sys.executable)
        stack.start()
        try:
            photos = [landscape(tmp / name, seed, (1600, 1200)) for seed, name in
                      enumerate(["harbour.jpg", "meadow.jpg", "dunes.jpg"], start=7)]
            run_page_script("tour", "--base-url", stack.base_url, "--photos", ",".join(map(str, photos)),
                            "--shots", str(outdir))
            big_job_photos(tmp / "big", args.photos)
            big = run_page_script("bigjob", "--base-url", stack.base_url, "--files", str(tmp / "big"),
                                  "--total", str(args.photos), "--shots", str(outdir))
            images, url = [], f"{stack.base_url}/api/v1/jobs/{big['job_id']}/images?limit=1000"
            while url:
                page = requests.get(url, timeout=30).json()
                images += page["images"]
                url = page["links"].get("next")
        finally:
            stack.stop()
    inputs = sum(image["input_bytes"] or 0 for image in images)
    outputs = sum(image["bytes"] or 0 for image in images)
    (outdir / "README.md").write_text(readme(big, inputs, outputs, time.monotonic() - started))
    print(json.dumps({**big, "input_bytes": inputs, "output_bytes": outputs}, indent=2))
    print(f"screenshots and README.md in {outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
