"""ImageFlow's engine side by side with thumbor, pyvips and Pillow, and the decode ceiling.

    ./scripts.sh bench peers                       # or: .venv/bin/python -m bench.peers
    ./scripts.sh bench peers --rounds 3 --seconds 3 --baseline c323524 --json peers.json

Every implementation fits the same inputs into 1024 x 1024 and writes a JPEG at quality
85. The peers are installed on first use, each into its own virtualenv under the cache
directory (``--cache``, default ``~/.cache/imageflow-bench``), with pip from PyPI at
pinned versions: thumbor (served over HTTP on 127.0.0.1, its PIL engine) and pyvips
(``thumbnail_buffer``, libvips' own fast path). ``--baseline REF`` adds the engine as it
was at a git commit (``engine@REF``), to compare output bytes and memory with today's.

The inputs are generated (and kept in the cache): a camera-like 12 MP JPEG, baseline and
progressive, a 4 MP JPEG, a 5K PNG render and a 16 MP WebP photo.

Each measurement is a fresh process pinned to one core (sched_setaffinity); rounds are
interleaved (every implementation on every input, then again) so that a change in the
machine's load falls on all of them alike. Times are CPU time per image (for thumbor, the
server process's CPU time per request; the client is not counted), which other programs
sharing the cores do not inflate. The decode ceiling is the fastest decode of the pixels
the resize needs, measured in the same run: libjpeg-turbo's DCT scaling (simplejpeg, Pillow
draft, libvips shrink-on-load) for JPEG, the fastest of Pillow and libvips for PNG and WebP.
Quality is the PSNR of each output against a full-resolution Lanczos reference of the same
size; memory is the peak RSS above the process's RSS with its libraries loaded. It prints one table and
judges nothing.
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

from bench.engine import _cpu_model, photo  # noqa: E402
from bench.peers_worker import warmup_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "peers_worker.py"

# The peers, each in its own virtualenv: pip from PyPI, pinned.
PEERS = {
    "thumbor": ["thumbor==7.8.0"],
    "pyvips": ["pyvips==3.2.0", "pyvips-binary==8.18.7"],
}
DECODERS = ("decode-simplejpeg", "decode-pillow", "decode-vips")
IMPLS = ("engine", "thumbor", "pyvips", "pillow-draft")


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
               engine_root: Path | None = None) -> dict:
    cmd = [python, str(WORKER), impl, str(source), str(output), str(seconds), str(min_runs), str(core)]
    if engine_root is not None:
        cmd.append(str(engine_root))
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} on {source.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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

    def image(self, name: str) -> bytes:
        status, body = self._get(f"/unsafe/fit-in/{1024}x{1024}/filters:format(jpeg)/{name}")
        if status != 200:
            raise RuntimeError(f"thumbor answered {status} for {name}")
        return body

    def measure(self, name: str, warmup: str, seconds: float, min_runs: int) -> dict:
        pid = self.process.pid
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        idle = _proc_status_kib(pid, "VmRSS")
        self.image(warmup)
        output = self.image(name)
        times = []
        deadline = time.perf_counter() + seconds
        while len(times) < min_runs or time.perf_counter() < deadline:
            cpu = _proc_cpu_seconds(pid)
            self.image(name)
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
        import numpy
        with Image.open(io.BytesIO(output)) as image:
            got = numpy.asarray(image.convert("RGB"), dtype=numpy.float64)
            size = image.size
        key = (source, size)
        if key not in self._scaled:
            if source not in self._full:
                with Image.open(source) as full:
                    self._full = {source: full.convert("RGB")}     # one full image held at a time
            ref = self._full[source].resize(size, Image.Resampling.LANCZOS)
            self._scaled[key] = numpy.asarray(ref, dtype=numpy.float64)
        mse = float(((got - self._scaled[key]) ** 2).mean())
        return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


# -- driver --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over every implementation")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per implementation, input and round")
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--cache", default=os.environ.get("IMAGEFLOW_BENCH_CACHE",
                                                          str(Path.home() / ".cache" / "imageflow-bench")))
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)), help="the core every run is pinned to")
    parser.add_argument("--baseline", help="also run the engine as it was at this git commit (engine@REF)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ", ".join(IMPLS))
    parser.add_argument("--inputs", default="all", help="comma-separated input names (default: all)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    cache = Path(args.cache).expanduser()
    started, load_start = time.time(), os.getloadavg()[0]
    impls = [name.strip() for name in args.impls.split(",") if name.strip()]
    pythons = {"engine": sys.executable, "pillow-draft": sys.executable, "decode-simplejpeg": sys.executable,
               "decode-pillow": sys.executable}
    vips_python = str(ensure_venv(cache, "pyvips"))
    pythons.update({"pyvips": vips_python, "decode-vips": vips_python})
    engine_roots: dict[str, Path] = {"engine": ROOT}
    if args.baseline:
        label = f"engine@{args.baseline}"
        engine_roots[label] = baseline_root(cache, args.baseline)
        pythons[label] = sys.executable
        impls.insert(impls.index("engine") + 1 if "engine" in impls else 0, label)
    inputs = make_inputs(cache / "inputs-v1")
    if args.inputs != "all":
        inputs = {name: inputs[name.strip()] for name in args.inputs.split(",")}

    with tempfile.TemporaryDirectory(prefix="imageflow-peers-") as tmp:
        work = Path(tmp)
        thumbor_python = ensure_venv(cache, "thumbor") if "thumbor" in impls else None
        warmups = {}
        for name, path in inputs.items():
            warmup = path.parent / f"warmup{path.suffix}"
            if not warmup.exists():
                warmup_image().save(warmup)
            warmups[name] = warmup.name
        runs: dict[tuple[str, str], list[dict]] = {}
        outputs: dict[tuple[str, str], bytes] = {}
        for round_index in range(args.rounds):
            for name, path in inputs.items():
                decoders = [d for d in DECODERS if d != "decode-simplejpeg" or path.suffix == ".jpg"]
                order = impls + decoders
                shift = round_index % len(order)
                for impl in order[shift:] + order[:shift]:
                    if impl == "thumbor":
                        # a fresh server each time, so that its peak memory is this input's
                        thumbor = Thumbor(thumbor_python, path.parent, args.core, work)
                        try:
                            result = thumbor.measure(name, warmups[name], args.seconds, args.min_runs)
                        finally:
                            thumbor.close()
                    else:
                        out = work / f"{impl}-{name}.out"
                        result = run_worker(pythons[impl], impl, path, out, args.seconds, args.min_runs,
                                            args.core, engine_roots.get(impl))
                        result["output"] = out.read_bytes()
                    outputs[(name, impl)] = result.pop("output")
                    runs.setdefault((name, impl), []).append(result)
                    print(f"  round {round_index + 1} {name} {impl}: "
                          f"{statistics.median(result['times']) * 1000:.1f} ms", file=sys.stderr, flush=True)

    reference = Reference()
    rows = []
    for name, path in inputs.items():
        with Image.open(path) as image:
            size = image.size
        decoders = [d for d in DECODERS if (name, d) in runs]
        medians = {impl: statistics.median(t for run in runs[(name, impl)] for t in run["times"])
                   for impl in impls + decoders if (name, impl) in runs}
        ceiling = min(medians[d] for d in decoders)
        fastest_decoder = min(decoders, key=medians.get)
        for impl in impls + [fastest_decoder]:
            data = outputs[(name, impl)]
            is_decoder = impl in DECODERS
            rows.append({
                "input": name, "input_size": f"{size[0]}x{size[1]}", "impl": impl,
                "cpu_ms": medians[impl] * 1000, "images_per_s": 1 / medians[impl],
                "share_of_ceiling": ceiling / medians[impl],
                "psnr_db": None if is_decoder else reference.psnr(path, data),
                "output_bytes": None if is_decoder else len(data),
                "output_size": None if is_decoder else "x".join(map(str, Image.open(io.BytesIO(data)).size)),
                "peak_above_idle_mb": max(run["peak_above_idle_mb"] for run in runs[(name, impl)]),
                "runs": sum(len(run["times"]) for run in runs[(name, impl)]),
            })

    print(f"# ImageFlow engine vs peers: fit 1024x1024 -> JPEG q85  ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"command: ./scripts.sh bench peers {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"machine: {_cpu_model()}, {os.cpu_count()} cores; load average at the start {load_start:.2f}, "
          f"at the end {os.getloadavg()[0]:.2f} (other work on the machine)")
    print(f"one core each (core {args.core}), CPU time per image (thumbor: its server's CPU per request), "
          f"{args.rounds} interleaved rounds x {args.seconds:g} s; "
          f"peers: {', '.join(pin for pins in PEERS.values() for pin in pins)}")
    print("ceiling = the fastest decode of the pixels the resize needs (named in its row); "
          "PSNR vs a full-resolution Lanczos reference; peak RSS above the process with its libraries loaded")
    print()
    print("| input | implementation | CPU ms/img | img/s/core | share of ceiling | PSNR dB | output KB | "
          "out size | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        ceiling_row = row["impl"] in DECODERS
        label = ("ceiling: " if ceiling_row else "") + row["impl"]
        psnr = "" if ceiling_row else f"{row['psnr_db']:.2f}"
        kib = "" if ceiling_row else f"{row['output_bytes'] / 1024:.1f}"
        print(f"| {row['input']} ({row['input_size']}) | {label} | {row['cpu_ms']:.1f} | {row['images_per_s']:.1f} | "
              f"{100 * row['share_of_ceiling']:.0f} % | {psnr} | {kib} | {row['output_size'] or ''} | "
              f"{row['peak_above_idle_mb']:.0f} |")
    print(f"\n(total {time.time() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "core": args.core, "rounds": args.rounds,
                                               "seconds": args.seconds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
