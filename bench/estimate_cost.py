"""What estimates cost the image-handler (issue 24): the two attacks of the security review.

    python -m bench.estimate_cost                       # starts a local stack on free ports
    python -m bench.estimate_cost --base-url http://127.0.0.1:8080 --handler-pid <gunicorn worker pid>

1. memory: three parallel estimates of three 7000x7000 PNGs (about 160 KB each): the
   image-handler process's peak RSS (VmHWM), and the peak RSS of its whole process tree
   (its estimate render workers included), sampled every 50 ms;
2. CPU: one estimate of a 900 KB JPEG with 8 widths x 4 formats of variants and AVIF
   ``quality: auto``: CPU seconds of the handler's process tree;
3. availability: eight of those estimates at once, and meanwhile ``GET /api/v1/jobs`` every
   0.2 s: their answers (200, 429, 503) and the GETs' slowest latency.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image, ImageDraw

VARIANTS = [{"op": "variants", "widths": [320, 480, 640, 800, 1024, 1280, 1600, 2048],
             "formats": ["jpeg", "webp", "avif", "png"]},
            {"op": "format", "format": "avif", "quality": "auto"}]


def big_png() -> bytes:
    """7000x7000, compressing to about 160 KB (what the review sent)."""
    image = Image.new("RGB", (7000, 7000), (230, 230, 235))
    draw = ImageDraw.Draw(image)
    for y in range(0, 7000, 140):
        draw.line((0, y, 7000, y), fill=(40, 90, 160), width=4)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def photo_jpeg(target: int = 900_000) -> bytes:
    """A noisy photo-like JPEG of about ``target`` bytes (12 MP scaled down until it fits)."""
    base = Image.effect_noise((1000, 750), 60).convert("RGB")
    gradient = Image.linear_gradient("L").resize((1000, 750)).convert("RGB")
    base = Image.blend(base, gradient, 0.6)
    for side in (4000, 3600, 3200, 2800, 2400, 2000):
        out = io.BytesIO()
        base.resize((side, side * 3 // 4), Image.Resampling.BICUBIC).save(out, "JPEG", quality=80)
        if out.tell() <= target:
            return out.getvalue()
    return out.getvalue()


# -- the handler's processes ----------------------------------------------------------------------
def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def tree(pid: int) -> list[int]:
    pids = [pid]
    for child in children(pid):
        pids += tree(child)
    return pids


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])      # utime, stime, and of reaped children (a replaced worker)
    return total / os.sysconf("SC_CLK_TCK")


class TreeWatch:
    """Samples the RSS of the handler's process tree (peak) while running."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(status_kb(p, "VmRSS") for p in tree(self.pid)))
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# -- the attacks ---------------------------------------------------------------------------------
def post_estimate(base_url: str, files: list[tuple[str, bytes]], operations, headers: dict) -> requests.Response:
    return requests.post(f"{base_url}/api/v1/jobs", headers=headers, timeout=600,
                         files=[("files", (name, data)) for name, data in files],
                         data={"estimate": "true", "operations": json.dumps(operations)})


def run(base_url: str, handler_pid: int, headers: dict, cpu_only: bool = False) -> dict:
    png, jpeg = big_png(), photo_jpeg()
    figures = {"png_bytes": len(png), "jpeg_bytes": len(jpeg), "handler_rss_mb_before": status_kb(handler_pid, "VmRSS") // 1024}
    # 1. memory
    if cpu_only:
        return cpu_figures(base_url, handler_pid, headers, jpeg, figures)
    with TreeWatch(handler_pid) as watch, ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: post_estimate(base_url, [(f"big{i}-{k}.png", png) for k in range(3)],
                                                        [{"op": "format", "format": "webp"}], headers), range(3)))
    figures["memory_attack_statuses"] = sorted(a.status_code for a in answers)
    figures["handler_peak_rss_mb"] = status_kb(handler_pid, "VmHWM") // 1024
    figures["handler_tree_peak_rss_mb"] = watch.peak // 1024
    cpu_figures(base_url, handler_pid, headers, jpeg, figures)
    return parallel_figures(base_url, handler_pid, headers, jpeg, figures)


def cpu_figures(base_url: str, handler_pid: int, headers: dict, jpeg: bytes, figures: dict) -> dict:
    """2. CPU of one estimate, alone."""
    before = cpu_seconds(tree(handler_pid))
    started = time.monotonic()
    answer = post_estimate(base_url, [("photo.jpg", jpeg)], VARIANTS, headers)
    figures["cpu_estimate_status"] = answer.status_code
    figures["cpu_seconds_per_estimate"] = round(cpu_seconds(tree(handler_pid)) - before, 2)
    figures["cpu_estimate_wall_seconds"] = round(time.monotonic() - started, 2)
    if answer.ok:
        figures["cpu_estimate_samples"] = answer.json()["samples"]
    return figures


def parallel_figures(base_url: str, handler_pid: int, headers: dict, jpeg: bytes, figures: dict) -> dict:
    """3. eight at once, and GETs meanwhile."""
    latencies, done = [], threading.Event()

    def poll():
        while not done.is_set():
            t0 = time.monotonic()
            try:
                code = requests.get(f"{base_url}/api/v1/jobs", headers=headers, timeout=60).status_code
            except requests.RequestException:
                code = "timeout"
            latencies.append((round(time.monotonic() - t0, 3), code))
            done.wait(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    before = cpu_seconds(tree(handler_pid))
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post_estimate, base_url, [(f"photo{i}.jpg", jpeg)], VARIANTS, headers) for i in range(8)]
        poller.start()
        statuses = sorted(f.result().status_code for f in futures)
    done.set()
    poller.join()
    figures["parallel_statuses"] = statuses
    figures["parallel_cpu_seconds"] = round(cpu_seconds(tree(handler_pid)) - before, 2)
    figures["get_jobs_count"] = len(latencies)
    figures["get_jobs_max_seconds"] = max((lat for lat, _ in latencies), default=None)
    figures["get_jobs_codes"] = sorted({str(code) for _, code in latencies})
    figures["handler_peak_rss_mb_end"] = status_kb(handler_pid, "VmHWM") // 1024
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url")
    parser.add_argument("--handler-pid", type=int, help="the image-handler's gunicorn worker (with --base-url)")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--cpu-only", action="store_true", help="only the one estimate's CPU seconds (2.)")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    if args.base_url:
        print(json.dumps(run(args.base_url, args.handler_pid, headers, args.cpu_only), indent=1))
        return 0
    from devtools.stack import Stack

    with tempfile.TemporaryDirectory(prefix="estimate-cost-") as tmp:
        stack = Stack.on_free_ports(Path(tmp), env={"RATE_LIMIT_PER_SECOND": "0"}).start()
        try:
            [worker] = children(stack.procs["image-handler"].pid)   # gunicorn's one worker
            print(json.dumps(run(stack.base_url, worker, headers, args.cpu_only), indent=1))
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
