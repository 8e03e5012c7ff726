"""ImageFlow's engine side by side with sharp, thumbor, pyvips and Pillow, the decode
ceiling and the limit (decode + encode).

    ./scripts.sh bench peers                       # or: .venv/bin/python -m bench.peers
    ./scripts.sh bench peers --rounds 3 --seconds 3 --baseline c323524 --json peers.json

Every implementation fits the same inputs into 1024 x 1024 and writes the case's output:
JPEG q85 (baseline, progressive and 4 MP JPEGs; an opaque PNG render; an RGBA product
cut-out, flattened onto white), WebP q80 (the cut-out with its alpha; a WebP photo), AVIF
q60 and JPEG XL q80 (the 12 MP JPEG). AVIF is encoded at libavif speed 8 by everyone (the
engine's setting; effort 1 in libvips' and sharp's terms). The peers are installed on first
use under the cache directory (``--cache``, default ``~/.cache/imageflow-bench``), pinned:
thumbor (served over HTTP on 127.0.0.1, its PIL engine) and pyvips (``thumbnail_buffer``,
libvips' own fast path) each in its own virtualenv with pip from PyPI; sharp with ``npm ci``
from bench/sharp/package-lock.json (its prebuilt libvips comes from npm as @img/sharp-*
packages), driven by bench/sharp/worker.js with one libvips thread (``sharp.concurrency(1)``,
``UV_THREADPOOL_SIZE=1``) and no cache (``sharp.cache(false)``). A peer that cannot write a
format is left out of that case and said so (no JPEG XL in thumbor, pyvips-binary or sharp's
prebuilt libvips; no AVIF in thumbor without plugins). ``--baseline REF`` adds the engine as
it was at a git commit (``engine@REF``).

Each measurement is a fresh process pinned to one core (sched_setaffinity); rounds are
interleaved (every implementation on every case, then again) so that a change in the
machine's load falls on all of them alike. Times are CPU time per image (for thumbor, the
server process's CPU time per request; the client is not counted), which other programs
sharing the cores do not inflate. The ceiling is the fastest decode of the pixels the
resize needs, measured in the same run: libjpeg-turbo's DCT scaling (simplejpeg, Pillow
draft, libvips shrink-on-load) for JPEG, the fastest of Pillow and libvips for PNG and WebP.
The limit is that decode plus the cheapest encode of the output image (libjpeg-turbo with
standard Huffman tables through simplejpeg or Pillow; libwebp at its default method; AVIF and
JPEG XL at the engine's speed), one after the other: the work no render can skip.
Quality is the PSNR of each output (flattened onto white where it has alpha) against a
full-resolution Lanczos reference of the same size; memory is the peak RSS above the
process's RSS with its libraries loaded. It prints the tables and judges nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

if __package__ in (None, ""):          # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from bench.engine import _cpu_model, cut_out, photo  # noqa: E402
from bench.peers_worker import BOX, _on_white, warmup_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "peers_worker.py"
SHARP_DIR = Path(__file__).resolve().parent / "sharp"          # package.json, package-lock.json, worker.js
SHARP_WORKER = SHARP_DIR / "worker.js"

# The peers, each in its own virtualenv: pip from PyPI, pinned.
PEERS = {
    "thumbor": ["thumbor==7.8.0"],
    "pyvips": ["pyvips==3.2.0", "pyvips-binary==8.18.7"],
}
DECODERS = ("decode-simplejpeg", "decode-pillow", "decode-vips")
# the cheapest encoders of each output, for the limit
ENCODERS = {"jpeg": ("encode-simplejpeg", "encode-pillow"), "webp": ("encode-pillow",),
            "avif": ("encode-pillow",), "jxl": ("encode-pillow",)}
IMPLS = ("engine", "sharp", "thumbor", "pyvips", "pillow-draft")
# what each implementation writes (sharp says for itself: its worker answers "unsupported")
WRITES = {"thumbor": {"jpeg", "webp"}, "pyvips": {"jpeg", "webp", "avif"}}

# case: (input, output format, quality)
CASES = {
    "12mp-baseline.jpg>jpeg": ("12mp-baseline.jpg", "jpeg", 85),
    "12mp-progressive.jpg>jpeg": ("12mp-progressive.jpg", "jpeg", 85),
    "4mp.jpg>jpeg": ("4mp.jpg", "jpeg", 85),
    "5k-render.png>jpeg": ("5k-render.png", "jpeg", 85),
    "14mp-cutout-rgba.png>jpeg": ("14mp-cutout-rgba.png", "jpeg", 85),
    "14mp-cutout-rgba.png>webp": ("14mp-cutout-rgba.png", "webp", 80),
    "16mp.webp>webp": ("16mp.webp", "webp", 80),
    "12mp-baseline.jpg>avif": ("12mp-baseline.jpg", "avif", 60),
    "12mp-baseline.jpg>jxl": ("12mp-baseline.jpg", "jxl", 80),
}


def writes(impl: str, fmt: str) -> bool:
    return fmt in WRITES.get(impl.split("@")[0], {fmt})


# -- inputs --------------------------------------------------------------------------------

def render_like(size: tuple[int, int]) -> Image.Image:
    """A 3D-render or screenshot-like picture: the photo's shapes and gradients without
    sensor grain, so it compresses like a render in PNG."""
    from PIL import ImageFilter
    return photo((size[0] // 4, size[1] // 4), seed=55).filter(ImageFilter.GaussianBlur(1)).resize(
        size, Image.Resampling.BICUBIC)


def make_inputs(directory: Path, scale: float = 1.0) -> dict[str, Path]:
    """The generated inputs (``scale`` < 1 makes small ones for a smoke test)."""
    def sized(width, height):
        return max(32, int(width * scale)), max(24, int(height * scale))
    specs = {
        "12mp-baseline.jpg": (lambda: photo(sized(4000, 3000)), "JPEG", {"quality": 90}),
        "12mp-progressive.jpg": (lambda: photo(sized(4000, 3000)), "JPEG", {"quality": 90, "progressive": True}),
        "4mp.jpg": (lambda: photo(sized(2304, 1728), seed=7), "JPEG", {"quality": 90}),
        "5k-render.png": (lambda: render_like(sized(5120, 2880)), "PNG", {"compress_level": 6}),
        "16mp.webp": (lambda: photo(sized(4608, 3456), seed=21), "WEBP", {"quality": 90}),
        # a product cut-out as shops send it (bench.engine's): RGBA, transparent around the object
        "14mp-cutout-rgba.png": (lambda: cut_out(sized(4500, 3264)), "PNG", {}),
    }
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (make, fmt, params) in specs.items():
        path = directory / name
        if not path.exists():
            partial = path.with_suffix(".part")
            make().save(partial, fmt, **params)
            partial.rename(path)
        paths[name] = path
    return paths


# -- virtualenvs ---------------------------------------------------------------------------

def ensure_venv(cache: Path, name: str) -> Path:
    """The peer's virtualenv (created on first use); returns its python."""
    pins = PEERS[name]
    venv = cache / f"venv-{name}-{hashlib.sha256(' '.join(pins).encode()).hexdigest()[:10]}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        print(f"installing {' '.join(pins)} into {venv} ...", file=sys.stderr, flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
                       check=True)
        stamp.write_text(" ".join(pins))
    return python


def sharp_version() -> str:
    return json.loads((SHARP_DIR / "package.json").read_text())["dependencies"]["sharp"]


def ensure_sharp(cache: Path) -> Path:
    """sharp installed with ``npm ci`` from the committed lock into its own folder of the
    cache (on first use); returns that folder. Needs node and npm (and the npm registry)."""
    lock = (SHARP_DIR / "package-lock.json").read_bytes()
    folder = cache / f"sharp-{sharp_version()}-{hashlib.sha256(lock).hexdigest()[:10]}"
    stamp = folder / ".installed"
    if not stamp.exists():
        if shutil.which("npm") is None or shutil.which("node") is None:
            raise RuntimeError("sharp needs node and npm on the PATH (or leave it out: --impls without sharp)")
        print(f"installing sharp {sharp_version()} into {folder} (npm ci) ...", file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SHARP_DIR / name, folder / name)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True)
        stamp.write_text(sharp_version())
    return folder


def baseline_root(cache: Path, ref: str) -> Path:
    """The project's ``imageflow`` package as it was at git ``ref``, exported once."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    root = cache / f"engine-{commit[:12]}"
    if not (root / "imageflow").exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "imageflow"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


# -- running one measurement ---------------------------------------------------------------

def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", VIPS_CONCURRENCY="1", PYTHONDONTWRITEBYTECODE="1")


def run_worker(python: str, impl: str, source: Path, output: Path, seconds: float, min_runs: int, core: int,
               engine_root: Path | None = None, fmt: str = "jpeg", quality: int = 85) -> dict:
    cmd = [python, str(WORKER), impl, str(source), str(output), str(seconds), str(min_runs), str(core),
           fmt, str(quality)]
    if engine_root is not None:
        cmd.append(str(engine_root))
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} on {source.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- sharp: a Node process reading jobs on stdin (bench/sharp/worker.js) --------------------

def sharp_job(source: Path, output: Path, fmt: str, quality: int, seconds: float, min_runs: int,
              warmup: Path | None = None) -> str:
    """One job for the sharp worker, as the line it reads: fit inside the box, the
    output's format and quality (AVIF at libavif speed 8, as everyone), flattened onto white
    for JPEG."""
    job = {"input": str(source), "output": str(output), "width": BOX, "height": BOX, "fit": "inside",
           "format": fmt, "quality": quality, "effort": 1 if fmt == "avif" else None, "background": "#ffffff",
           "seconds": seconds, "min_runs": min_runs, "warmup": str(warmup) if warmup else None}
    return json.dumps(job) + "\n"


def parse_sharp_answer(line: str) -> dict:
    """The sharp worker's answer to one job: the measurement (CPU seconds per image and
    memory), or ``{"unsupported": why}`` for a format this sharp cannot write; a job it
    refused or an answer that is not one is an error naming what was wrong."""
    try:
        answer = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"the sharp worker answered something that is not JSON: {line[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise RuntimeError(f"the sharp worker answered {line[:200]!r}, not a JSON object")
    if "error" in answer:
        raise RuntimeError(f"the sharp worker refused the job: {answer['error']}")
    if "unsupported" in answer:
        return {"unsupported": str(answer["unsupported"])}
    times = answer.get("times")
    if not isinstance(times, list) or not times or not all(isinstance(t, (int, float)) and t >= 0 for t in times):
        raise RuntimeError(f"the sharp worker's answer has no CPU times per image: {line[:200]!r}")
    for field in ("peak_above_idle_mb", "idle_rss_mb"):
        if not isinstance(answer.get(field), (int, float)):
            raise RuntimeError(f"the sharp worker's answer has no {field}: {line[:200]!r}")
    return {"impl": "sharp", "times": [float(t) for t in times], "idle_rss_mb": float(answer["idle_rss_mb"]),
            "peak_above_idle_mb": float(answer["peak_above_idle_mb"])}


def run_sharp(folder: Path, job: str, core: int) -> dict:
    """One job in a fresh Node process pinned to one core, libuv's pool at one thread."""
    env = dict(_env(), UV_THREADPOOL_SIZE="1", IMAGEFLOW_SHARP_DIR=str(folder))
    done = subprocess.run(["node", str(SHARP_WORKER)], input=job, env=env, capture_output=True, text=True,
                          timeout=900, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the sharp worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return parse_sharp_answer(lines[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_cpu_seconds(pid: int) -> float:
    """CPU time of every thread of a process, in nanoseconds' precision (schedstat; the
    utime/stime of /proc/<pid>/stat count in 10 ms ticks, too coarse for one request)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass      # a thread that ended meanwhile
    return total / 1e9


def _proc_status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Thumbor:
    """A thumbor server on 127.0.0.1, pinned to one core, serving files from one folder."""

    def __init__(self, python: Path, images: Path, core: int, work: Path):
        self.port = _free_port()
        config = work / "thumbor.conf"
        # the same output as everyone: fit-in 1024, baseline JPEG q85, no storage of any kind
        config.write_text(textwrap.dedent(f"""\
            LOADER = 'thumbor.loaders.file_loader'
            FILE_LOADER_ROOT_PATH = {str(images)!r}
            STORAGE = 'thumbor.storages.no_storage'
            RESULT_STORAGE = None
            ENGINE = 'thumbor.engines.pil'
            QUALITY = {85}
            PROGRESSIVE_JPEG = False
            RESPECT_ORIENTATION = True
            ALLOW_UNSAFE_URL = True
            MAX_AGE = 0
            """))
        self.log = open(work / "thumbor.log", "wb")
        thumbor = python.parent / "thumbor"
        self.process = subprocess.Popen(
            [str(thumbor), "--ip", "127.0.0.1", "--port", str(self.port), "--conf", str(config), "-l", "error"],
            env=_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {core}))
        deadline = time.monotonic() + 60
        while True:
            try:
                if self._get("/healthcheck")[0] == 200:
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"thumbor did not start: {(work / 'thumbor.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def _get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def image(self, name: str, fmt: str = "jpeg", quality: int = 85) -> bytes:
        status, body = self._get(f"/unsafe/fit-in/{BOX}x{BOX}/filters:format({fmt}):quality({quality})/{name}")
        if status != 200:
            raise RuntimeError(f"thumbor answered {status} for {name}")
        return body

    def measure(self, name: str, warmup: str, seconds: float, min_runs: int, fmt: str = "jpeg",
                quality: int = 85) -> dict:
        pid = self.process.pid
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        idle = _proc_status_kib(pid, "VmRSS")
        self.image(warmup, fmt, quality)
        output = self.image(name, fmt, quality)
        times = []
        deadline = time.perf_counter() + seconds
        while len(times) < min_runs or time.perf_counter() < deadline:
            cpu = _proc_cpu_seconds(pid)
            self.image(name, fmt, quality)
            times.append(_proc_cpu_seconds(pid) - cpu)
        return {"impl": "thumbor", "times": times, "output": output, "idle_rss_mb": idle / 1024,
                "peak_above_idle_mb": (_proc_status_kib(pid, "VmHWM") - idle) / 1024}

    def close(self):
        try:
            os.killpg(self.process.pid, 15)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.log.close()


# -- quality -------------------------------------------------------------------------------

class Reference:
    """Full-resolution decode, Lanczos straight to each output's size (no reducing gap)."""

    def __init__(self):
        self._full: dict[Path, Image.Image] = {}
        self._scaled: dict[tuple[Path, tuple[int, int]], object] = {}

    def psnr(self, source: Path, output: bytes) -> float:
        """PSNR of the output against the reference; both flattened onto white where they
        have alpha (what is seen, not the colour hidden under transparent pixels)."""
        import numpy
        from imageflow.engine import jxl
        jxl.available()                                             # JPEG XL outputs open too
        with Image.open(io.BytesIO(output)) as image:
            got = numpy.asarray(_on_white(image), dtype=numpy.float64)
            size = image.size
        key = (source, size)
        if key not in self._scaled:
            if source not in self._full:
                with Image.open(source) as full:
                    # one full image held at a time; premultiplied by Pillow's resize if RGBA
                    self._full = {source: full.convert("RGBA" if "A" in full.getbands() else "RGB")}
            ref = self._full[source].resize(size, Image.Resampling.LANCZOS)
            self._scaled[key] = numpy.asarray(_on_white(ref), dtype=numpy.float64)
        mse = float(((got - self._scaled[key]) ** 2).mean())
        return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


# -- driver --------------------------------------------------------------------------------

def _median(runs: list[dict]) -> float:
    return statistics.median(t for run in runs for t in run["times"])


def summarise(inputs: dict[str, Path], cases: list[str], impls: list[str], runs: dict, outputs: dict,
              reference: Reference) -> tuple[list[dict], list[dict]]:
    """Per case: one row per implementation, the ceiling and the limit; and one summary row
    (the engine against each peer, the ceiling and the limit)."""
    rows, summary = [], []
    for case in cases:
        name, fmt, quality = CASES[case]
        path = inputs[name]
        with Image.open(path) as image:
            size = image.size
        decoders = [d for d in DECODERS if (name, d) in runs]
        encoders = [e for e in ENCODERS[fmt] if (case, e) in runs]
        ceiling_decoder = min(decoders, key=lambda d: _median(runs[(name, d)]))
        ceiling = _median(runs[(name, ceiling_decoder)])
        encoder = min(encoders, key=lambda e: _median(runs[(case, e)]))
        limit = ceiling + _median(runs[(case, encoder)])
        case_rows = {}
        for impl in impls:
            if (case, impl) not in runs:
                continue
            cpu = _median(runs[(case, impl)])
            data = outputs[(case, impl)]
            with Image.open(io.BytesIO(data)) as out:
                out_size = "x".join(map(str, out.size))
            case_rows[impl] = row = {
                "case": case, "input": name, "input_size": f"{size[0]}x{size[1]}", "format": fmt, "quality": quality,
                "impl": impl, "cpu_ms": cpu * 1000, "images_per_s": 1 / cpu, "share_of_ceiling": ceiling / cpu,
                "share_of_limit": limit / cpu, "psnr_db": reference.psnr(path, data), "output_bytes": len(data),
                "output_size": out_size, "peak_above_idle_mb": max(r["peak_above_idle_mb"] for r in runs[(case, impl)]),
                "runs": sum(len(r["times"]) for r in runs[(case, impl)])}
            rows.append(row)
        ceiling_peak = max(r["peak_above_idle_mb"] for r in runs[(name, ceiling_decoder)])
        # the limit's memory is not one process's (its encoder process also made the image it encodes)
        for label, cpu, peak in ((f"ceiling: {ceiling_decoder}", ceiling, ceiling_peak),
                                 (f"limit: {ceiling_decoder} + {encoder}", limit, None)):
            rows.append({"case": case, "input": name, "input_size": f"{size[0]}x{size[1]}", "format": fmt,
                         "quality": quality, "impl": label, "cpu_ms": cpu * 1000, "images_per_s": 1 / cpu,
                         "share_of_ceiling": ceiling / cpu, "share_of_limit": limit / cpu, "psnr_db": None,
                         "output_bytes": None, "output_size": None, "peak_above_idle_mb": peak, "runs": None})
        peers = {impl: row for impl, row in case_rows.items() if impl.split("@")[0] != "engine"}
        engine = case_rows.get("engine")
        if engine and peers:
            fastest = min(peers, key=lambda impl: peers[impl]["cpu_ms"])
            best_psnr = max(peers, key=lambda impl: peers[impl]["psnr_db"])
            smallest = min(peers, key=lambda impl: peers[impl]["output_bytes"])
            summary.append({
                "case": case, "engine_ms": engine["cpu_ms"], "fastest_peer": fastest,
                "engine_vs_fastest_peer": peers[fastest]["cpu_ms"] / engine["cpu_ms"],
                "engine_vs_sharp": peers["sharp"]["cpu_ms"] / engine["cpu_ms"] if "sharp" in peers else None,
                "engine_psnr_db": engine["psnr_db"], "best_peer_psnr_db": peers[best_psnr]["psnr_db"],
                "best_psnr_peer": best_psnr, "engine_bytes_vs_smallest": engine["output_bytes"] /
                peers[smallest]["output_bytes"], "smallest_peer": smallest, "ceiling_ms": ceiling * 1000,
                "limit_ms": limit * 1000, "engine_share_of_ceiling": engine["share_of_ceiling"],
                "engine_share_of_limit": engine["share_of_limit"]})
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over every implementation")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per implementation, case and round")
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--cache", default=os.environ.get("IMAGEFLOW_BENCH_CACHE",
                                                          str(Path.home() / ".cache" / "imageflow-bench")))
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)), help="the core every run is pinned to")
    parser.add_argument("--baseline", help="also run the engine as it was at this git commit (engine@REF)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ", ".join(IMPLS))
    parser.add_argument("--cases", default="all", help="comma-separated case names (default: all): " + ", ".join(CASES))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    cache = Path(args.cache).expanduser()
    started, load_start = time.time(), os.getloadavg()
    impls = [name.strip() for name in args.impls.split(",") if name.strip()]
    unknown = [impl for impl in impls if impl not in IMPLS]
    cases = list(CASES) if args.cases == "all" else [case.strip() for case in args.cases.split(",")]
    unknown += [case for case in cases if case not in CASES]
    if unknown:
        parser.error(f"unknown implementations or cases: {', '.join(unknown)}")
    pythons = {"engine": sys.executable, "pillow-draft": sys.executable, "decode-simplejpeg": sys.executable,
               "decode-pillow": sys.executable, "encode-simplejpeg": sys.executable, "encode-pillow": sys.executable}
    vips_python = str(ensure_venv(cache, "pyvips"))
    pythons.update({"pyvips": vips_python, "decode-vips": vips_python})
    sharp_folder = ensure_sharp(cache) if "sharp" in impls else None
    engine_roots: dict[str, Path] = {"engine": ROOT}
    if args.baseline:
        label = f"engine@{args.baseline}"
        engine_roots[label] = baseline_root(cache, args.baseline)
        pythons[label] = sys.executable
        impls.insert(impls.index("engine") + 1 if "engine" in impls else 0, label)
    all_inputs = make_inputs(cache / "inputs-v1")
    inputs = {name: all_inputs[name] for name in dict.fromkeys(CASES[case][0] for case in cases)}

    unsupported: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory(prefix="imageflow-peers-") as tmp:
        work = Path(tmp)
        thumbor_python = ensure_venv(cache, "thumbor") if "thumbor" in impls else None
        warmups = {}
        for name, path in inputs.items():
            warmup = path.parent / f"warmup{path.suffix}"
            if not warmup.exists():
                warmup_image().save(warmup)
            warmups[name] = warmup
        runs: dict[tuple[str, str], list[dict]] = {}
        outputs: dict[tuple[str, str], bytes] = {}
        for round_index in range(args.rounds):
            decoded = set()
            for case in cases:
                name, fmt, quality = CASES[case]
                path = inputs[name]
                decoders = [] if name in decoded else \
                    [d for d in DECODERS if d != "decode-simplejpeg" or path.suffix == ".jpg"]
                decoded.add(name)                  # an input's decode is measured once a round
                order = [impl for impl in impls if writes(impl, fmt) and (case, impl) not in unsupported]
                order += decoders + list(ENCODERS[fmt])
                shift = round_index % len(order)
                for impl in order[shift:] + order[:shift]:
                    key = (name, impl) if impl in DECODERS else (case, impl)
                    out = work / f"{impl}-{case}.out"
                    if impl == "thumbor":
                        # a fresh server each time, so that its peak memory is this case's
                        thumbor = Thumbor(thumbor_python, path.parent, args.core, work)
                        try:
                            result = thumbor.measure(name, warmups[name].name, args.seconds, args.min_runs, fmt,
                                                     quality)
                        finally:
                            thumbor.close()
                        out.write_bytes(result.pop("output"))
                    elif impl == "sharp":
                        result = run_sharp(sharp_folder, sharp_job(path, out, fmt, quality, args.seconds,
                                                                   args.min_runs, warmups[name]), args.core)
                        if "unsupported" in result:
                            unsupported[(case, impl)] = result["unsupported"]
                            print(f"  {case} {impl}: {result['unsupported']}", file=sys.stderr, flush=True)
                            continue
                    else:
                        result = run_worker(pythons[impl], impl, path, out, args.seconds, args.min_runs,
                                            args.core, engine_roots.get(impl), fmt, quality)
                    outputs[key] = out.read_bytes()
                    runs.setdefault(key, []).append(result)
                    print(f"  round {round_index + 1} {case} {impl}: "
                          f"{statistics.median(result['times']) * 1000:.1f} ms", file=sys.stderr, flush=True)

    rows, summary = summarise(inputs, cases, impls, runs, outputs, Reference())
    load_end = os.getloadavg()
    print(f"# ImageFlow engine vs peers: fit {BOX}x{BOX}, each case's output  ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"command: ./scripts.sh bench peers {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"machine: {_cpu_model()}, {os.cpu_count()} cores; load average (1/5/15 min) at the start "
          f"{'/'.join(f'{x:.2f}' for x in load_start)}, at the end {'/'.join(f'{x:.2f}' for x in load_end)} "
          "(other work on the machine)")
    print(f"one core each (core {args.core}), CPU time per image (thumbor: its server's CPU per request), "
          f"{args.rounds} interleaved rounds x {args.seconds:g} s; peers: "
          f"{', '.join(pin for pins in PEERS.values() for pin in pins)}, sharp=={sharp_version()} (npm)")
    print("ceiling = the fastest decode of the pixels the resize needs; limit = that decode + the cheapest encode "
          "of the output (both named in their rows); PSNR vs a full-resolution Lanczos reference, flattened onto "
          "white; peak RSS above the process with its libraries loaded")
    for (case, impl), why in unsupported.items():
        print(f"not measured: {impl} on {case}: {why}")
    for case in cases:
        for impl in impls:
            if not writes(impl, CASES[case][1]):
                print(f"not measured: {impl} on {case}: it cannot write {CASES[case][1]}")
    print()
    print("| case | implementation | CPU ms/img | img/s/core | share of ceiling | share of limit | PSNR dB | "
          "output KB | out size | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        bound = row["psnr_db"] is None
        print(f"| {row['case']} ({row['input_size']}) | {row['impl']} | {row['cpu_ms']:.1f} | "
              f"{row['images_per_s']:.1f} | {100 * row['share_of_ceiling']:.0f} % | "
              f"{100 * row['share_of_limit']:.0f} % | {'' if bound else format(row['psnr_db'], '.2f')} | "
              f"{'' if bound else format(row['output_bytes'] / 1024, '.1f')} | {row['output_size'] or ''} | "
              f"{'' if row['peak_above_idle_mb'] is None else format(row['peak_above_idle_mb'], '.0f')} |")
    if summary:
        print()
        print("| case | engine ms | engine speed / fastest peer | engine speed / sharp | PSNR engine / best peer dB | "
              "bytes engine / smallest peer | ceiling ms | limit ms | engine share of ceiling | "
              "engine share of limit |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in summary:
            sharp_ratio = "" if row["engine_vs_sharp"] is None else f"{row['engine_vs_sharp']:.2f}x"
            print(f"| {row['case']} | {row['engine_ms']:.1f} | {row['engine_vs_fastest_peer']:.2f}x "
                  f"({row['fastest_peer']}) | {sharp_ratio} | {row['engine_psnr_db']:.2f} / "
                  f"{row['best_peer_psnr_db']:.2f} ({row['best_psnr_peer']}) | "
                  f"{row['engine_bytes_vs_smallest']:.3f} ({row['smallest_peer']}) | {row['ceiling_ms']:.1f} | "
                  f"{row['limit_ms']:.1f} | {100 * row['engine_share_of_ceiling']:.0f} % | "
                  f"{100 * row['engine_share_of_limit']:.0f} % |")
    print(f"\n(total {time.time() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary, "core": args.core,
                                               "rounds": args.rounds, "seconds": args.seconds,
                                               "load_start": load_start, "load_end": load_end,
                                               "unsupported": [list(k) + [v] for k, v in unsupported.items()]},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
