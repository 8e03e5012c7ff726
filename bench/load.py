"""Load run on the local backends: one big job with the processors at full concurrency while
other clients upload concurrently, with each process's memory sampled over time.

    .venv/bin/python -m bench.load                          # 2000 images, 8 uploaders x 25 jobs
    .venv/bin/python -m bench.load --images 200 --uploaders 4 --uploads 5 --json out.json

Everything runs on 127.0.0.1 (the real processes, started as ``./scripts.sh up`` starts them, on
free ports in a temporary directory) and every loop is bounded. Reports:

- throughput: images per second of the big job, from the POST to ``completed``;
- API latency percentiles (p50/p90/p99/max) of the uploads (POST /api/v1/jobs) and of the
  status reads (GET /api/v1/jobs/<id>) made while the pipeline is busy;
- each process's resident memory (RSS, whole process group) over time, and its growth over
  the second half of the run (the first half is warm-up).

The API's rate limit is off for the run: every client here shares one address.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from PIL import Image

from devtools.stack import Stack
from imageflow.blobstore.local import LocalBlobStore

OPERATIONS = [{"op": "resize", "width": 320}, {"op": "format", "format": "webp", "quality": 80}]


# -- memory ---------------------------------------------------------------------------------
def group_rss_kib(leader: int) -> int:
    """RSS of every process in the process group led by ``leader`` (gunicorn master + workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != leader:  # the process group id
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class RssSampler:
    """Samples each stack process's resident memory (MiB) every ``interval`` seconds."""

    def __init__(self, stack: Stack, interval: float = 2.0):
        self.stack, self.interval = stack, interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> "RssSampler":
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()

    def sample(self) -> None:
        row: dict = {"t (s)": round(time.monotonic() - self._t0, 1)}
        for name, proc in list(self.stack.procs.items()):
            if proc.poll() is None:
                row[name] = round(group_rss_kib(proc.pid) / 1024, 1)
        self.samples.append(row)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per process: RSS at the start, peak and end, and growth over the second half of the run."""
        out = {}
        names = sorted({k for row in self.samples for k in row if k != "t (s)"})
        for name in names:
            series = [row[name] for row in self.samples if name in row]
            half = series[len(series) // 2:]
            out[name] = {"start": series[0], "peak": max(series), "end": series[-1],
                         "second_half_growth": round(half[-1] - half[0], 1)}
        return out

    def timeline(self, rows: int = 12) -> list[dict]:
        """At most ``rows`` evenly spaced samples (for a report table)."""
        step = max(1, len(self.samples) // rows)
        picked = self.samples[::step]
        if picked[-1] is not self.samples[-1]:
            picked.append(self.samples[-1])
        return picked


# -- workload -------------------------------------------------------------------------------
def photo(i: int, size=(800, 600)) -> bytes:
    """A JPEG with some detail (a gradient and noise), different for each ``i``."""
    base = Image.linear_gradient("L").resize(size).convert("RGB")
    noise = Image.effect_noise(size, 20 + i % 30).convert("RGB")
    buf = io.BytesIO()
    Image.blend(base, noise, 0.3).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": round(pick(0.50) * 1000, 1), "p90_ms": round(pick(0.90) * 1000, 1),
            "p99_ms": round(pick(0.99) * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


@dataclass
class LoadResult:
    images: int
    processors: int
    concurrency: int
    upload_seconds: float = 0.0
    job_seconds: float = 0.0
    job_status: str = ""
    succeeded: int = 0
    failed: int = 0
    outputs_in_storage: int = 0
    side_jobs: int = 0
    side_jobs_completed: int = 0
    upload_errors: int = 0
    status_errors: int = 0
    post_latency: dict = field(default_factory=dict)
    get_latency: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    memory_timeline: list = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return round(self.images / self.job_seconds, 1) if self.job_seconds else 0.0

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["throughput_images_per_s"] = self.throughput
        return data


def run(data_dir: Path, *, images: int = 2000, processors: int = 2, concurrency: int = 2, uploaders: int = 8,
        uploads: int = 25, side_batch: int = 5, timeout: float = 1800.0) -> LoadResult:
    """Start a stack in ``data_dir``, run the load, stop the stack; returns the figures."""
    stack = Stack.on_free_ports(data_dir, processors=processors, env={
        "PROCESSOR_CONCURRENCY": str(concurrency), "MAX_FILES_PER_JOB": str(max(images, side_batch)),
        "MAX_REQUEST_BYTES": str(1024 * 1024 * 1024), "RATE_LIMIT_PER_SECOND": "0",
        "PROGRESS_FLUSH_SECONDS": "1.0", "ACK_DEADLINE_SECONDS": "60",
        "DEDUPE_OUTPUTS": "0"})  # the corpus repeats: measure renders, not dedupe's copies
    result = LoadResult(images, processors, concurrency)
    corpus = [photo(i) for i in range(64)]  # reused bytes: generating 2000 distinct JPEGs would dominate
    stack.start()
    try:
        with RssSampler(stack) as rss:
            base = stack.base_url
            files = [("files", (f"load-{i:05d}.jpg", corpus[i % len(corpus)], "image/jpeg")) for i in range(images)]
            started = time.monotonic()
            response = requests.post(f"{base}/api/v1/jobs", files=files,
                                     data={"operations": json.dumps(OPERATIONS)}, timeout=600)
            response.raise_for_status()
            job_id = response.json()["job_id"]
            result.upload_seconds = round(time.monotonic() - started, 1)
            post_times, get_times, side_ids = _concurrent_clients(base, corpus, uploaders, uploads, side_batch, result)
            job = _wait(base, job_id, started + timeout, get_times, result)
            result.job_seconds = round(time.monotonic() - started, 1)
            result.job_status, result.succeeded, result.failed = job["status"], job["succeeded"], job["failed"]
            result.side_jobs = len(side_ids)
            end = time.monotonic() + 300
            for side_id in side_ids:
                result.side_jobs_completed += _wait(base, side_id, end, [], result)["status"] == "completed"
            result.post_latency, result.get_latency = percentiles(post_times), percentiles(get_times)
            result.outputs_in_storage = len(LocalBlobStore(stack.data_dir / "blobs").list(f"{job_id}/output/"))
            time.sleep(4)  # a last quiet stretch: memory should settle, not keep climbing
        result.memory = rss.summary()
        result.memory_timeline = rss.timeline()
    finally:
        stack.stop()
    return result


def _concurrent_clients(base: str, corpus: list[bytes], uploaders: int, uploads: int, side_batch: int,
                        result: LoadResult) -> tuple[list[float], list[float], list[str]]:
    """``uploaders`` clients each POST ``uploads`` small jobs and read each one's status once."""
    post_times: list[float] = []
    get_times: list[float] = []
    side_ids: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        session = requests.Session()
        for k in range(uploads):
            files = [("files", (f"side-{n}-{k}-{j}.jpg", corpus[(n + k + j) % len(corpus)], "image/jpeg"))
                     for j in range(side_batch)]
            t = time.monotonic()
            try:
                response = session.post(f"{base}/api/v1/jobs", files=files,
                                        data={"operations": json.dumps(OPERATIONS)}, timeout=120)
                ok = response.status_code == 202
            except requests.RequestException:
                ok = False
            elapsed = time.monotonic() - t
            with lock:
                post_times.append(elapsed)
                if not ok:
                    result.upload_errors += 1
                    continue
                side_ids.append(response.json()["job_id"])
            t = time.monotonic()
            try:
                status_ok = session.get(f"{base}/api/v1/jobs/{side_ids[-1]}", timeout=60).status_code == 200
            except requests.RequestException:
                status_ok = False
            with lock:
                get_times.append(time.monotonic() - t)
                result.status_errors += not status_ok

    with ThreadPoolExecutor(uploaders) as pool:
        list(pool.map(client, range(uploaders)))
    return post_times, get_times, side_ids


def _wait(base: str, job_id: str, deadline: float, get_times: list[float], result: LoadResult) -> dict:
    while True:
        t = time.monotonic()
        try:
            response = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=60)
            get_times.append(time.monotonic() - t)
            job = response.json()
            if job["status"] not in ("queued", "processing"):
                return job
        except (requests.RequestException, ValueError):
            result.status_errors += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not finish in time")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ImageFlow load run on the local stack (127.0.0.1 only).")
    parser.add_argument("--images", type=int, default=2000, help="images in the big job")
    parser.add_argument("--processors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2, help="PROCESSOR_CONCURRENCY")
    parser.add_argument("--uploaders", type=int, default=8, help="concurrent upload clients")
    parser.add_argument("--uploads", type=int, default=25, help="jobs each upload client posts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imageflow-load-") as tmp:
        result = run(Path(tmp) / "data", images=args.images, processors=args.processors,
                     concurrency=args.concurrency, uploaders=args.uploaders, uploads=args.uploads)
    figures = result.to_dict()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(f"{result.images}-image job: {result.job_status}, {result.succeeded} succeeded, {result.failed} failed, "
          f"{result.outputs_in_storage} outputs; upload {result.upload_seconds} s, done in {result.job_seconds} s "
          f"= {result.throughput} images/s ({result.processors} processors x {result.concurrency})")
    print(f"side jobs: {result.side_jobs_completed}/{result.side_jobs} completed, {result.upload_errors} upload errors")
    print(f"POST /api/v1/jobs latency: {result.post_latency}")
    print(f"GET /api/v1/jobs/<id> latency: {result.get_latency}")
    for name, mem in result.memory.items():
        print(f"RSS {name}: {mem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
