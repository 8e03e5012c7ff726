"""Model-based test of the whole system (issue 22): a Hypothesis state machine drives the real
local stack (every service a real process, tests/conftest.py's ``stack``) through random
sequences of what clients and operators do, and checks the system against a small model.

Clients: open a job, upload to it (multipart, and direct: targets then PUT, now or later),
create a closed job in one request, close, cancel, retry, re-run with other operations, delete,
send identical files again (dedupe). Operators: kill a process (SIGKILL) and start it again.

After every step (cheap): no 5xx ever; every live job answers and its counts add up; it lists no
image the model does not know; a deleted job answers 404/410. At the end of each example, once
every job has settled (polled, never slept): every image a client was told is accepted has
exactly one outcome (succeeded, failed with a reason, skipped by a cancel, or a dedupe copy); each
output decodes to the size, format and orientation its operations give; a finished job's counts
add up and its status follows from them; one email and one webhook delivery per completed run;
nothing of a deleted job is left in the blob store.

The model is per example, keyed by the jobs it created; one stack serves every example (each
example's images carry a salt, so no example dedupes against another's).

Defects it checks that issue 22 fixed alongside it: TIFF orientation applied twice (TIFF inputs), a
retry dropping the earlier run's pending webhook (retries right after a run ends, one delivery per
run), identical files in flight together each rendering (at most one render per group).

Default run: 40 derandomized examples of up to 25 steps (about 1,000 steps, ~2 minutes on a busy
2-core machine; the same sequences every time). The long run (``./scripts.sh test --slow``,
IMAGEFLOW_SLOW_TESTS=1): 150 random examples of up to 40 steps (about 5,000 steps). IMAGEFLOW_MODEL_EXAMPLES /
IMAGEFLOW_MODEL_STEPS override either's size. Races found by a random run may not replay while
shrinking (Hypothesis then says the data generation was flaky): the first failure is printed above it.
"""
from __future__ import annotations

import email
import io
import json
import collections
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from email import policy

import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from tests.http_servers import WebhookReceiver

SETTLE_TIMEOUT = 240.0   # a killed processor's task comes back after ACK_DEADLINE_SECONDS; busy machine
TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")

# Operation lists with known results: (expected format, width the resize asks for or None).
OPERATIONS = {
    "w48-png": ([{"op": "resize", "width": 48}, {"op": "format", "format": "png"}], "PNG", 48),
    "webp": ([{"op": "format", "format": "webp"}], "WEBP", None),
    "w40-webp": ([{"op": "resize", "width": 40}, {"op": "format", "format": "webp"}], "WEBP", 40),
}
SOURCES = ["png", "jpeg", "tiff"]   # TIFF: its orientation was applied twice (issue 22)
ORIENTATIONS = [1, 3, 6, 8]   # EXIF: upright, 180, 90 CW, 90 CCW (visible on a 96x48 image)
PROCESSES = ["image-handler", "interaction-manager", "image-processor", "push-bridge", "email-function"]
PICK = st.integers(0, 2 ** 16)   # which job (or target, or file): see SystemModel.choose
MAX_KILLS = 2   # per example
QUADRANTS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 40)]  # tl, tr, bl, br: any turn shows

_salts = itertools.count()
STATS: collections.Counter = collections.Counter()   # what the runs did, printed at the end
_RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def stack_options():
    return {"env": {"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2",
                    "FETCH_ALLOW_CIDRS": "127.0.0.1/32",   # the webhook receiver is on 127.0.0.1 (test only)
                    "WEBHOOK_BACKOFF_SECONDS": "0.3",
                    # the model polls every job after every step, faster than one client may (30/s):
                    # the limiter is tested in tests/reliability, off here
                    "RATE_LIMIT_PER_SECOND": "0"}}


@pytest.fixture(scope="module")
def hooks():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


# -- inputs --------------------------------------------------------------------------------
def quadrants(size=(96, 48)) -> Image.Image:
    image = Image.new("RGB", size)
    w, h = size[0] // 2, size[1] // 2
    for index, colour in enumerate(QUADRANTS):
        image.paste(colour, ((index % 2) * w, (index // 2) * h, (index % 2 + 1) * w, (index // 2 + 1) * h))
    return image


def make_input(source: str, orientation: int, salt: str) -> bytes:
    """An asymmetric image whose bytes are unique to ``salt`` (metadata only: the pixels are the same)."""
    buf = io.BytesIO()
    image = quadrants()
    if source == "png":
        info = PngInfo()
        info.add_text("salt", salt)
        image.save(buf, "PNG", pnginfo=info)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x010E] = salt
        image.save(buf, "JPEG" if source == "jpeg" else "TIFF", exif=exif, **({"quality": 95} if source == "jpeg"
                                                                            else {}))
    return buf.getvalue()


def make_corrupt(salt: str) -> bytes:
    """A PNG cut short: its header reads, its pixels do not."""
    data = make_input("png", 1, salt)
    return data[: len(data) // 2]


CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "tiff": "image/tiff"}


def expected_output(data: bytes, ops_key: str):
    """(format, (width, height), 2x2 thumbnail) the operations make of ``data``."""
    fmt, width = OPERATIONS[ops_key][1], OPERATIONS[ops_key][2]
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = upright.size
    if width is not None and width < w:   # resize never enlarges
        w, h = width, round(h * width / w)
    return fmt, (w, h), upright.resize((2, 2), Image.Resampling.BOX)


# -- the model -----------------------------------------------------------------------------
@dataclass
class Img:
    image_id: str
    filename: str
    data: bytes
    good: bool                    # a decodable image (else it must fail with a reason)
    input_owner: str              # the job whose stored original it reads (a re-run reads its parent's)
    content_type: str = "image/png"
    must_dedupe: bool = False     # sent after an identical image with the same operations was seen succeeded


@dataclass
class Job:
    job_id: str
    ops_key: str
    email: bool
    webhook: bool
    is_open: bool
    images: dict[str, Img] = field(default_factory=dict)
    joining: dict[str, Img] = field(default_factory=dict)   # direct uploads PUT, not yet seen in the job
    cancelled: bool = False       # the current run was cancelled
    run: int = 0
    deleted: bool = False
    seen_status: str = "open"


def check_output(http, stack, job_id: str, image: dict, model: Img, ops_key: str) -> None:
    response = http("GET", f"{stack.base_url}/api/v1/jobs/{job_id}/images/{image['image_id']}/output")
    assert response.status_code == 200, (job_id, image, response.text[:300])
    fmt, size, thumb = expected_output(model.data, ops_key)
    out = Image.open(io.BytesIO(response.content))
    assert out.format == fmt, (model.filename, out.format, fmt)
    assert abs(out.size[0] - size[0]) <= 1 and abs(out.size[1] - size[1]) <= 1, (model.filename, out.size, size)
    got = out.convert("RGB").resize((2, 2), Image.Resampling.BOX)
    for xy in itertools.product((0, 1), (0, 1)):
        diff = max(abs(a - b) for a, b in zip(got.getpixel(xy), thumb.getpixel(xy)))
        assert diff < 60, f"{model.filename}: quadrant {xy} is {got.getpixel(xy)}, expected {thumb.getpixel(xy)} " \
                          "(wrong orientation?)"


class SystemModel(RuleBasedStateMachine):
    """Set by the test before the run: the stack and the webhook receiver shared by every example."""
    stack = None
    hooks: WebhookReceiver = None

    def __init__(self):
        super().__init__()
        self.salt = f"{_RUN}-{next(_salts)}"
        self.names = itertools.count()
        self.jobs: dict[str, Job] = {}
        self.kills = 0
        self.pending_targets: list[tuple[str, dict, Img]] = []   # direct upload targets not PUT yet
        self.session = requests.Session()
        self.seen_succeeded: set[tuple[bytes, str]] = set()       # (input bytes, operations) seen rendered

    # -- plumbing ---------------------------------------------------------------------------
    def http(self, method: str, url: str, **kwargs) -> requests.Response:
        response = self.session.request(method, url, timeout=60, **kwargs)
        assert response.status_code < 500, f"{method} {url} answered {response.status_code}: {response.text[:500]}"
        return response

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http(method, f"{self.stack.base_url}/api/v1{path}", **kwargs)

    def live(self, *, open_only=False) -> list[str]:
        return sorted(j.job_id for j in self.jobs.values() if not j.deleted and (j.is_open or not open_only))

    def choose(self, job_ids: list[str], pick: int) -> Job | None:
        """One of ``job_ids`` (None if there is none). Picked by a number drawn independently of the
        model, so a replay draws the same values even when the system answered differently."""
        return self.jobs[job_ids[pick % len(job_ids)]] if job_ids else None

    def new_file(self, kind: str, orientation: int, job_id: str) -> tuple[Img, str]:
        """A fresh file for ``job_id``: its model image (no id yet) and content type."""
        number = next(self.names)
        salt = f"{self.salt}-{number}"
        if kind == "corrupt":
            return Img("", f"broken-{number:03d}.png", make_corrupt(salt), False, job_id), "image/png"
        ext = {"jpeg": "jpg"}.get(kind, kind)
        return Img("", f"photo-{number:03d}.{ext}", make_input(kind, orientation, salt), True, job_id,
                   CONTENT_TYPES[kind]), CONTENT_TYPES[kind]

    def copy_of(self, source: Img, job: Job) -> Img:
        """``source``'s bytes again, under a new name, for ``job``."""
        copy = Img("", f"copy-{next(self.names):03d}-{source.filename}", source.data, source.good, job.job_id,
                   source.content_type)
        copy.must_dedupe = (source.data, job.ops_key) in self.seen_succeeded
        return copy

    def accept_multipart(self, job: Job, response: requests.Response, sent: list[Img]) -> None:
        body = response.json()
        by_name = {img.filename: img for img in sent}
        for item in body["images"]:
            img = by_name.pop(item["filename"])
            img.image_id = item["image_id"]
            job.images[img.image_id] = img
        for refused in body["rejected"]:   # only a broken file may be refused at the door
            assert not by_name.pop(refused["filename"]).good, refused
        assert not by_name, f"files neither accepted nor rejected: {sorted(by_name)}"

    def job_fields(self, ops_key: str, with_email: bool, with_hook: bool) -> dict:
        fields = {"operations": OPERATIONS[ops_key][0]}
        if with_email:
            fields["email"] = "model@example.com"
        if with_hook:
            fields["webhook_url"] = self.hooks.url("/hook")
        return fields

    def get_job(self, job_id: str) -> dict:
        """The job, then all its images (the job view has the first page only): read in that order, an
        open job's list holds at least ``total`` images (more if uploads joined in between)."""
        job = self.api("GET", f"/jobs/{job_id}")
        assert job.status_code == 200, job.text
        response = self.api("GET", f"/jobs/{job_id}/images", params={"limit": 1000})
        assert response.status_code == 200, response.text
        doc = job.json()
        doc["images"] = response.json()["images"]
        return doc

    def wait(self, predicate, what: str, timeout: float = SETTLE_TIMEOUT):
        end = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            assert time.monotonic() < end, f"timed out after {timeout:.0f}s waiting for {what}"
            time.sleep(0.3)

    def finished(self, job_id: str) -> dict | None:
        doc = self.get_job(job_id)
        return doc if doc["status"] in TERMINAL else None

    def deliveries(self, job_id: str) -> list[int]:
        with self.hooks.lock:
            received = list(self.hooks.received)
        runs = []
        for call in received:
            body = json.loads(call["body"])
            if body.get("job_id") == job_id:
                runs.append(int(body.get("run") or 0))
        return runs

    # -- clients ----------------------------------------------------------------------------
    @rule(ops_key=st.sampled_from(sorted(OPERATIONS)), with_email=st.booleans(), with_hook=st.booleans())
    def open_job(self, ops_key, with_email, with_hook):
        STATS["step:open_job"] += 1
        response = self.api("POST", "/jobs", json={"open": True, **self.job_fields(ops_key, with_email, with_hook)})
        assert response.status_code == 201, response.text
        job_id = response.json()["job_id"]
        self.jobs[job_id] = Job(job_id, ops_key, with_email, with_hook, is_open=True)

    @rule(ops_key=st.sampled_from(sorted(OPERATIONS)), with_email=st.booleans(), with_hook=st.booleans(),
          kinds=st.lists(st.sampled_from(SOURCES + ["corrupt"]), min_size=1, max_size=3),
          orientation=st.sampled_from(ORIENTATIONS))
    def create_closed_job(self, ops_key, with_email, with_hook, kinds, orientation):
        STATS["step:create_closed_job"] += 1
        job = Job("", ops_key, with_email, with_hook, is_open=False)
        sent = [self.new_file(kind, orientation, "") for kind in kinds]
        fields = self.job_fields(ops_key, with_email, with_hook)
        form = {k: (json.dumps(v) if k == "operations" else v) for k, v in fields.items()}
        response = self.api("POST", "/jobs", data=form,
                            files=[("files", (img.filename, img.data, ctype)) for img, ctype in sent])
        if all(not img.good for img, _ in sent) and response.status_code in (413, 415):
            return   # every file refused at the door: no job
        assert response.status_code == 202, response.text
        job.job_id = response.json()["job_id"]
        for img, _ in sent:
            img.input_owner = job.job_id
        self.jobs[job.job_id] = job
        self.accept_multipart(job, response, [img for img, _ in sent])

    @rule(pick=PICK, kinds=st.lists(st.sampled_from(SOURCES + ["corrupt"]), min_size=1, max_size=3),
          orientation=st.sampled_from(ORIENTATIONS))
    def upload_multipart(self, pick, kinds, orientation):
        STATS["step:upload_multipart"] += 1
        job = self.choose(self.live(open_only=True), pick)
        if job is None:
            return
        sent = [self.new_file(kind, orientation, job.job_id) for kind in kinds]
        response = self.api("POST", f"/jobs/{job.job_id}/files",
                            files=[("files", (img.filename, img.data, ctype)) for img, ctype in sent])
        if all(not img.good for img, _ in sent) and response.status_code in (413, 415):
            return
        assert response.status_code == 200, response.text
        self.accept_multipart(job, response, [img for img, _ in sent])

    @rule(pick=PICK, kinds=st.lists(st.sampled_from(SOURCES + ["corrupt"]), min_size=1, max_size=3),
          orientation=st.sampled_from(ORIENTATIONS), put_now=st.booleans())
    def upload_direct(self, pick, kinds, orientation, put_now):
        """Ask for upload targets; PUT them now, or leave them for ``put_pending`` (maybe after a close)."""
        STATS["step:upload_direct"] += 1
        job = self.choose(self.live(open_only=True), pick)
        if job is None:
            return
        sent = [self.new_file(kind, orientation, job.job_id) for kind in kinds]
        response = self.api("POST", f"/jobs/{job.job_id}/files", json={"files": [
            {"filename": img.filename, "bytes": len(img.data), "content_type": ctype} for img, ctype in sent]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["rejected"] == [] and len(body["uploads"]) == len(sent), body
        for target, (img, _) in zip(body["uploads"], sent):
            assert target["filename"] == img.filename
            img.image_id = target["image_id"]
            self.pending_targets.append((job.job_id, target, img))
        if put_now:
            for _ in range(len(sent)):
                self.put_target(len(self.pending_targets) - 1)

    @rule(pick=PICK)
    def put_pending(self, pick):
        STATS["step:put_pending"] += 1
        if self.pending_targets:
            self.put_target(pick % len(self.pending_targets))

    def put_target(self, index: int) -> None:
        job_id, target, img = self.pending_targets.pop(index)
        job = self.jobs[job_id]
        response = self.http("PUT", target["url"], data=img.data, headers=target["headers"])
        if job.deleted:
            assert response.status_code == 404, response.text
        elif not job.is_open:   # closed or cancelled: the link is refused, nothing joins
            assert response.status_code == 409 and response.json()["error"]["code"] == "job_closed", response.text
        else:   # acknowledged: the image is in the job once closed (docs/api.md, "What close guarantees")
            assert response.status_code == 200, response.text
            job.joining[img.image_id] = img

    @rule(pick=PICK, into=PICK, into_open=st.booleans(), ops_key=st.sampled_from(sorted(OPERATIONS)))
    def send_identical(self, pick, into, into_open, ops_key):
        """A file already sent, again (dedupe): into an open job, or as a new closed job."""
        STATS["step:send_identical"] += 1
        sources = sorted((img for j in self.jobs.values() for img in j.images.values()), key=lambda i: i.filename)
        if not sources:
            return
        source = sources[pick % len(sources)]
        ctype = source.content_type
        if into_open and self.live(open_only=True):
            job = self.choose(self.live(open_only=True), into)
            copy = self.copy_of(source, job)
            response = self.api("POST", f"/jobs/{job.job_id}/files", files=[("files", (copy.filename, copy.data, ctype))])
            if not copy.good and response.status_code in (413, 415):
                return
            assert response.status_code == 200, response.text
        else:
            job = Job("", ops_key, False, False, is_open=False)
            copy = self.copy_of(source, job)
            response = self.api("POST", "/jobs", data={"operations": json.dumps(OPERATIONS[ops_key][0])},
                                files=[("files", (copy.filename, copy.data, ctype))])
            if not copy.good and response.status_code in (413, 415):
                return
            assert response.status_code == 202, response.text
            job.job_id = copy.input_owner = response.json()["job_id"]
            self.jobs[job.job_id] = job
        self.accept_multipart(job, response, [copy])

    @rule(pick=PICK)
    def close(self, pick):
        STATS["step:close"] += 1
        job = self.choose(self.live(open_only=True), pick)
        if job is None:
            return
        response = self.api("POST", f"/jobs/{job.job_id}/close")
        assert response.status_code == 200, response.text
        job.is_open = False
        self.join_landed(job)

    def join_landed(self, job: Job) -> None:
        """Every acknowledged direct upload is in the job once it is closed (or cancelled)."""
        job.images.update(job.joining)
        job.joining.clear()

    @rule(pick=PICK)
    def cancel(self, pick):
        STATS["step:cancel"] += 1
        job = self.choose(self.live(), pick)
        if job is None:
            return
        response = self.api("POST", f"/jobs/{job.job_id}/cancel")
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "job_finished", response.text
            assert not job.is_open and self.get_job(job.job_id)["status"] in TERMINAL
            return
        assert response.status_code == 202, response.text
        job.cancelled = True
        if job.is_open:
            job.is_open = False
            self.join_landed(job)

    @rule(pick=PICK)
    def retry(self, pick):
        STATS["step:retry"] += 1
        job = self.choose(self.live(), pick)
        if job is None:
            return
        response = self.api("POST", f"/jobs/{job.job_id}/retry")
        if response.status_code == 409:
            assert response.json()["error"]["code"] in ("job_active", "nothing_to_retry"), response.text
            return
        assert response.status_code == 202, response.text
        assert response.json()["run"] == job.run + 1, response.text
        job.run += 1
        job.cancelled = False

    @rule(pick=PICK, ops_key=st.sampled_from(sorted(OPERATIONS)), only=st.sampled_from(["all", "failed",
                                                                                            "succeeded"]),
          with_email=st.booleans(), with_hook=st.booleans())
    def rerun(self, pick, ops_key, only, with_email, with_hook):
        STATS["step:rerun"] += 1
        parent = self.choose(self.live(), pick)
        if parent is None:
            return
        response = self.api("POST", f"/jobs/{parent.job_id}/rerun",
                            json={**self.job_fields(ops_key, with_email, with_hook), "only": only})
        if response.status_code == 409:
            assert response.json()["error"]["code"] in ("job_active", "nothing_to_rerun"), response.text
            return
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["parent_job_id"] == parent.job_id
        child = Job(body["job_id"], ops_key, with_email, with_hook, is_open=False)
        by_name = {img.filename: img for img in parent.images.values()}
        for item in body["images"]:
            source = by_name[item["filename"]]
            child.images[item["image_id"]] = Img(item["image_id"], source.filename, source.data, source.good,
                                                 source.input_owner, source.content_type)
        self.jobs[child.job_id] = child

    @rule(pick=PICK)
    def delete(self, pick):
        STATS["step:delete"] += 1
        job = self.choose(self.live(), pick)
        if job is None:
            return
        response = self.api("DELETE", f"/jobs/{job.job_id}")
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "job_active", response.text
            return
        assert response.status_code == 204, response.text
        job.deleted = True

    @rule(pick=PICK)
    def wait_for_job(self, pick):
        """A client that waits for its job (so retry, re-run and delete meet finished jobs too)."""
        STATS["step:wait_for_job"] += 1
        job = self.choose([j for j in self.live() if not self.jobs[j].is_open], pick)
        if job is None:
            return
        job_id = job.job_id
        self.wait(lambda: self.finished(job_id), f"job {job_id} to finish")

    # -- operators --------------------------------------------------------------------------
    @rule(name=st.sampled_from(PROCESSES))
    def kill_and_restart(self, name):
        if not self.jobs or self.kills >= MAX_KILLS:   # kills are rare, and hit work in flight
            return
        self.kills += 1
        STATS["step:kill_and_restart"] += 1
        self.stack.kill_process(name)   # SIGKILL, as a crash or an OOM kill would
        self.stack.start_process(name)
        self.stack.wait_ready(timeout=180)

    # -- cheap checks after every step ------------------------------------------------------
    @invariant()
    def jobs_answer_and_add_up(self):
        STATS["checks"] += 1
        for job in self.jobs.values():
            if job.deleted:
                continue
            doc = self.get_job(job.job_id)
            listed = {i["image_id"] for i in doc["images"]}
            unknown = listed - set(job.images) - set(job.joining)
            assert not unknown, f"job {job.job_id} lists images no client sent: {unknown}"
            if not job.is_open:
                missing = set(job.images) - listed - set(job.joining)
                assert not missing, f"job {job.job_id} lost accepted images {missing}"
            if doc["status"] == "open":
                assert doc["total"] <= len(doc["images"]), (doc["total"], len(doc["images"]))
            else:
                assert doc["total"] == len(doc["images"]), (doc["total"], len(doc["images"]))
            done = doc["succeeded"] + doc["failed"] + doc["skipped"]
            assert done + doc["pending"] == doc["total"], {k: doc[k] for k in ("total", "succeeded", "failed",
                                                                                "skipped", "pending")}
            if doc["status"] in TERMINAL:
                assert done == doc["total"], doc
            assert (doc["status"] == "open") == job.is_open, (job.job_id, doc["status"], job.is_open)
            for image in doc["images"]:
                if image["status"] == "succeeded":
                    self.seen_succeeded.add((job.images[image["image_id"]].data if image["image_id"] in job.images
                                             else job.joining[image["image_id"]].data, job.ops_key))

    @invariant()
    def deleted_jobs_are_gone(self):
        for job in self.jobs.values():
            if job.deleted:
                assert self.api("GET", f"/jobs/{job.job_id}").status_code in (404, 410)

    # -- at the end of each example: settle, then the full invariants -----------------------
    def teardown(self):
        STATS["examples"] += 1
        STATS["jobs"] += len(self.jobs)
        STATS["images"] += sum(len(j.images) + len(j.joining) for j in self.jobs.values())
        try:
            for job_id in self.live(open_only=True):   # a client that never closed: close now
                assert self.api("POST", f"/jobs/{job_id}/close").status_code == 200
                self.jobs[job_id].is_open = False
                self.join_landed(self.jobs[job_id])
            for job_id in self.live():
                self.wait(lambda: self.finished(job_id), f"job {job_id} to finish")
            for job in self.jobs.values():
                if job.deleted:
                    self.check_deleted(job)
                else:
                    self.check_finished(job, self.get_job(job.job_id))
            self.check_notifications()
            self.check_dedupe_in_flight()
        finally:
            self.session.close()

    def check_finished(self, job: Job, doc: dict) -> None:
        images = {i["image_id"]: i for i in doc["images"]}
        assert len(images) == len(doc["images"]), "an image listed twice"
        assert set(images) == set(job.images), (job.job_id, set(job.images) ^ set(images))
        counts = {"succeeded": 0, "failed": 0, "skipped": 0}
        for image_id, model in job.images.items():
            image = images[image_id]
            counts[image["status"]] = counts.get(image["status"], 0) + 1
            where = f"job {job.job_id} image {model.filename}: {image['status']} {image.get('error')!r}"
            if image["status"] == "skipped":
                assert job.cancelled, f"{where}: skipped, but the run was not cancelled"
            elif image["status"] == "failed":
                assert image["error"] and image["error_code"], f"{where}: failed without a reason"
                assert not model.good or (image["error_code"] == "missing_input"
                                          and self.jobs[model.input_owner].deleted), f"{where}: a good image failed"
            else:
                assert image["status"] == "succeeded", where
                assert model.good, f"{where}: a broken file succeeded"
                check_output(self.http, self.stack, job.job_id, image, model, job.ops_key)
                if image["duplicate_of"]:
                    source_job, source_image = image["duplicate_of"].split("/")
                    assert source_job in self.jobs, f"{where}: a copy of another example's image"
                    source = self.jobs[source_job].images[source_image]
                    assert source.data == model.data and self.jobs[source_job].ops_key == job.ops_key, where
                elif model.must_dedupe and not self.twin_deleted(model.data, job.ops_key):
                    raise AssertionError(f"{where}: rendered again, though an identical image with the same "
                                         "operations had succeeded before it was sent (no duplicate_of)")
        assert counts["succeeded"] + counts["failed"] + counts["skipped"] == doc["total"] == len(job.images)
        for key in ("succeeded", "failed", "skipped"):
            assert doc[key] == counts[key], (job.job_id, key, doc[key], counts[key])
        assert doc["run"] == job.run, (job.job_id, doc["run"], job.run)
        if job.cancelled:
            assert doc["status"] == "cancelled", (job.job_id, doc["status"])
        elif not doc["total"]:
            assert doc["status"] == "failed", (job.job_id, doc["status"])
        else:
            expected = "failed" if counts["failed"] == doc["total"] else \
                "completed_with_errors" if counts["failed"] else "completed"
            assert doc["status"] == expected, (job.job_id, doc["status"], counts)

    def twin_deleted(self, data: bytes, ops_key: str) -> bool:
        """A job holding an identical image with these operations was deleted (its dedupe entry goes with it)."""
        return any(j.deleted and j.ops_key == ops_key and any(i.data == data for i in j.images.values())
                   for j in self.jobs.values())

    def check_dedupe_in_flight(self) -> None:
        """Identical images with the same operations render once, sent together or not: of each group
        (in jobs never deleted) at most one succeeded without ``duplicate_of`` (issue 22: identical
        files in flight together each rendered)."""
        rendered: dict[tuple[bytes, str], list[str]] = {}
        for job in self.jobs.values():
            if job.deleted:
                continue
            for image in self.get_job(job.job_id)["images"]:
                if image["status"] == "succeeded" and not image["duplicate_of"]:
                    key = (job.images[image["image_id"]].data, job.ops_key)
                    rendered.setdefault(key, []).append(f"{job.job_id}/{image['image_id']}")
        for (data, ops_key), renders in rendered.items():
            if not self.twin_deleted(data, ops_key):
                assert len(renders) == 1, f"identical images with the same operations rendered {len(renders)} times: " \
                                          f"{renders}"

    def check_deleted(self, job: Job) -> None:
        assert self.api("GET", f"/jobs/{job.job_id}").status_code in (404, 410)
        folder = self.stack.data_dir / "blobs" / job.job_id
        left = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
        assert not left, f"deleted job {job.job_id} left files: {left}"

    def check_notifications(self) -> None:
        outbox = self.stack.data_dir / "outbox"
        for job in self.jobs.values():
            runs = list(range(job.run + 1))
            mails = [outbox / (f"{job.job_id}.eml" if r == 0 else f"{job.job_id}.{r}.eml") for r in runs]
            if job.email and not job.deleted:
                self.wait(lambda: all(m.exists() for m in mails), f"job {job.job_id}'s emails for runs {runs}")
                last = email.message_from_bytes(mails[-1].read_bytes(), policy=policy.default)
                doc = self.get_job(job.job_id)
                text = last.get_body(("plain",)).get_content()
                assert f"{doc['succeeded']} succeeded, {doc['failed']} failed" in text, text
            extra = sorted(p.name for p in outbox.glob(f"{job.job_id}*.eml") if p not in mails) \
                if outbox.exists() else []
            assert not extra, f"emails for runs that never completed: {extra}"
            assert job.email or not any(m.exists() for m in mails), f"job {job.job_id} asked for no email"
            if job.webhook and not job.deleted:
                self.wait(lambda: set(self.deliveries(job.job_id)) >= set(runs),
                          f"job {job.job_id}'s webhooks for runs {runs}")
            delivered = set(self.deliveries(job.job_id))
            assert delivered <= set(runs) and (job.webhook or not delivered), (job.job_id, delivered, runs)


def run_model(stack, hooks, **options) -> None:
    SystemModel.stack, SystemModel.hooks = stack, hooks
    run_state_machine_as_test(SystemModel, settings=settings(
        deadline=None, database=None, suppress_health_check=list(HealthCheck), **options))


def test_model_of_the_whole_system(stack, hooks):
    """The default run: short, derandomized (the same sequences every time)."""
    started = time.monotonic()
    run_model(stack, hooks, max_examples=int(os.environ.get("IMAGEFLOW_MODEL_EXAMPLES", "40")),
              stateful_step_count=int(os.environ.get("IMAGEFLOW_MODEL_STEPS", "25")), derandomize=True)
    print(f"model run: {time.monotonic() - started:.0f}s, {dict(sorted(STATS.items()))}")


@pytest.mark.slow
@pytest.mark.timeout(7200)  # thousands of steps: the suite's 300 s per test cut it off after ~200
def test_model_of_the_whole_system_long(stack, hooks):
    """The long run: thousands of steps over new random sequences (a failure prints its seed)."""
    started = time.monotonic()
    run_model(stack, hooks, max_examples=int(os.environ.get("IMAGEFLOW_MODEL_EXAMPLES", "150")),
              stateful_step_count=int(os.environ.get("IMAGEFLOW_MODEL_STEPS", "40")))
    print(f"model run: {time.monotonic() - started:.0f}s, {dict(sorted(STATS.items()))}")
