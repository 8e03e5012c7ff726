"""The processor's view of a job without a job store: the cancel marker in the blob store (read at
most once per ttl, a skip always on a fresh read), a deleted job told from its missing files,
dedupe scoped by the caller the task carries, and a processor that builds no job store at all."""
from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from imageflow import bootstrap, domain
from imageflow.domain import Image, Job
from imageflow.messages import Output, Result, Task
from imageflow.settings import Settings
from services.image_processor import app as processor_app
from services.image_processor.dedupe import OutputIndex
from services.image_processor.job_gate import CANCELLED, GONE, JobGate
from services.image_processor.processing import Processor
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeMessage

JOB, IMAGE, PARENT = "ab" * 16, "cd" * 16, "ef" * 16


class CountingBlobStore(FakeBlobStore):
    def __init__(self):
        super().__init__()
        self.lookups = 0

    def exists(self, path):
        self.lookups += 1
        if self.down:
            raise OSError("storage unavailable")
        return super().exists(path)


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def png() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (40, 30), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def task(caller: str | None = "c" * 64, job_id: str = JOB, image_id: str = IMAGE, input_job: str | None = None) -> Task:
    return Task(job_id=job_id, image_id=image_id, input_path=f"{input_job or job_id}/input/{image_id}-a.png",
                output_path=f"{job_id}/output/{image_id}-a", operations=[{"op": "grayscale"}], caller=caller)


def test_the_marker_is_read_once_per_ttl_and_a_skip_on_a_fresh_read():
    blobs, clock = CountingBlobStore(), Clock()
    gate = JobGate(blobs, ttl=5, clock=clock)
    assert gate.skip_reason(JOB) is None and gate.skip_reason(JOB) is None
    assert blobs.lookups == 1, "cached for the ttl"
    blobs.put(domain.cancel_marker(JOB), b"{}", "application/json")
    assert gate.skip_reason(JOB) is None, "a cancel takes effect within the ttl"
    clock.now += 5
    assert gate.skip_reason(JOB) == CANCELLED
    lookups = blobs.lookups
    blobs.delete_prefix(domain.cancel_marker(JOB))  # a retry lifts it
    assert gate.skip_reason(JOB) is None, "a cached cancel is read again before skipping"
    assert blobs.lookups == lookups + 1, "the cached cancel, then one fresh read"


def test_an_unreachable_store_renders_rather_than_skips():
    blobs = CountingBlobStore()
    blobs.put(domain.cancel_marker(JOB), b"{}", "application/json")
    blobs.down = True
    assert JobGate(blobs, ttl=0).skip_reason(JOB) is None


def test_a_deleted_job_is_told_from_its_empty_folder():
    blobs = FakeBlobStore()
    gate = JobGate(blobs)
    assert gate.gone_reason(task()) == GONE
    blobs.put(f"{JOB}/input/{'11' * 16}-b.png", b"x", "image/png")
    assert gate.gone_reason(task()) is None, "the job is there: only this original is missing"
    assert gate.gone_reason(task(input_job=PARENT, job_id="99" * 16)) is None, "a re-run reads its parent's folder"


def test_a_processor_skips_a_cancelled_job_and_a_deleted_one_without_rendering():
    blobs, bus = FakeBlobStore(), FakeBus()
    rendered = []
    processor = Processor(Settings(), blobs, bus, render=lambda *a, **k: rendered.append(a) or [],
                          gate=JobGate(blobs, ttl=0))
    blobs.put(task().input_path, png(), "image/png")
    blobs.put(domain.cancel_marker(JOB), b"{}", "application/json")
    processor.handle_message(FakeMessage(task().encode()))
    other = "77" * 16
    processor.handle_message(FakeMessage(task(job_id=other).encode()))  # its files are gone
    processor.close()
    cancelled, gone = bus.messages(Settings().topics.results, Result)
    assert (cancelled.status, cancelled.error) == ("skipped", CANCELLED)
    assert (gone.job_id, gone.status, gone.error) == (other, "skipped", GONE)
    assert rendered == []


def test_dedupe_needs_the_caller_the_task_carries():
    blobs = FakeBlobStore()
    index = OutputIndex(blobs)
    data = png()
    out = Output(path=f"{JOB}/output/{IMAGE}-a.png", content_type="image/png", width=40, height=30, bytes=10)
    blobs.put(out.path, b"rendered", "image/png")
    assert index.key(task(caller=None), data) is None, "an older task (no caller) is neither recorded nor copied"
    index.remember(task(), index.key(task(), data), [out])
    assert len(blobs.list("dedupe/")) == 1
    later = task(job_id="12" * 16, image_id="34" * 16)
    copies, source, _ = index.reuse(later, index.key(later, data))
    assert source == f"{JOB}/{IMAGE}" and blobs.get(copies[0].path) == b"rendered"
    other = task(caller="d" * 64, job_id="12" * 16, image_id="34" * 16)
    assert index.reuse(other, index.key(other, data)) is None, "another caller"


def test_tasks_carry_a_digest_of_their_jobs_owner_and_old_tasks_decode():
    image = Image(job_id=JOB, image_id=IMAGE, filename="a.png", input_path=f"{JOB}/input/{IMAGE}-a.png")
    alice, bob, anonymous = (domain.task_for(Job(job_id=JOB, owner=o), image) for o in ("alice", "bob", None))
    assert alice.caller == domain.caller_scope("alice") and len(alice.caller) == 64 and "alice" not in alice.caller
    assert len({alice.caller, bob.caller, anonymous.caller}) == 3
    assert domain.task_for(Job(job_id="12" * 16, owner="alice"), image).caller == alice.caller, "one caller, many jobs"
    old = Task.decode({"v": 1, "job_id": JOB, "image_id": IMAGE, "input_path": "a", "output_path": "b"})
    assert old.caller is None


def test_the_processor_builds_no_job_store(local_settings, monkeypatch):
    """The service's own bootstrap path: building the job store fails the test, and the health app
    and the processor come up without one."""
    def refuse(settings):
        raise AssertionError("the processor built a job store")
    monkeypatch.setattr(bootstrap, "make_jobstore", refuse)
    backends = processor_app.processor_backends(local_settings)
    try:
        assert backends.jobs is None and "jobstore" not in backends.checks()
        client = processor_app.create_app(local_settings).test_client()
        assert client.get("/readyz").status_code == 200
        processor = processor_app.make_processor(local_settings, backends)
        assert processor.gate.blobs is backends.blobs and processor.dedupe.blobs is backends.blobs
        processor.close()
    finally:
        backends.close()
    with pytest.raises(AssertionError):
        bootstrap.make_backends(local_settings)  # what the processor used to build
