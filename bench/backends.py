"""Local backends vs the GCP emulators: the same batch through the whole system on each.

    ./scripts.sh bench backends            (python -m bench.backends)

Moved out of the test suite (it measured, it did not test). Starts the Pub/Sub, Firestore
and Cloud Storage emulators, then the same processes twice (IMAGEFLOW_BACKEND=local, then
gcp on the emulators), each with one image-processor of two task slots, and sends one
batch of 800x600 JPEGs (resize to 320 px, WebP) to each after a warm-up. Reports POST time,
first result, completion and images per second, and the local/emulator throughput ratio
(the emulators are not GCP: the ratio says what the local default costs or saves, not how
fast production is).
"""
from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

from devtools.emulators import Emulators, missing_tools
from devtools.stack import Stack

OPERATIONS = [{"op": "resize", "width": 320}, {"op": "format", "format": "webp"}]
STACK_ENV = {"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2"}


def jpeg(index: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (800, 600), (index * 8 % 255, 100, 50)).save(buf, "JPEG")
    return buf.getvalue()


def batch(stack: Stack, images: int) -> dict:
    files = [("files", (f"p{i}.jpg", jpeg(i), "image/jpeg")) for i in range(images)]
    started = time.monotonic()
    response = requests.post(f"{stack.base_url}/api/v1/jobs", files=files,
                             data={"operations": json.dumps(OPERATIONS)}, timeout=120)
    response.raise_for_status()
    job_id = response.json()["job_id"]
    accepted = time.monotonic() - started
    first_done = None
    while True:
        job = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
        if first_done is None and job["succeeded"] + job["failed"] > 0:
            first_done = time.monotonic() - started
        if job["status"] not in ("queued", "processing"):
            break
        if time.monotonic() - started > 300:
            raise RuntimeError("the batch did not finish in 300 s")
        time.sleep(0.05)
    total = time.monotonic() - started
    if job["succeeded"] != images:
        raise RuntimeError(f"only {job['succeeded']} of {images} images succeeded")
    return {"images": images, "upload_s": round(accepted, 2), "first_result_s": round(first_done, 2),
            "completed_s": round(total, 2), "images_per_s": round(images / total, 1)}


def measure(stack: Stack, images: int) -> dict:
    stack.start(timeout=90)
    try:
        batch(stack, 4)  # warm-up: connections, the emulators' JIT
        return batch(stack, images)
    finally:
        stack.stop()


def run(images: int) -> dict:
    missing = missing_tools()
    if missing:
        raise SystemExit("the GCP emulators are not installed here: " + "; ".join(missing))
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures["local"] = measure(Stack.on_free_ports(Path(tmp) / "local", env=STACK_ENV), images)
        with Emulators(project="imageflow-bench", bucket="imageflow-bench", work_dir=Path(tmp) / "emulators") as emu:
            env = {**emu.env(), **STACK_ENV, "IMAGEFLOW_DATA_DIR": str(Path(tmp) / "gcp")}
            figures["gcp-emulators"] = measure(Stack.on_free_ports(Path(tmp) / "gcp", env=env), images)
    figures["local_vs_emulators_throughput"] = round(
        figures["local"]["images_per_s"] / figures["gcp-emulators"]["images_per_s"], 2)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    figures = run(parser.parse_args().images)
    for name in ("local", "gcp-emulators"):
        f = figures[name]
        print(f"{name:14s} {f['images_per_s']} images/s, POST {f['upload_s']} s, first result "
              f"{f['first_result_s']} s, completed {f['completed_s']} s ({f['images']} images)")
    print(f"local / emulators throughput: {figures['local_vs_emulators_throughput']}x")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
