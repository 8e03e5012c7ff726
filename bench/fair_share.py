"""Fair share between keys (issue 24): key A submits a big job, then key B a small one; how long
until B's job completes, and how far A had got by then. On the local stack, started here with
two API keys, once with fair share on (FAIR_SHARE_TASKS as configured, default 320) and once off
(FAIR_SHARE_TASKS=0, every task published at once: B waits behind A's whole backlog):

    python -m bench.fair_share --a 5000 --b 5            # both runs
    python -m bench.fair_share --a 5000 --b 5 --only on  # just one

The issue's target: B completes within 30 s of its submission while A's job is still running.
The pictures are distinct 1x1 PNGs (so no render is shared between them), grayscale, uploaded
by multipart in batches into an open job for A (then closed), one request for B.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

from devtools.stack import Stack

KEY_A, KEY_B = "fair-share-key-a-0123456789", "fair-share-key-b-0123456789"
OPERATIONS = '[{"op": "grayscale"}]'
BATCH = 500  # files per multipart request into A's open job
RUNNING = ("open", "queued", "processing")


def pixel(index: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (index % 256, index // 256 % 256, index // 65536 % 256)).save(buf, "PNG")
    return buf.getvalue()


def stack_env(fair_share_tasks: int | None = None) -> dict[str, str]:
    env = {"API_KEYS": f"a={KEY_A},b={KEY_B}", "PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "30",
           "PROCESSOR_CONCURRENCY": "2", "MAX_REQUEST_BYTES": str(400 * 1024 * 1024)}
    if fair_share_tasks is not None:
        env["FAIR_SHARE_TASKS"] = str(fair_share_tasks)
    return env


def _api(base_url: str, key: str, method: str, path: str, **kwargs) -> requests.Response:
    response = requests.request(method, f"{base_url}/api/v1{path}", headers={"Authorization": f"Bearer {key}"},
                                timeout=300, **kwargs)
    response.raise_for_status()
    return response


def _files(start: int, stop: int) -> list:
    return [("files", (f"a-{i:05d}.png", pixel(i), "image/png")) for i in range(start, stop)]


def submit_big(base_url: str, images: int) -> str:
    """A's job: an open job filled by multipart batches (sent two at a time), then closed."""
    job_id = _api(base_url, KEY_A, "POST", "/jobs", json={"open": True, "operations": [{"op": "grayscale"}]}
                  ).json()["job_id"]

    def batch(start: int) -> None:
        _api(base_url, KEY_A, "POST", f"/jobs/{job_id}/files", files=_files(start, min(images, start + BATCH)))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(batch, range(0, images, BATCH)))
    _api(base_url, KEY_A, "POST", f"/jobs/{job_id}/close")
    return job_id


def job(base_url: str, key: str, job_id: str) -> dict:
    return _api(base_url, key, "GET", f"/jobs/{job_id}").json()


def race(base_url: str, a_images: int, b_images: int, *, timeout: float = 1800.0, wait_for_a: bool = True) -> dict:
    """A submits ``a_images``, then B ``b_images``. Returns B's seconds to completion (from its
    submission), A's finished images at that moment, and A's seconds to completion (from its
    submission; None when ``wait_for_a`` is false)."""
    started = time.monotonic()
    a_id = submit_big(base_url, a_images)
    a_submitted = time.monotonic()
    b_id = _api(base_url, KEY_B, "POST", "/jobs", data={"operations": OPERATIONS},
                files=[("files", (f"b-{i}.png", pixel(10_000_000 + i), "image/png")) for i in range(b_images)]
                ).json()["job_id"]
    b_submitted = time.monotonic()
    end = b_submitted + timeout
    while (b := job(base_url, KEY_B, b_id))["status"] in RUNNING:
        if time.monotonic() > end:
            raise TimeoutError(f"B's job {b_id} not finished after {timeout} s")
        time.sleep(0.2)
    b_done = time.monotonic()
    a = job(base_url, KEY_A, a_id)
    report = {"a_job": a_id, "b_job": b_id, "b_status": b["status"], "b_succeeded": b["succeeded"],
              "b_seconds": round(b_done - b_submitted, 1), "a_done_when_b_done": a["succeeded"] + a["failed"],
              "a_total": a["total"], "a_upload_seconds": round(a_submitted - started, 1), "a_seconds": None}
    if wait_for_a:
        while (a := job(base_url, KEY_A, a_id))["status"] in RUNNING:
            if time.monotonic() > end:
                raise TimeoutError(f"A's job {a_id} not finished after {timeout} s")
            time.sleep(0.5)
        report.update(a_status=a["status"], a_seconds=round(time.monotonic() - started, 1))
    return report


def run(a_images: int, b_images: int, fair_share_tasks: int | None, processors: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="fair-share-") as data:
        stack = Stack.on_free_ports(Path(data) / "data", processors=processors, env=stack_env(fair_share_tasks))
        stack.start(timeout=180)
        try:
            return race(stack.base_url, a_images, b_images)
        finally:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=int, default=5000, help="images in key A's job")
    parser.add_argument("--b", type=int, default=5, help="images in key B's job")
    parser.add_argument("--processors", type=int, default=1)
    parser.add_argument("--only", choices=("on", "off"), help="one run: fair share on (the default settings) or off")
    args = parser.parse_args(argv)
    runs = {"on": None, "off": 0}
    ok = True
    for name, tasks in runs.items():
        if args.only and name != args.only:
            continue
        r = run(args.a, args.b, tasks, args.processors)
        print(f"fair share {name}: B ({args.b} images) completed in {r['b_seconds']} s with A at "
              f"{r['a_done_when_b_done']}/{r['a_total']}; A completed {r['a_seconds']} s after its first upload "
              f"(uploading took {r['a_upload_seconds']} s)", flush=True)
        if name == "on":
            ok = r["b_seconds"] <= 30
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
