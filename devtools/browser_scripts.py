"""Running the browser scripts of frontend/e2e/ (Debian's Chromium driven by playwright-core;
no browser is ever downloaded), shared by the browser tests (tests/e2e/test_browser*.py) and
`python -m devtools.screenshots`: where Chromium and the page are, what is missing to run
them, a photo-like JPEG to upload, and one call that runs a script and returns its RESULT.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
FRONTEND = REPO / "frontend"
ARTIFACTS = REPO / ".test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def missing() -> str | None:
    """What stops the browser scripts from running here, in words; None when nothing does."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not shutil.which("node"):
        return "node is not installed"
    if not (FRONTEND / "node_modules" / "playwright-core").is_dir():
        return "frontend packages are not installed (cd frontend && npm ci)"
    if not (FRONTEND / "dist" / "index.html").is_file():
        return "the web page is not built (cd frontend && npm run build)"
    return None


def run_script(script: str, *args: str, on_line=None, timeout: float = 300) -> dict:
    """Run ``node e2e/<script>`` with ``args`` (and ``--chromium``); returns its RESULT line as
    a dict, or raises with the end of its stderr. ``on_line`` sees each other stdout line as
    it comes (for scripts that hand over mid-way); past ``timeout`` its process group is killed."""
    cmd = ["node", f"e2e/{script}", *args, "--chromium", CHROMIUM]
    with tempfile.TemporaryFile(mode="w+") as stderr:  # a file: a full pipe would stall the script
        proc = subprocess.Popen(cmd, cwd=FRONTEND, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                start_new_session=True)
        watchdog = threading.Timer(timeout, os.killpg, (proc.pid, 9))
        watchdog.start()
        result = None
        try:
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    result = json.loads(line[len("RESULT "):])
                elif on_line:
                    on_line(line.strip())
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        if proc.returncode != 0 or result is None:
            stderr.seek(0)
            phase = f" {args[0]}" if args and not args[0].startswith("--") else ""
            raise RuntimeError(f"{script}{phase} failed (exit {proc.returncode}):\n{stderr.read()[-4000:]}")
    return result


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


def all_images(base_url: str, job_id: str) -> list[dict]:
    """Every image of a job, following the pages of ``GET /api/v1/jobs/<id>/images``."""
    import requests

    images, url = [], f"{base_url}/api/v1/jobs/{job_id}/images?limit=1000"
    while url:
        page = requests.get(url, timeout=30).json()
        images += page["images"]
        url = page["links"].get("next")
    return images


def finished_named_job(base_url: str, photos: list[Path], name: str, operations: list[dict],
                       timeout: float = 300) -> str:
    """A job of ``photos`` called ``name``, created through the API and waited for until it is
    finished (for the scripts that look at a job page); returns its id."""
    import time

    import requests

    files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in photos]
    response = requests.post(f"{base_url}/api/v1/jobs", files=files, timeout=60,
                             data={"operations": json.dumps(operations), "name": name})
    if response.status_code not in (201, 202):
        raise RuntimeError(f"creating the job answered {response.status_code}: {response.text[:500]}")
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + timeout
    while True:
        job = requests.get(f"{base_url}/api/v1/jobs/{job_id}", timeout=30).json()
        if job["status"] in ("completed", "completed_with_errors", "failed", "cancelled"):
            return job_id
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.3)
