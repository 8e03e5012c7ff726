"""Pipeline benchmark on the local backends: the real processes, over HTTP and the bus.

    ./scripts.sh bench pipeline            (python -m bench.pipeline)
    ./scripts.sh bench pipeline --rounds 5 --images 60 --latency 0.05   (the defaults)

Reports, from one run on this machine:
- the image processor's throughput (a real ``services.image_processor`` process fed tasks on the
  bus, results counted off the bus) against the bare engine (the same renders in as many plain
  processes, no storage, no bus) on the same cores, in interleaved rounds, with 1 and 2 render slots
  (PROCESSOR_CONCURRENCY), and with every storage and bus call of the processor ``--latency`` seconds
  slower (devtools.latency, wrapped around the processor from the outside) at several in-flight limits
  (PROCESSOR_MAX_IN_FLIGHT). Each row also gives the CPU its processes used (so a ratio can be read
  against the cores it really got) and the CPU other processes on the machine used meanwhile;
- latency from POST to `completed` for a single 2 MP JPEG (resize to 1024 px, JPEG q85) on the
  whole local stack, median and p90 over repeated jobs;
- throughput of a 20-image mixed-format batch on the whole stack (images per second, POST to completed).
It prints the figures and judges nothing.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import requests
from PIL import Image

from devtools.stack import REPO_ROOT, Stack, free_port
from imageflow import domain
from imageflow.bootstrap import make_backends
from imageflow.engine import Limits, render
from imageflow.messages import Result, Task
from imageflow.settings import Settings

OPERATIONS = [{"op": "resize", "width": 1024, "height": 1024}, {"op": "format", "format": "jpeg", "quality": 85}]


def camera_like(size=(1632, 1224), quality=90) -> bytes:
    """A 2 MP JPEG with detail (gradients and noise), not a flat colour."""
    base = Image.radial_gradient("L").resize(size).convert("RGB")
    noise = Image.effect_noise(size, 40).convert("RGB")
    picture = Image.blend(base, noise, 0.35)
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# -- CPU accounting (Linux /proc) ---------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # the fields after "pid (comm)"


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and every live descendant (the render workers)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text()
                                                                  .split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass
class Measured:
    images: int
    seconds: float
    cpu_seconds: float  # of the measured processes (processor and its render workers, or the engine's)
    other_cpu_seconds: float  # everything else on the machine meanwhile (other agents, this script)
    finished: list[float]  # when each image was done (time.time(): a result on the bus, a render back)

    @property
    def batch_per_second(self) -> float:
        """The whole batch, first task published to last result (a pipeline's fill and drain included)."""
        return self.images / self.seconds

    @property
    def per_second(self) -> float:
        """Steady state: the rate between the 10th and the 90th percentile of completions (a processor
        with a backlog, as under KEDA; the first results wait out one task's round trips)."""
        done = sorted(self.finished)
        first, last = int(0.1 * len(done)), int(0.9 * len(done)) - 1
        if last <= first or done[last] <= done[first]:
            return self.batch_per_second
        return (last - first) / (done[last] - done[first])

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds

    @property
    def other_cores(self) -> float:
        return self.other_cpu_seconds / self.seconds


class CpuWindow:
    """CPU used by one process tree, and by the rest of the machine, between start() and stop()."""

    def __init__(self, pids):
        self.pids = list(pids)

    def _ours(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self.pids)

    def start(self) -> "CpuWindow":
        self.ours, self.machine, self.started = self._ours(), machine_busy_seconds(), time.monotonic()
        return self

    def stop(self, finished: list[float]) -> Measured:
        seconds = time.monotonic() - self.started
        ours = self._ours() - self.ours
        return Measured(len(finished), seconds, ours, max(0.0, machine_busy_seconds() - self.machine - ours),
                        finished)


# -- the bare engine ----------------------------------------------------------------------------
def _render_bytes(data: bytes) -> int:
    limits = Limits.from_settings(Settings.from_env({}))
    return sum(len(item.data) for item in render(data, OPERATIONS, limits))


def bare_engine(inputs: list[bytes], processes: int) -> Measured:
    """The same renders in ``processes`` plain worker processes: the input bytes in, the output's size
    back; no storage, no bus, no processor."""
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        list(pool.map(_render_bytes, inputs[:2 * processes]))  # start and warm every worker
        window = CpuWindow(p.pid for p in pool._processes.values()).start()
        finished: list[float] = []
        futures = [pool.submit(_render_bytes, data) for data in inputs]
        for future in futures:
            future.add_done_callback(lambda _: finished.append(time.time()))
        for future in futures:
            future.result()
        time.sleep(0.01)  # the last callbacks
        return window.stop(finished)


# -- the image processor, a real process on the local backends -----------------------------------
@dataclass(frozen=True)
class ProcessorSetup:
    slots: int
    in_flight: int = 0  # PROCESSOR_MAX_IN_FLIGHT; 0: the default
    latency: float = 0.0  # seconds added to every storage and bus call (devtools.latency)


class ProcessorUnderTest:
    """One image processor process in its own data directory, fed tasks by this script."""

    def __init__(self, root: Path, setup: ProcessorSetup):
        self.settings = Settings.from_env({"IMAGEFLOW_DATA_DIR": str(root), "RETRY_MIN_BACKOFF_SECONDS": "0"})
        self.backends = make_backends(self.settings)  # creates the topics and subscriptions
        env = {**os.environ, "IMAGEFLOW_DATA_DIR": str(root), "BIND_HOST": "127.0.0.1", "PORT": str(free_port()),
               "PROCESSOR_CONCURRENCY": str(setup.slots), "PROCESSOR_MAX_IN_FLIGHT": str(setup.in_flight),
               "PYTHONUNBUFFERED": "1"}
        module = "services.image_processor"
        if setup.latency:
            env["IMAGEFLOW_FAULTS"] = f"storage_latency_seconds={setup.latency},bus_latency_seconds={setup.latency}"
            module = "devtools.faulty_processor"  # the same service, the latency wrapped around its blobs and bus
        self.log = open(root / "processor.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.health = f"http://127.0.0.1:{env['PORT']}/healthz"
        self._inputs: list[str] = []

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"the processor exited ({self.process.returncode}); see its log")
            try:
                if requests.get(self.health, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("the processor did not come up")

    def store(self, inputs: list[bytes]) -> None:
        job_id = domain.new_id()
        for i, data in enumerate(inputs):
            path = domain.input_path(job_id, domain.new_id(), f"photo{i}.jpg")
            self.backends.blobs.put(path, data, "image/jpeg")
            self._inputs.append(path)

    def run(self, count: int, timeout: float = 600) -> Measured:
        """Publish ``count`` tasks at once (over the stored inputs) and wait for their results."""
        window = CpuWindow([self.process.pid]).start()
        for i in range(count):
            path = self._inputs[i % len(self._inputs)]
            job_id, image_id = path.split("/")[0], domain.new_id()
            task = Task(job_id=job_id, image_id=image_id, input_path=path,
                        output_path=domain.output_stem(job_id, image_id, "photo.jpg"), operations=OPERATIONS)
            self.backends.bus.publish(self.settings.topics.tasks, task.encode(), {"job_id": job_id})
        finished: list[float] = []
        end = time.monotonic() + timeout
        while len(finished) < count:
            if time.monotonic() > end or self.process.poll() is not None:
                raise RuntimeError(f"{len(finished)}/{count} results; see the processor's log")
            for message in self.backends.bus.pull(self.settings.topics.results_sub, max_messages=100, timeout=0.5):
                result = Result.decode(message.data)
                if result.status != "succeeded":
                    raise RuntimeError(f"a task failed: {result.error}")
                message.ack()
                finished.append(message.publish_time)  # when the processor published it
        return window.stop(finished)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()
        self.backends.close()


def processor_run(tmp: Path, setup: ProcessorSetup, inputs: list[bytes]) -> Measured:
    root = Path(tempfile.mkdtemp(dir=tmp))
    processor = ProcessorUnderTest(root, setup)
    try:
        processor.wait_ready()
        processor.store(inputs)
        processor.run(max(4, 2 * setup.slots))  # start and warm the render workers
        return processor.run(len(inputs))
    finally:
        processor.stop()


def throughput(rounds: int, images: int, latency: float) -> dict:
    """Interleaved rounds of every variant; each figure is the median over the rounds."""
    photos = [camera_like() for _ in range(8)]  # the noise differs from one to the next
    inputs = [photos[i % len(photos)] for i in range(images)]
    ms = f"+{latency * 1000:.0f} ms"
    default = Settings(processor_concurrency=2).processor_in_flight
    variants: dict[str, object] = {
        "engine x1": 1, "engine x2": 2,
        "processor c1": ProcessorSetup(1), "processor c2": ProcessorSetup(2),
        f"processor c2 {ms}, in flight 2 (= slots, as before)": ProcessorSetup(2, 2, latency),
        f"processor c2 {ms}, in flight 8": ProcessorSetup(2, 8, latency),
        f"processor c2 {ms}, in flight {default} (default)": ProcessorSetup(2, 0, latency)}
    runs: dict[str, list[Measured]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, variant in variants.items():
                if isinstance(variant, int):
                    runs[name].append(bare_engine(inputs, variant))
                else:
                    runs[name].append(processor_run(Path(tmp), variant, inputs))
    rows = {}
    for name, measured in runs.items():
        rows[name] = {"images_per_s": statistics.median(m.per_second for m in measured),
                      "batch_images_per_s": statistics.median(m.batch_per_second for m in measured),
                      "cpu_ms_per_image": statistics.median(1000 * m.cpu_seconds / m.images for m in measured),
                      "cores_used": statistics.median(m.cores for m in measured),
                      "other_cores": statistics.median(m.other_cores for m in measured),
                      "rounds": [round(m.per_second, 2) for m in measured]}

    cores = os.cpu_count() or 1
    slots = {name: variant if isinstance(variant, int) else variant.slots for name, variant in variants.items()}

    def on_free_cores(name: str, m: Measured) -> float:
        """Steady images/s scaled to the cores the run would have had on an idle machine, from those the
        other load left it (min(slots, cores - other load)). Other processes also fill the cores a
        run leaves idle (waiting on I/O), so this flatters such a run: read it beside the raw ratio."""
        ideal = min(slots[name], cores)
        return m.per_second * ideal / max(0.1, min(ideal, cores - m.other_cores))

    def ratio(a: str, b: str) -> dict:
        """a over b, round by round (the same load on both), median: steady images/s; the same scaled to
        idle cores (CPU-normalised); and images per CPU second (the same work for the CPU it got)."""
        pairs = list(zip(runs[a], runs[b]))
        return {"of": [a, b], "throughput": statistics.median(x.per_second / y.per_second for x, y in pairs),
                "cpu_normalised": statistics.median(on_free_cores(a, x) / on_free_cores(b, y) for x, y in pairs),
                "best_rounds": max(x.per_second for x in runs[a]) / max(y.per_second for y in runs[b]),
                "per_cpu_second": statistics.median((x.images / x.cpu_seconds) / (y.images / y.cpu_seconds)
                                                    for x, y in pairs)}

    names = list(variants)
    ratios = {"processor c2 / c1": ratio("processor c2", "processor c1"),
              "engine x2 / x1": ratio("engine x2", "engine x1"),
              "processor c2 / engine x2": ratio("processor c2", "engine x2")}
    for name in names[4:]:
        ratios[f"{name} / engine x2"] = ratio(name, "engine x2")
    return {"machine_cores": cores, "images": images, "rounds": rounds, "latency_s": latency,
            "rows": rows, "ratios": ratios}


def print_throughput(figures: dict) -> None:
    print(f"image processor throughput: {figures['images']} x 2 MP JPEG -> 1024 px JPEG q85, "
          f"median of {figures['rounds']} interleaved rounds, {figures['machine_cores']} cores")
    print("| run | images/s (steady) | best round | whole batch | CPU ms/image | cores used | other load (cores) |")
    print("|---|---|---|---|---|---|---|")
    for name, row in figures["rows"].items():
        print(f"| {name} | {row['images_per_s']:.1f} | {max(row['rounds']):.1f} | {row['batch_images_per_s']:.1f} "
              f"| {row['cpu_ms_per_image']:.0f} | {row['cores_used']:.2f} | {row['other_cores']:.2f} |")
    print()
    print("| ratio | images/s (median of the rounds' ratios) | CPU-normalised (median) | images/s (best round "
          "of each) | images per CPU second (median) |")
    print("|---|---|---|---|---|")
    for name, value in figures["ratios"].items():
        print(f"| {name} | {value['throughput']:.2f} | {value['cpu_normalised']:.2f} | {value['best_rounds']:.2f} "
              f"| {value['per_cpu_second']:.2f} |")


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
    ops = OPERATIONS
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
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the processor throughput")
    parser.add_argument("--images", type=int, default=60, help="tasks per processor throughput run")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to each storage and bus call")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--only", choices=("processor", "stack"), help="run one part only")
    args = parser.parse_args()
    figures = {}
    if args.only != "stack":
        figures["processor"] = throughput(args.rounds, args.images, args.latency)
        print_throughput(figures["processor"])
    if args.only != "processor":
        stack = figures["stack"] = run(args.repeats, args.batch)
        print(f"single 2 MP JPEG, POST -> completed: median {stack['single_2mp_median_s'] * 1000:.0f} ms, "
              f"p90 {stack['single_2mp_p90_s'] * 1000:.0f} ms over {stack['repeats']} jobs")
        print(f"{stack['batch_images']}-image mixed batch: {stack['batch_images_per_s']:.1f} images/s "
              f"({stack['batch_seconds']:.2f} s POST -> completed)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
