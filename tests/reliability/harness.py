"""What the reliability suites drive the real processes with: a stack whose processes can
carry their own fault settings, a supervisor that restarts crashed processes (as Kubernetes
would), a chaos monkey that SIGKILLs them, a SendGrid stand-in that counts mails, workloads
whose every output can be checked, and the invariant check run after every job.
"""
from __future__ import annotations

import io
import json
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from PIL import Image

from devtools.stack import Stack
from imageflow.blobstore.local import LocalBlobStore

RESTARTABLE = ("image-handler", "interaction-manager", "image-processor", "email-function", "push-bridge")


# -- the stack ------------------------------------------------------------------------------
@dataclass
class ChaosStack(Stack):
    """A :class:`Stack` where each process may get extra environment (``process_env[name]``,
    ``"image-processor*"`` matching every replica), and whose process table is guarded by a
    lock so a supervisor and a chaos monkey can share it."""

    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def commands(self):
        cmds = super().commands()
        for name, (argv, extra) in cmds.items():
            for pattern, env in self.process_env.items():
                if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
                    extra.update(env)
        return cmds

    def start_process(self, name: str):
        with self.lock:
            return super().start_process(name)

    def kill_process(self, name: str) -> None:
        with self.lock:
            super().kill_process(name)

    def processor_names(self) -> list[str]:
        return [n for n in self.commands() if n.startswith("image-processor")]

    def restart_processors(self, faults: str | None) -> None:
        """Stop every processor gracefully and start them again with ``IMAGEFLOW_FAULTS=faults``."""
        for name in self.processor_names():
            self.stop_process(name, timeout=20)
        self.process_env["image-processor*"] = {"IMAGEFLOW_FAULTS": faults or ""}
        for name in self.processor_names():
            self.start_process(name)
        self.wait_ready(60)

    def log_text(self, prefix: str) -> str:
        """Every log of the processes whose name starts with ``prefix`` (restarts append)."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{prefix}*.log")))

    def blobs(self) -> LocalBlobStore:
        return LocalBlobStore(self.data_dir / "blobs")


class Supervisor:
    """Restarts any process of the stack that died, after a short random delay, as a
    Deployment's restart policy would. ``restarts`` counts them per process."""

    def __init__(self, stack: ChaosStack, delay: tuple[float, float] = (0.2, 1.0), seed: int = 0):
        self.stack, self.delay, self.rng = stack, delay, random.Random(seed)
        self.restarts: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def __enter__(self) -> "Supervisor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            with self.stack.lock:
                dead = [name for name, proc in self.stack.procs.items() if proc.poll() is not None]
            for name in dead:
                if self._stop.wait(self.rng.uniform(*self.delay)):
                    return
                with self.stack.lock:
                    if self.stack.procs[name].poll() is not None:
                        self.stack.start_process(name)
                        self.restarts[name] += 1


@dataclass
class Kill:
    name: str
    at: float          # seconds since the chaos started
    done: int          # images finished when it happened
    total: int


class ChaosMonkey:
    """SIGKILLs each service in turn, in a random order per round, at random moments;
    the :class:`Supervisor` brings them back. ``progress()`` returns (done, total)."""

    def __init__(self, stack: ChaosStack, rounds: int, progress, *, gap: tuple[float, float] = (0.5, 3.0),
                 seed: int = 1, services=RESTARTABLE):
        self.stack, self.rounds, self.progress, self.gap = stack, rounds, progress, gap
        self.rng = random.Random(seed)
        self.services = services
        self.kills: list[Kill] = []
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.started = 0.0
        self.error: BaseException | None = None

    def start(self) -> "ChaosMonkey":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"chaos still running after {timeout}s")
        if self.error:
            raise self.error

    def _target(self, service: str) -> str:
        if service == "image-processor":  # one replica, picked at random
            return self.rng.choice(self.stack.processor_names())
        return service

    def _run(self) -> None:
        try:
            for _ in range(self.rounds):
                order = list(self.services)
                self.rng.shuffle(order)
                for service in order:
                    time.sleep(self.rng.uniform(*self.gap))
                    name = self._target(service)
                    self._wait_alive(name)
                    done, total = self.progress()
                    self.stack.kill_process(name)
                    self.kills.append(Kill(name, round(time.monotonic() - self.started, 1), done, total))
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def _wait_alive(self, name: str, timeout: float = 30.0) -> None:
        """Kill a process only once it runs again (a restart in progress is not a new crash)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.stack.lock:
                if self.stack.procs[name].poll() is None:
                    return
            time.sleep(0.1)


# -- the SendGrid stand-in ------------------------------------------------------------------
class FakeSendGrid:
    """Answers SendGrid's ``POST /v3/mail/send`` with 202 and keeps every mail, by job."""

    def __init__(self):
        self.mails: list[dict] = []
        self.dropped: list[dict] = []
        self.holding = threading.Event()
        self._hold_next = 0.0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v3/mail/send":
                    self.send_response(404)
                    self.end_headers()
                    return
                with outer._lock:
                    hold, outer._hold_next = outer._hold_next, 0.0
                    (outer.dropped if hold else outer.mails).append(json.loads(body))
                if hold:  # hang, then drop the connection: this mail never reached "SendGrid"
                    outer.holding.set()
                    time.sleep(hold)
                    self.close_connection = True
                    return
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "FakeSendGrid":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def env(self) -> dict[str, str]:
        return {"SENDGRID_API_KEY": "SG.reliability-suite", "SENDGRID_API_HOST": self.url}

    def hold_next(self, seconds: float) -> None:
        """Make the next mail hang for ``seconds`` and then fail without being delivered."""
        with self._lock:
            self._hold_next = seconds
            self.holding.clear()

    def mails_for(self, job_id: str) -> list[dict]:
        with self._lock:
            return [m for m in self.mails if (m.get("headers") or {}).get("X-ImageFlow-Job") == job_id]

    def wait_for(self, job_id: str, timeout: float = 60.0, settle: float = 2.0) -> list[dict]:
        """The mails for the job, once at least one arrived and ``settle`` more seconds passed."""
        end = time.monotonic() + timeout
        while not self.mails_for(job_id) and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(settle)
        return self.mails_for(job_id)


# -- workloads ------------------------------------------------------------------------------
OUTPUT_WIDTH = 48
OPERATIONS = [{"op": "resize", "width": OUTPUT_WIDTH}, {"op": "format", "format": "png"}]


@dataclass(frozen=True)
class Sample:
    filename: str
    data: bytes
    mime: str
    size: tuple[int, int]
    color: tuple[int, int, int]

    def expected_size(self) -> tuple[int, int]:
        width, height = self.size
        return OUTPUT_WIDTH, max(1, round(height * OUTPUT_WIDTH / width))


def color_for(i: int) -> tuple[int, int, int]:
    """A distinct colour per image (for i < 2560), so an output can be matched to its input."""
    return (i % 256, 20 + 23 * (i // 256), 200 - (i % 97))


def _png_text(text: str):
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("Comment", text)
    return info


def make_batch(n: int, prefix: str = "photo", start: int = 0, base_size=(160, 120)) -> list[Sample]:
    """``n`` small images, PNG and JPEG alternately, each of one distinct colour and size."""
    batch = []
    for i in range(start, start + n):
        size = (base_size[0] + (i % 7) * 8, base_size[1] + (i % 5) * 6)
        fmt, ext, mime = (("PNG", "png", "image/png") if i % 2 else ("JPEG", "jpg", "image/jpeg"))
        buf = io.BytesIO()
        name = f"{prefix}-{i:04d}.{ext}"
        # the name in a comment: no two batches share bytes, so dedupe never turns a render into a copy
        extra = {"comment": name.encode()} if fmt == "JPEG" else {"pnginfo": _png_text(name)}
        Image.new("RGB", size, color_for(i)).save(buf, fmt, **extra)
        batch.append(Sample(name, buf.getvalue(), mime, size, color_for(i)))
    return batch


def submit(base_url: str, batch: list[Sample], *, email: str | None = "owner@example.com",
           operations=OPERATIONS, timeout: float = 120.0, session: requests.Session | None = None) -> dict:
    """POST the batch as one job; returns the 202 body (raises on any other answer)."""
    files = [("files", (s.filename, s.data, s.mime)) for s in batch]
    data = {"operations": json.dumps(operations)}
    if email:
        data["email"] = email
    response = (session or requests).post(f"{base_url}/api/v1/jobs", files=files, data=data, timeout=timeout)
    if response.status_code != 202:
        raise AssertionError(f"job not accepted: {response.status_code} {response.text[:300]}")
    return response.json()


class JobWatcher:
    """Polls a job as a client would, riding out the API's restarts; ``progress()`` is the
    last (done, total) seen and ``refused`` counts the polls the API could not answer."""

    def __init__(self, base_url: str, job_id: str, total: int):
        self.base_url, self.job_id = base_url, job_id
        self.last = (0, total)
        self.refused = 0
        self.session = requests.Session()

    def progress(self) -> tuple[int, int]:
        return self.last

    def poll(self) -> dict | None:
        try:
            response = self.session.get(f"{self.base_url}/api/v1/jobs/{self.job_id}", timeout=10)
        except requests.RequestException:
            self.refused += 1
            self.session = requests.Session()
            return None
        if response.status_code != 200:
            self.refused += 1
            return None
        job = response.json()
        self.last = (job["succeeded"] + job["failed"], job["total"])
        return job

    def wait(self, timeout: float, interval: float = 0.3) -> dict:
        """The job once it is finished (raises after ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.poll()
            if job and job["status"] not in ("open", "queued", "processing"):
                return all_images(self.session, job)
            time.sleep(interval)
        raise AssertionError(f"job {self.job_id} not finished after {timeout}s: {self.last}")


def all_images(session, job: dict) -> dict:
    """The job with every image: the job view carries the first page, ``links.next`` the rest."""
    link = job["links"].get("next")
    while link:
        page = session.get(link, timeout=30).json()
        job["images"] += page["images"]
        link = page["links"]["next"]
    return job


def fetch_job(base_url: str, job_id: str, attempts: int = 30) -> dict:
    """The job document, retrying while the API restarts."""
    for _ in range(attempts):
        try:
            response = requests.get(f"{base_url}/api/v1/jobs/{job_id}", timeout=10)
            if response.status_code == 200:
                return all_images(requests.Session(), response.json())
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"could not read job {job_id}")


# -- the invariants -------------------------------------------------------------------------
@dataclass
class Verdict:
    succeeded: int = 0
    failed: list[dict] = field(default_factory=list)
    hidden_temp_files: int = 0


def verify_job(stack: ChaosStack, job: dict, batch: list[Sample], record, *, sendgrid=None,
               expect_failed: set[str] = frozenset(), check_pixels: bool = True,
               mail_settle: float = 2.0, blobs=None) -> Verdict:
    """Every image ended exactly once, as succeeded with a correct output or failed with a
    reason; outputs in storage are exactly the succeeded images' (nothing orphaned or
    duplicated, nothing partial visible); the job is complete; one email."""
    verdict = Verdict()
    images = job["images"]
    record.expect(job["status"] in ("completed", "completed_with_errors", "failed"),
                  "the job completed", job["status"])
    names = Counter(i["filename"] for i in images)
    expected_names = Counter(s.filename for s in batch)
    record.expect(names == expected_names and len(images) == job["total"] == len(batch),
                  "every submitted image is in the job exactly once",
                  {"missing": list((expected_names - names).elements())[:5],
                   "extra": list((names - expected_names).elements())[:5]})
    statuses = Counter(i["status"] for i in images)
    record.expect(set(statuses) <= {"succeeded", "failed"}, "every image ended as succeeded or failed", statuses)
    record.expect((job["succeeded"], job["failed"]) == (statuses["succeeded"], statuses["failed"]),
                  "the job's counts match its images (no result counted twice)",
                  (job["succeeded"], job["failed"], dict(statuses)))
    failed = [i for i in images if i["status"] == "failed"]
    record.expect(all(i["error"] for i in failed), "every failed image says why", failed[:3])
    record.expect({i["filename"] for i in failed} == set(expect_failed),
                  "only the images expected to fail failed" if expect_failed else "no image failed",
                  [(i["filename"], i["error"]) for i in failed][:5])
    verdict.failed = failed

    blobs = blobs or stack.blobs()
    stored = blobs.list(f"{job['job_id']}/output/")
    expected_outputs = [i for i in images if i["status"] == "succeeded"]
    record.expect(len(stored) == len(expected_outputs) and len(set(stored)) == len(stored),
                  "exactly one output object per succeeded image (none orphaned or duplicated)",
                  (len(stored), len(expected_outputs)))
    by_id = {path.rsplit("/", 1)[-1].split("-", 1)[0]: path for path in stored}
    record.expect(all(i["image_id"] in by_id for i in images if i["status"] == "succeeded"),
                  "each succeeded image's output is in storage")
    job_dir = stack.data_dir / "blobs" / job["job_id"]  # local store only: where a killed writer's temp file stays
    verdict.hidden_temp_files = sum(1 for _ in job_dir.rglob(".tmp-*")) if job_dir.is_dir() else 0

    if check_pixels:
        samples = {s.filename: s for s in batch}
        wrong = []
        for image in images:
            if image["status"] != "succeeded":
                continue
            sample = samples[image["filename"]]
            picture = Image.open(io.BytesIO(blobs.get(by_id[image["image_id"]])))
            picture.load()  # a truncated object fails here
            want_w, want_h = sample.expected_size()
            pixel = picture.convert("RGB").getpixel((picture.width // 2, picture.height // 2))
            if picture.format != "PNG" or picture.width != want_w or abs(picture.height - want_h) > 1 \
                    or max(abs(a - b) for a, b in zip(pixel, sample.color)) > 8:
                wrong.append((image["filename"], picture.format, picture.size, pixel, sample.color))
        record.expect(not wrong, "every output is complete and correct (format, size, and the colour of its own "
                                 "input)", wrong[:5])
    verdict.succeeded = statuses["succeeded"]
    if sendgrid is not None:
        mails = sendgrid.wait_for(job["job_id"], settle=mail_settle)
        record.expect(len(mails) == 1, "exactly one email for the job", len(mails))
        text = json.dumps(mails[0])
        record.expect(f"/jobs/{job['job_id']}" in text, "the email links to the job's results page")
    return verdict


def orphaned_outputs(blobs, jobs: dict[str, dict]) -> list[str]:
    """Output objects in the whole store that no succeeded image of a known job accounts for."""
    known = defaultdict(set)
    for job in jobs.values():
        for image in job["images"]:
            if image["status"] == "succeeded":
                known[job["job_id"]].add(image["image_id"])
    orphans = []
    for path in blobs.list(""):
        job_id, kind, name = path.split("/", 2)
        if kind == "output" and name.split("-", 1)[0] not in known.get(job_id, ()):
            orphans.append(path)
    return orphans


# -- a chaos run ----------------------------------------------------------------------------
class Submitter:
    """Submits a small job every second while the chaos runs (some land while image-handler
    is down); keeps the accepted ones, whose images must all come back."""

    def __init__(self, base_url: str, seed: int):
        self.base_url, self.rng = base_url, random.Random(seed)
        self.accepted: dict[str, list] = {}
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self):
        n = 0
        while not self._stop.wait(self.rng.uniform(0.5, 1.5)):
            batch = make_batch(3, prefix=f"side{n:03d}", start=1000 + 3 * n)
            n += 1
            try:
                created = submit(self.base_url, batch, timeout=20)
            except (requests.RequestException, AssertionError):
                self.refused += 1  # the API was down: a real client retries; nothing was accepted
                continue
            self.accepted[created["job_id"]] = batch


def run_chaos(stack, sendgrid, record, *, images: int, rounds: int, seed: int, timeout: float,
              gap: tuple[float, float], services=RESTARTABLE, blobs=None) -> None:
    """Submit an ``images`` job, SIGKILL each of ``services`` once per round at random moments
    while small side jobs keep arriving, then check every job's invariants."""
    batch = make_batch(images, prefix="chaos")
    created = submit(stack.base_url, batch, timeout=120)
    job_id = created["job_id"]
    watcher = JobWatcher(stack.base_url, job_id, images)
    started = time.monotonic()
    with Supervisor(stack, seed=seed) as supervisor, Submitter(stack.base_url, seed) as submitter:
        monkey = ChaosMonkey(stack, rounds, watcher.progress, seed=seed, gap=gap, services=services).start()
        job = watcher.wait(timeout)
        elapsed = time.monotonic() - started
        monkey.join(timeout=120)
        # Let the last kills' restarts settle before checking the side jobs.
        time.sleep(2)
    stack.wait_ready(60)
    mid_job = sum(1 for k in monkey.kills if k.done < k.total)
    record.figure("images", images)
    record.figure("kill rounds", rounds)
    record.figure("SIGKILLs", len(monkey.kills))
    record.figure("SIGKILLs while the job was unfinished", mid_job)
    record.figure("killed", dict(sorted({k.name: sum(1 for x in monkey.kills if x.name == k.name)
                                         for k in monkey.kills}.items())))
    record.figure("restarts", dict(supervisor.restarts))
    record.figure("job wall time (s)", round(elapsed, 1))
    record.figure("status polls refused while image-handler was down", watcher.refused)
    record.expect(len(monkey.kills) == rounds * len(services),
                  f"each of the {len(services)} processes was SIGKILLed once per round",
                  [k.name for k in monkey.kills])
    record.expect(mid_job >= len(monkey.kills) // 2, "most kills landed while the job was being processed",
                  [(k.name, k.done) for k in monkey.kills])
    verdict = verify_job(stack, job, batch, record, sendgrid=sendgrid, blobs=blobs)
    record.figure("hidden temp files left by killed writers (never listed or served)", verdict.hidden_temp_files)

    jobs = {job_id: job}
    side_ok = 0
    for side_id, side_batch in submitter.accepted.items():
        side_job = JobWatcher(stack.base_url, side_id, len(side_batch)).wait(120)
        verify_job(stack, side_job, side_batch, record, sendgrid=sendgrid, mail_settle=0, blobs=blobs)
        jobs[side_id] = side_job
        side_ok += 1
    record.figure("side jobs accepted during the chaos / refused while image-handler was down",
                  f"{len(submitter.accepted)} / {submitter.refused}")
    record.expect(side_ok == len(submitter.accepted) and side_ok > 0,
                  "every job accepted (202) during the chaos completed with all its images")
    orphans = orphaned_outputs(blobs or stack.blobs(), jobs)
    record.expect(not orphans, "no output object in the store belongs to no image", orphans[:5])
