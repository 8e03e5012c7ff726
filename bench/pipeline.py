"""End-to-end pipeline benchmark on the local backends: the real processes over HTTP.

    ./scripts.sh bench pipeline            (python -m bench.pipeline)

Reports, from one run on this machine:
- latency from POST to `completed` for a single 2 MP JPEG (resize to 1024 px, JPEG q85),
  median and p90 over repeated jobs;
- throughput of a 20-image mixed-format batch (images per second, POST to completed).
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

from devtools.stack import Stack


def camera_like(size=(1632, 1224), quality=90) -> bytes:
    """A 2 MP JPEG with detail (gradients and noise), not a flat colour."""
    base = Image.radial_gradient("L").resize(size).convert("RGB")
    noise = Image.effect_noise(size, 40).convert("RGB")
    picture = Image.blend(base, noise, 0.35)
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def wait(base: str, job_id: str, timeout=300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] not in ("queued", "processing"):
            return job
        time.sleep(0.02)
    raise RuntimeError(f"job {job_id} did not finish")


def submit(base: str, files, operations) -> str:
    response = requests.post(f"{base}/api/v1/jobs", files=files, data={"operations": json.dumps(operations)},
                             timeout=60)
    response.raise_for_status()
    return response.json()["job_id"]


def run(repeats: int, batch: int) -> dict:
    ops = [{"op": "resize", "width": 1024, "height": 1024}, {"op": "format", "format": "jpeg", "quality": 85}]
    photo = camera_like()
    with tempfile.TemporaryDirectory() as tmp:
        # the same photo again and again: measure renders, not dedupe's copies
        stack = Stack.on_free_ports(Path(tmp) / "data", env={"PROGRESS_FLUSH_SECONDS": "0.1",
                                                             "DEDUPE_OUTPUTS": "0"}).start()
        try:
            base = stack.base_url
            latencies = []
            for _ in range(repeats):
                started = time.monotonic()
                job = wait(base, submit(base, [("files", ("photo.jpg", photo, "image/jpeg"))], ops))
                latencies.append(time.monotonic() - started)
                assert job["status"] == "completed", job
            formats = ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"]
            files = []
            for i in range(batch):
                buf = io.BytesIO()
                Image.open(io.BytesIO(photo)).resize((800, 600)).save(buf, formats[i % len(formats)])
                files.append(("files", (f"p{i}.{formats[i % len(formats)].lower()}", buf.getvalue(),
                                        "application/octet-stream")))
            started = time.monotonic()
            job = wait(base, submit(base, files, ops))
            batch_seconds = time.monotonic() - started
            assert job["succeeded"] == batch, job
        finally:
            stack.stop()
    latencies.sort()
    return {"single_2mp_median_s": statistics.median(latencies),
            "single_2mp_p90_s": latencies[int(0.9 * (len(latencies) - 1))],
            "repeats": repeats, "batch_images": batch, "batch_seconds": batch_seconds,
            "batch_images_per_s": batch / batch_seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    figures = run(args.repeats, args.batch)
    print(f"single 2 MP JPEG, POST -> completed: median {figures['single_2mp_median_s'] * 1000:.0f} ms, "
          f"p90 {figures['single_2mp_p90_s'] * 1000:.0f} ms over {figures['repeats']} jobs")
    print(f"{figures['batch_images']}-image mixed batch: {figures['batch_images_per_s']:.1f} images/s "
          f"({figures['batch_seconds']:.2f} s POST -> completed)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
