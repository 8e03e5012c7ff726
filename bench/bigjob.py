"""Big-job benchmark (issue 12): one open job of many photos end to end on the local stack.

    ./scripts.sh bench bigjob [--images 10000] [--parallel 4]      (python -m bench.bigjob)

The photos are a mix of 0.5 to 12 MP JPEG and PNG (a pool of distinct pictures, hard-linked
under many names), uploaded by the real CLI (``imageflow submit DIR --recursive``) into an open
job, resized to 1024 px JPEG q85 by the real processes. Reported from one run:

- throughput: images per second from the first upload to ``completed``, against the bare
  engine rendering the same sequence of pictures on the same number of processes, in the
  same run (the pipeline's share of what the engine alone does on these cores);
- latency from the first upload to the first result;
- the peak RSS of every process (summed over its process group), sampled while a small
  warm-up job and then the big job run: a size that does not grow with the job is flat;
- the time to the first byte of ``archive.zip`` (and the whole download).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import requests
from PIL import Image

from devtools.stack import REPO_ROOT, Stack
from imageflow.engine import Limits, render
from imageflow.engine.schema import resolve_operations
from imageflow.settings import Settings

OPERATIONS = [{"op": "resize", "width": 1024, "height": 1024}, {"op": "format", "format": "jpeg", "quality": 85}]
# (megapixels, format): the mix of a photo shoot with some screenshots and scans.
POOL = [(0.5, "JPEG"), (1, "PNG"), (2, "JPEG"), (3, "JPEG"), (4, "PNG"), (6, "JPEG"), (8, "JPEG"),
        (12, "JPEG"), (0.5, "PNG"), (2, "PNG"), (5, "JPEG"), (12, "PNG")]


def picture(megapixels: float, fmt: str, seed: int) -> bytes:
    """A photo-like picture: a gradient with noise (compresses like a photo, not like a flat colour)."""
    width = int((megapixels * 1_000_000 * 4 / 3) ** 0.5)
    size = (width, int(width * 3 / 4))
    base = Image.radial_gradient("L").resize(size).convert("RGB")
    tint = Image.new("RGB", size, (seed * 53 % 256, seed * 97 % 256, 140))
    noise = Image.effect_noise(size, 30 + seed).convert("RGB")
    img = Image.blend(Image.blend(base, tint, 0.3), noise, 0.25)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 6}))
    return buf.getvalue()


def make_shoot(folder: Path, count: int) -> list[Path]:
    """``count`` files in a few subfolders, each a hard link to one picture of the pool."""
    sources = folder / "pool"
    sources.mkdir(parents=True)
    pool = []
    for i, (mp, fmt) in enumerate(POOL):
        path = sources / f"pool{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
        path.write_bytes(picture(mp, fmt, i))
        pool.append(path)
    files = []
    for n in range(count):
        source = pool[n % len(pool)]
        target = folder / "shoot" / f"card{n % 8}" / f"IMG_{n:05d}{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        files.append(target)
    return files


def _render_file(path: str) -> int:
    limits = Limits.from_settings(Settings())
    return len(render(Path(path).read_bytes(), resolve_operations(None, OPERATIONS), limits)[0].data)


def bare_engine(files: list[Path], workers: int) -> float:
    """Images per second of the engine alone on ``workers`` processes, over these files."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_render_file, [str(f) for f in files[:workers]]))  # warm the workers up
        started = time.monotonic()
        list(pool.map(_render_file, [str(f) for f in files], chunksize=4))
        return len(files) / (time.monotonic() - started)


class RssSampler:
    """Samples the resident memory of each process group of the stack (and of the CLI) and keeps
    the peak of each, per phase."""

    def __init__(self, groups: dict[str, int]):
        self.groups = groups
        self.peaks: dict[str, dict[str, int]] = {}
        self.phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _group_rss() -> dict[int, int]:
        by_group: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                pgid = int(stat.rsplit(")", 1)[1].split()[2])
                rss_pages = int(Path(f"/proc/{entry.name}/statm").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            by_group[pgid] = by_group.get(pgid, 0) + rss_pages * os.sysconf("SC_PAGE_SIZE")
        return by_group

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            rss = self._group_rss()
            peaks = self.peaks.setdefault(self.phase, {})
            for name, pgid in list(self.groups.items()):
                if pgid in rss:
                    peaks[name] = max(peaks.get(name, 0), rss[pgid])


def run_job(stack: Stack, folder: Path, parallel: int, sampler: RssSampler, name: str) -> dict:
    """Upload ``folder`` with the CLI into an open job and wait for it; the figures of that job."""
    started = time.monotonic()
    cli = subprocess.Popen([sys.executable, "-m", "imageflow_cli", "--server", stack.base_url, "-q", "submit",
                            str(folder), "--recursive", "--parallel", str(parallel), "--operations",
                            json.dumps(OPERATIONS)], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    sampler.groups[f"cli ({name})"] = cli.pid
    job_id = cli.stdout.readline().strip()
    first_result = uploaded = None
    session = requests.Session()
    while True:
        job = session.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=30).json()
        now = time.monotonic()
        if first_result is None and job["succeeded"] + job["failed"]:
            first_result = now - started
        if uploaded is None and cli.poll() is not None:
            uploaded = now - started
            if cli.returncode:
                raise RuntimeError(f"the CLI failed: {cli.stderr.read()}")
        if job["status"] in ("completed", "completed_with_errors", "failed"):
            break
        time.sleep(0.1)
    total = time.monotonic() - started
    cli.wait()
    if job["failed"]:
        raise RuntimeError(f"{job['failed']} images failed")
    # The archive: time to its first byte, and the whole download.
    asked = time.monotonic()
    response = session.get(f"{stack.base_url}/api/v1/jobs/{job_id}/archive.zip", stream=True, timeout=600)
    chunks = response.iter_content(1024 * 1024)
    size = len(next(chunks))
    first_byte = time.monotonic() - asked
    for chunk in chunks:
        size += len(chunk)
    return {"job_id": job_id, "images": job["total"], "upload_s": round(uploaded or total, 2),
            "first_result_s": round(first_result, 2), "completed_s": round(total, 2),
            "images_per_s": round(job["total"] / total, 2), "archive_first_byte_s": round(first_byte, 3),
            "archive_s": round(time.monotonic() - asked, 2), "archive_mb": round(size / 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=4, help="the CLI's parallel uploads")
    parser.add_argument("--processors", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2, help="PROCESSOR_CONCURRENCY")
    parser.add_argument("--engine-sample", type=int, default=0, help="files for the bare engine (default: 10%%, "
                                                                     "at least 60)")
    args = parser.parse_args()
    workers = args.processors * args.concurrency
    with tempfile.TemporaryDirectory(prefix="imageflow-bigjob-") as tmp:
        tmp = Path(tmp)
        make_shoot(tmp / "warm", max(24, args.images // 20))
        files = make_shoot(tmp / "big", args.images)
        sample = files[:max(60, args.engine_sample or args.images // 10)]
        engine_ips = bare_engine(sample, workers)
        stack = Stack.on_free_ports(tmp / "data", processors=args.processors, env={
            "PROGRESS_FLUSH_SECONDS": "0.5", "PROCESSOR_CONCURRENCY": str(args.concurrency),
            "RATE_LIMIT_PER_SECOND": "0", "MAX_UPLOAD_BYTES": str(64 * 1024 * 1024),
            "MAX_FILES_PER_JOB": str(max(10_000, args.images)),
            # the shoot repeats a small pool of pictures: with dedupe most photos would be copies,
            # not renders, and the comparison with the bare engine would not be like for like
            "DEDUPE_OUTPUTS": "0"}).start()
        sampler = RssSampler({name: proc.pid for name, proc in stack.procs.items()}).start()
        try:
            sampler.phase = "warm-up job"
            warm = run_job(stack, tmp / "warm" / "shoot", args.parallel, sampler, "warm-up")
            sampler.phase = "big job"
            big = run_job(stack, tmp / "big" / "shoot", args.parallel, sampler, "big")
        finally:
            sampler.stop()
            stack.stop()
    mb = {phase: {name: round(v / 2 ** 20) for name, v in peaks.items()} for phase, peaks in sampler.peaks.items()}
    figures = {"images": args.images, "workers": workers, "cpus": os.cpu_count(),
               "bare_engine_images_per_s": round(engine_ips, 2), "pipeline": big, "warm_up": warm,
               "throughput_vs_engine": round(big["images_per_s"] / engine_ips, 3), "peak_rss_mb": mb}
    print(f"{args.images} images (0.5-12 MP JPEG/PNG -> 1024 px JPEG), {workers} render slots on "
          f"{os.cpu_count()} CPUs")
    print(f"  pipeline: {big['images_per_s']} images/s, first upload -> completed {big['completed_s']} s "
          f"(uploads done at {big['upload_s']} s)")
    print(f"  bare engine, same pictures, {workers} processes: {engine_ips:.2f} images/s -> pipeline is "
          f"{figures['throughput_vs_engine']:.0%} of it")
    print(f"  first upload -> first result: {big['first_result_s']} s")
    print(f"  archive.zip: first byte after {big['archive_first_byte_s']} s, {big['archive_mb']} MB in "
          f"{big['archive_s']} s")
    print("  peak RSS (MB) per process group, warm-up job of "
          f"{warm['images']} images vs the big job of {big['images']}:")
    for name in sorted({n for peaks in mb.values() for n in peaks}):
        print(f"    {name:24s} " + "  ".join(f"{phase}: {mb[phase].get(name, '-')}" for phase in mb
                                               if phase != "start"))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
