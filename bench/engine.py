"""Benchmark of the image engine against a naive Pillow baseline, measured in one run.

    .venv/bin/python -m bench.engine            # or: python bench/engine.py
    .venv/bin/python -m bench.engine --seconds 5 --rounds 3 --json bench-result.json

It generates the test images (a camera-like 12 MP JPEG at quality 90, about 3.5 MB; a
2 MP JPEG; a 1 MP RGBA PNG; a 14.7 MP product cut-out as RGBA, LA and palette PNGs and,
opaque, its colours alone), then runs every case twice, with the engine and with the
naive way (open, LANCZOS resize at full resolution, save), and the 14 MP PNG cases a third
time with libvips' thumbnail (pyvips), reported against the opaque PNG of the same pixels
and against pyvips in a table of their own; each in a fresh single-threaded
process so that images/s is per core and the peak memory (ru_maxrss) belongs to that case
alone. Times are the CPU time of that process (the cost on one core; other programs
competing for the cores inflate wall time, not this); engine and naive runs alternate, and
the report gives the ratio of the two. It also times the encoders (JPEG, WebP, AVIF) on the same
1024 px image. No assertion on timings anywhere: this prints figures, it does not judge.
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):          # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

# -- test images ---------------------------------------------------------------------------


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.frombytes("L", size, random.Random(seed).randbytes(size[0] * size[1]))


def photo(size: tuple[int, int], seed: int = 1234) -> Image.Image:
    """A camera-like picture: smooth colour fields, shapes with soft edges and sensor
    grain, so it compresses (and decodes) like a photo rather than a flat test card."""
    rnd = random.Random(seed)
    width, height = size
    base = Image.merge("RGB", [_noise((8, 6), seed + i).resize(size, Image.Resampling.BICUBIC) for i in range(3)])
    draw = ImageDraw.Draw(base)
    scale = width / 4000
    for _ in range(300):
        x, y, r = rnd.randrange(width), rnd.randrange(height), max(2, int(rnd.randrange(20, 400) * scale))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    base = base.filter(ImageFilter.GaussianBlur(3 * scale))
    grain = Image.merge("RGB", [_noise(size, seed + 10 + i) for i in range(3)])
    return Image.blend(base, grain, 0.12)


def graphic_rgba(size: tuple[int, int], seed: int = 99) -> Image.Image:
    """A 1 MP RGBA PNG like a logo or UI capture: flat shapes, soft shadows, transparency."""
    rnd = random.Random(seed)
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rnd.randrange(size[0]), rnd.randrange(size[1])
        w, h = rnd.randrange(4, max(5, size[0] // 3)), rnd.randrange(4, max(5, size[1] // 3))
        draw.rounded_rectangle((x, y, x + w, y + h), radius=12,
                               fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256),
                                     rnd.randrange(80, 256)))
    return image.filter(ImageFilter.GaussianBlur(1.5))


def cut_out(size: tuple[int, int], seed: int = 5) -> Image.Image:
    """A product cut-out as shops send it: a photo-like object with an anti-aliased edge on
    a transparent background (whose hidden colour is black, as most tools store it)."""
    width, height = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse((width * 2 // 15, height // 11, width * 13 // 15, height * 10 // 11), fill=255)
    draw.rectangle((width * 2 // 5, height * 3 // 5, width * 3 // 5, height * 49 // 50), fill=255)
    image = photo(size, seed)
    image.putalpha(mask.filter(ImageFilter.GaussianBlur(max(1.0, 2 * width / 4500))))
    return image.convert("RGBA")


def make_inputs(directory: Path, scale: float = 1.0, names=None) -> dict[str, Path]:
    """Write the test images (``scale`` < 1 makes small ones for a smoke test; ``names``
    only those)."""
    def sized(width, height):
        return max(16, int(width * scale)), max(16, int(height * scale))
    # a 14.7 MP cut-out in each form a PNG carries alpha, and its colours without the alpha
    # (the same pixels, opaque): what the alpha path costs beyond the opaque one
    cutout = functools.cache(lambda: cut_out(sized(4500, 3264)))
    files = {"12mp.jpg": lambda: photo(sized(4000, 3000)), "2mp.jpg": lambda: photo(sized(1632, 1224), seed=7),
             "1mp-rgba.png": lambda: graphic_rgba(sized(1000, 1000)),
             "14mp-cutout-rgba.png": cutout, "14mp-cutout-opaque.png": lambda: cutout().convert("RGB"),
             "14mp-cutout-la.png": lambda: cutout().convert("LA"),
             "14mp-cutout-palette.png": lambda: cutout().quantize(255)}       # mode P, alpha in a tRNS chunk
    paths = {}
    for name, make in files.items():
        if names is not None and name not in names:
            continue
        path = directory / name
        if not path.exists():
            image = make()
            if name.endswith(".jpg"):
                image.save(path, "JPEG", quality=90)
            else:
                image.save(path, "PNG")
        paths[name] = path
    return paths


# -- cases ---------------------------------------------------------------------------------

FIT_1024 = {"op": "resize", "width": 1024, "height": 1024}
JPEG_85 = {"op": "format", "format": "jpeg", "quality": 85}
WEBP_80 = {"op": "format", "format": "webp", "quality": 80}

CASES = {
    # name: (input, engine operations, naive steps [(box, pillow format, save params)], note)
    "12mp-jpeg-fit1024-jpeg85": ("12mp.jpg", [FIT_1024, {"op": "format", "format": "jpeg", "quality": 85}],
                                 [(1024, "JPEG", {"quality": 85})], "the target case"),
    "12mp-jpeg-fit1024-jpeg85-pillow-only": ("12mp.jpg", [FIT_1024, {"op": "format", "format": "jpeg", "quality": 85}],
                                             [(1024, "JPEG", {"quality": 85})],
                                             "engine without simplejpeg and libvips (Pillow draft 1/2, Pillow Lanczos)"),
    "12mp-jpeg-fit1024-webp80": ("12mp.jpg", [FIT_1024, {"op": "format", "format": "webp", "quality": 80}],
                                 [(1024, "WEBP", {"quality": 80})], ""),
    "12mp-jpeg-fit1024-avif60": ("12mp.jpg", [FIT_1024, {"op": "format", "format": "avif", "quality": 60}],
                                 [(1024, "AVIF", {"quality": 60, "max_threads": 1})], ""),
    "12mp-jpeg-variants-3x2": ("12mp.jpg",
                               [{"op": "variants", "widths": [320, 1024, 2048], "formats": ["jpeg", "webp"]}],
                               [(box, fmt, params) for box in (320, 1024, 2048)
                                for fmt, params in (("JPEG", {"quality": 85}), ("WEBP", {"quality": 80}))],
                               "6 outputs from one decode; naive decodes 6 times"),
    "2mp-jpeg-fit1024-jpeg85": ("2mp.jpg", [FIT_1024, {"op": "format", "format": "jpeg", "quality": 85}],
                                [(1024, "JPEG", {"quality": 85})], ""),
    "1mp-png-rgba-fit512-png": ("1mp-rgba.png", [{"op": "resize", "width": 512, "height": 512}],
                                [(512, "PNG", {"compress_level": 6})], ""),
    "14mp-png-opaque-fit1024-jpeg85": ("14mp-cutout-opaque.png", [FIT_1024, JPEG_85], [(1024, "JPEG", {"quality": 85})],
                                       "the cut-out's colours without alpha: the cost the alpha paths compare to"),
    "14mp-png-rgba-fit1024-jpeg85": ("14mp-cutout-rgba.png", [FIT_1024, JPEG_85], [(1024, "JPEG", {"quality": 85})],
                                     "a product cut-out, flattened onto white"),
    "14mp-png-la-fit1024-jpeg85": ("14mp-cutout-la.png", [FIT_1024, JPEG_85], [(1024, "JPEG", {"quality": 85})], ""),
    "14mp-png-palette-fit1024-jpeg85": ("14mp-cutout-palette.png", [FIT_1024, JPEG_85],
                                        [(1024, "JPEG", {"quality": 85})], "palette with a tRNS chunk"),
    "14mp-png-rgba-fit1024-webp80": ("14mp-cutout-rgba.png", [FIT_1024, WEBP_80],
                                     [(1024, "WEBP", {"quality": 80})], "alpha kept"),
}

# The PNG cases also run libvips' own thumbnail of the same file (pyvips' fastest path:
# premultiply, box shrink, Lanczos reduce, unpremultiply), interleaved with the others.
ALPHA_BASE = "14mp-png-opaque-fit1024-jpeg85"
PYVIPS_CASES = {case for case in CASES if case.startswith("14mp-png-")}


def pyvips_once(data: bytes, steps) -> int:
    """libvips' thumbnail, flattened onto white for JPEG as the engine does, encoded by libvips."""
    import pyvips
    total = 0
    for box, fmt, params in steps:
        image = pyvips.Image.thumbnail_buffer(data, box, height=box, size="down")
        if fmt == "JPEG":
            if image.hasalpha():
                image = image.flatten(background=[255] * (image.bands - 1))
            total += len(image.jpegsave_buffer(Q=params["quality"], optimize_coding=True, keep="none"))
        else:
            total += len(image.write_to_buffer("." + fmt.lower(), Q=params["quality"], keep="none"))
    return total


def naive_once(data: bytes, steps) -> int:
    """The naive way: open, LANCZOS resize of the full-resolution image, save."""
    total = 0
    for box, fmt, params in steps:
        image = Image.open(io.BytesIO(data))
        ratio = min(box / image.width, box / image.height, 1.0)
        size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        resized = image.resize(size, Image.Resampling.LANCZOS)
        if fmt == "JPEG" and resized.mode not in ("RGB", "L"):
            rgba = resized.convert("RGBA")              # flattened onto white, as the engine does
            resized = Image.new("RGB", size, (255, 255, 255))
            resized.paste(rgba, mask=rgba.getchannel("A"))
        out = io.BytesIO()
        resized.save(out, fmt, **params)
        total += out.tell()
    return total


def _status_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process from /proc. Not ru_maxrss: across
    exec Linux carries the parent's peak over, which here is the image generator's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")          # resets VmHWM to the current RSS
    except OSError:
        pass


def run_worker(case: str, impl: str, path: Path, seconds: float, min_runs: int = 3) -> dict:
    """Run one case repeatedly in this process; return timings and memory."""
    from imageflow.engine import Limits, decoding, render, vips
    from imageflow.engine.schema import resolve_operations

    name, operations, steps, _ = CASES[case]
    data = path.read_bytes()
    if case.endswith("pillow-only"):
        decoding.FAST_JPEG = False
        vips.ENABLED = False
    resolved = resolve_operations(None, operations)
    limits = Limits()
    decoding._simplejpeg()                  # lazy imports (numpy, libvips) are part of idle, not of the work
    vips.pyvips()
    _reset_peak()
    idle_kib = _status_kib("VmRSS")
    if impl == "engine":
        def once():
            return sum(len(output.data) for output in render(data, resolved, limits))
    elif impl == "pyvips":
        def once():
            return pyvips_once(data, steps)
    else:
        def once():
            return naive_once(data, steps)
    out_bytes = once()                      # warm-up (and the output size)
    times: list[float] = []
    wall: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < deadline:
        start, cpu = time.perf_counter(), time.process_time()
        once()
        # CPU time of this single-threaded process: the cost per core, which other
        # programs competing for the cores do not inflate the way they inflate wall time
        times.append(time.process_time() - cpu)
        wall.append(time.perf_counter() - start)
    peak_kib = _status_kib("VmHWM")
    return {"case": case, "impl": impl, "times": times, "wall_times": wall, "output_bytes": out_bytes,
            "idle_rss_mb": idle_kib / 1024, "peak_rss_mb": peak_kib / 1024,
            "peak_above_idle_mb": (peak_kib - idle_kib) / 1024}


def encode_costs(path: Path, repeats: int = 5) -> list[dict]:
    """Time each encoder of the engine on the same 1024 px image (one thread)."""
    from imageflow.engine import Limits, render
    from imageflow.engine.encoding import EncodeOptions, encode
    from imageflow.engine.schema import resolve_operations

    resized = render(path.read_bytes(), resolve_operations(None, [FIT_1024, {"op": "format", "format": "png"}]),
                     Limits())[0]
    image = Image.open(io.BytesIO(resized.data))
    image.load()
    rows = []
    for fmt in ("jpeg", "webp", "avif"):
        times, size = [], 0
        for _ in range(repeats):
            start = time.process_time()
            size = len(encode([image], fmt, EncodeOptions(), Limits()).data)
            times.append(time.process_time() - start)
        rows.append({"format": fmt, "ms": statistics.median(times) * 1000, "bytes": size})
    return rows


# -- driver --------------------------------------------------------------------------------

def _spawn(case: str, impl: str, path: Path, seconds: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", VIPS_CONCURRENCY="1")
    cmd = [sys.executable, "-m", "bench.engine", "--worker", case, impl, str(path), str(seconds)]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"worker {case}/{impl} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alpha_table(cases: list[str], results: dict) -> list[dict]:
    """Print the PNG cases against the opaque PNG of the same pixels and against libvips'
    thumbnail of the same file (all measured interleaved in this run); return the figures."""
    def median_ms(case, impl):
        return 1000 * statistics.median(t for run in results[(case, impl)] for t in run["times"])
    png = [case for case in cases if case in PYVIPS_CASES]
    if not png:
        return []
    base, base_vips = median_ms(ALPHA_BASE, "engine"), median_ms(ALPHA_BASE, "pyvips")
    print()
    print(f"PNG paths (CPU ms per image, median) against the opaque PNG of the same pixels ({ALPHA_BASE}) "
          "and libvips' thumbnail of the same file:")
    print("| case | engine ms | pyvips thumbnail ms | engine / opaque engine | pyvips / opaque pyvips | "
          "engine / pyvips | engine KiB | pyvips KiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for case in png:
        engine, vips_ms = median_ms(case, "engine"), median_ms(case, "pyvips")
        row = {"case": case, "pyvips_ms": vips_ms, "engine_vs_opaque": engine / base,
               "pyvips_vs_opaque": vips_ms / base_vips, "engine_vs_pyvips": engine / vips_ms,
               "pyvips_output_bytes": results[(case, "pyvips")][0]["output_bytes"]}
        rows.append(row)
        print(f"| {case} | {engine:.0f} | {vips_ms:.0f} | {row['engine_vs_opaque']:.2f}x | "
              f"{row['pyvips_vs_opaque']:.2f}x | {row['engine_vs_pyvips']:.2f}x | "
              f"{results[(case, 'engine')][0]['output_bytes'] / 1024:.0f} | {row['pyvips_output_bytes'] / 1024:.0f} |")
    return rows


def _impls(case: str) -> tuple[str, ...]:
    return ("engine", "naive", "pyvips") if case in PYVIPS_CASES else ("engine", "naive")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case and implementation per round")
    parser.add_argument("--rounds", type=int, default=1, help="alternating engine/naive rounds per case")
    parser.add_argument("--cases", default="all", help="comma-separated case names (default: all)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--dir", help="where to keep the generated images (default: a temporary directory)")
    parser.add_argument("--worker", nargs=4, metavar=("CASE", "IMPL", "PATH", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        case, impl, path, seconds = args.worker
        print(json.dumps(run_worker(case, impl, Path(path), float(seconds))))
        return 0

    cases = list(CASES) if args.cases == "all" else [c.strip() for c in args.cases.split(",")]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    if any(case in PYVIPS_CASES for case in cases) and ALPHA_BASE not in cases:
        cases.insert(0, ALPHA_BASE)         # the alpha paths are reported as ratios to it
    with tempfile.TemporaryDirectory(prefix="imageflow-bench-") as tmp:
        directory = Path(args.dir) if args.dir else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.time()
        inputs = make_inputs(directory, names={CASES[case][0] for case in cases} | {"12mp.jpg"})
        print(f"# ImageFlow engine benchmark  ({time.strftime('%Y-%m-%d %H:%M')})")
        print(f"command: {' '.join([Path(sys.executable).name, '-m', 'bench.engine', *(argv or sys.argv[1:])])}")
        print(f"cpu: {_cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
              f"python {platform.python_version()}; one thread per worker process, CPU time per image")
        for name, path in inputs.items():
            with Image.open(path) as image:
                print(f"input {name}: {image.width}x{image.height} {image.mode}, {path.stat().st_size / 1e6:.2f} MB")
        results: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.rounds):
            for case in cases:
                path = inputs[CASES[case][0]]
                for impl in _impls(case):
                    results.setdefault((case, impl), []).append(_spawn(case, impl, path, args.seconds))
        rows = []
        for case in cases:
            engine = [t for run in results[(case, "engine")] for t in run["times"]]
            naive = [t for run in results[(case, "naive")] for t in run["times"]]
            e_med, n_med = statistics.median(engine), statistics.median(naive)
            peak = max(run["peak_rss_mb"] for run in results[(case, "engine")])
            above = max(run["peak_above_idle_mb"] for run in results[(case, "engine")])
            naive_peak = max(run["peak_above_idle_mb"] for run in results[(case, "naive")])
            rows.append({"case": case, "note": CASES[case][3], "engine_images_per_s": 1 / e_med,
                         "naive_images_per_s": 1 / n_med, "ratio": n_med / e_med, "engine_ms": e_med * 1000,
                         "naive_ms": n_med * 1000,
                         "engine_wall_ms": 1000 * statistics.median(
                             t for run in results[(case, "engine")] for t in run["wall_times"]),
                         "naive_wall_ms": 1000 * statistics.median(
                             t for run in results[(case, "naive")] for t in run["wall_times"]),
                         "engine_peak_rss_mb": peak, "engine_peak_above_idle_mb": above,
                         "naive_peak_above_idle_mb": naive_peak, "engine_runs": len(engine), "naive_runs": len(naive),
                         "engine_output_bytes": results[(case, "engine")][0]["output_bytes"],
                         "naive_output_bytes": results[(case, "naive")][0]["output_bytes"]})
        print()
        print("| case | engine img/s/core | naive img/s/core | ratio | engine ms | naive ms | "
              "engine peak RSS MB (above idle) | naive peak above idle MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print(f"| {row['case']} | {row['engine_images_per_s']:.1f} | {row['naive_images_per_s']:.1f} | "
                  f"{row['ratio']:.2f}x | {row['engine_ms']:.1f} | {row['naive_ms']:.1f} | "
                  f"{row['engine_peak_rss_mb']:.0f} ({row['engine_peak_above_idle_mb']:.0f}) | "
                  f"{row['naive_peak_above_idle_mb']:.0f} |")
        for row in rows:
            if row["note"]:
                print(f"- {row['case']}: {row['note']}")
        alpha_rows = alpha_table(cases, results)
        if alpha_rows:
            rows_by_case = {row["case"]: row for row in rows}
            for row in alpha_rows:
                rows_by_case[row["case"]].update(row)
        encoders = encode_costs(inputs["12mp.jpg"])
        print()
        print("encode cost of the 1024x768 output (one thread, median CPU time):")
        jpeg_ms = encoders[0]["ms"]
        for row in encoders:
            print(f"- {row['format']}: {row['ms']:.1f} ms ({row['ms'] / jpeg_ms:.1f}x JPEG), "
                  f"{row['bytes'] / 1024:.0f} KiB")
        print(f"\n(total {time.time() - started:.0f} s)")
        if args.json:
            Path(args.json).write_text(json.dumps({"cases": rows, "encoders": encoders,
                                                   "cpu": _cpu_model(), "load": os.getloadavg()[0]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
