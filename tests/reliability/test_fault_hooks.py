"""The fault injection itself (devtools.faults, wrapped around the production parts): parsed
strictly, off by default, and a failed write leaves no object (visible or hidden) behind."""
from __future__ import annotations

import time

import pytest

from devtools.faults import Faults, FaultsError, FaultyBlobStore, FaultyRender
from devtools.latency import LatentBlobStore, LatentBus
from imageflow.bus import SubscriptionConfig
from imageflow.bus.sqlite import SqliteBus
from imageflow.blobstore import BlobStoreError
from imageflow.blobstore.local import LocalBlobStore
from imageflow.messages import Task


def test_faults_are_off_unless_configured():
    assert not Faults.from_env({}).active
    faults = Faults.from_env({"IMAGEFLOW_FAULTS": "processor_crash_on=poison-,storage_fail_rate=0.25"})
    assert faults.active and faults.processor_crash_on == "poison-" and faults.storage_fail_rate == 0.25


def test_latency_wraps_every_storage_and_bus_call_and_changes_nothing_else(tmp_path, monkeypatch):
    faults = Faults.from_env({"IMAGEFLOW_FAULTS": "storage_latency_seconds=0.05,bus_latency_seconds=0.02"})
    assert (faults.storage_latency_seconds, faults.bus_latency_seconds) == (0.05, 0.02)
    waits = []
    monkeypatch.setattr("devtools.latency.sleep", waits.append)  # this module's waits, not every thread's
    store = LatentBlobStore(LocalBlobStore(tmp_path / "blobs"), 0.05)
    store.put("job/input/a.png", b"png", "image/png")
    assert store.get("job/input/a.png") == b"png" and store.exists("job/input/a.png")
    assert waits == [0.05] * 3
    bus = LatentBus(SqliteBus(tmp_path / "bus.db"), 0.02)
    bus.ensure_topic("t")
    bus.ensure_subscription(SubscriptionConfig(name="s", topic="t"))
    waits.clear()
    bus.publish("t", b"hello", {"k": "v"})
    [message] = bus.pull("s", max_messages=5)
    assert (message.data, message.attributes, message.delivery_attempt) == (b"hello", {"k": "v"}, 1)
    message.ack()
    assert bus.pull("s") == [], "the ack reached the real bus"
    assert waits == [0.02] * 4  # publish, pull, ack, pull


@pytest.mark.parametrize("raw", ["crash_everything=1", "storage_fail_rate=lots", "storage_fail_rate=2",
                                 "storage_latency_seconds=-1",
                                 "processor_crash_on", "processor_delay_on=slow:soon"])
def test_malformed_faults_fail_fast(raw):
    with pytest.raises(FaultsError, match="IMAGEFLOW_FAULTS"):
        Faults.from_env({"IMAGEFLOW_FAULTS": raw})


def test_injected_write_failure_leaves_no_partial_object(tmp_path):
    store = FaultyBlobStore(LocalBlobStore(tmp_path / "blobs"), Faults(storage_fail_rate=1.0))
    with pytest.raises(BlobStoreError, match="injected"):
        store.put("job/output/a.png", b"x" * 1000, "image/png")
    assert not store.exists("job/output/a.png")
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []


def test_delay_hook_only_matches_its_tasks(monkeypatch):
    slept = []
    monkeypatch.setattr("devtools.faults.sleep", slept.append)  # this module's waits, not every thread's
    faults = Faults(processor_delay_on="slowpoke-", processor_delay_seconds=7)
    faults.before_task("j/input/i-photo.png")
    faults.before_task("j/input/i-slowpoke-1.png")
    assert slept == [7]
    several = Faults.from_env({"IMAGEFLOW_FAULTS": "processor_delay_on=slowpoke-:10|chaos-:0.5"})
    several.before_task("j/input/i-chaos-0001.png")
    several.before_task("j/input/i-slowpoke-1.png")
    assert slept == [7, 0.5, 10]


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def _task(name: str) -> Task:
    return Task(job_id="j", image_id="i", input_path=f"j/input/i-{name}", output_path="j/output/i",
                operations=[{"op": "resize", "width": 32}])


def hog_memory(task, data, limits):
    """A render that allocates 2 GB (what a bomb past the engine's budgets would do)."""
    hog = bytearray(2 * 1024 ** 3)
    return [hog]


def test_the_render_pool_contains_a_crash_to_its_own_task_and_keeps_image_errors():
    """Two workers: one task SIGKILLs its worker while a slow task renders in the other; the crash fails only the
    crashing task (at once), the slow one finishes, the dead worker is replaced and the pool keeps rendering."""
    from concurrent.futures import ThreadPoolExecutor

    from imageflow.engine import ImageError, Limits
    from services.image_processor.processing import RenderPool, WorkerCrash, render_task

    pool = RenderPool(2, memory_mb=768)
    faulty = FaultyRender(Faults(processor_crash_on="poison-", processor_delay_on="slowpoke-",
                                 processor_delay_seconds=2))
    try:
        out, preview_in, preview_out = pool.render(render_task, _task("fine.png"), _png(), Limits())
        assert (out.width, out.height, out.content_type) == (32, 24, "image/png")
        assert (preview_in.variant, preview_out.variant) == ("preview-in", "preview-out")  # from the same decode
        with pytest.raises(ImageError) as bad:
            pool.render(render_task, _task("text.png"), b"not an image at all", Limits())
        assert bad.value.code == "unsupported"
        with ThreadPoolExecutor(2) as threads:
            slow = threads.submit(pool.render, faulty, _task("slowpoke-1.png"), _png(), Limits())
            time.sleep(0.5)
            with pytest.raises(WorkerCrash) as crash:  # the worker is SIGKILLed; this process lives on
                pool.render(faulty, _task("poison-1.png"), _png(), Limits())
            assert "signal 9" in str(crash.value)
            slow_out = slow.result(timeout=60)[0]
        assert slow_out.width == 32, "the task rendering beside the crash was not taken down with it"
        assert pool.replaced == 1
        assert len(pool.render(render_task, _task("after.png"), _png(), Limits())) == 3
    finally:
        pool.close()


def test_a_worker_past_its_memory_cap_fails_the_task_as_too_large():
    from imageflow.engine import ImageError, Limits
    from services.image_processor.processing import RenderPool, render_task

    pool = RenderPool(1, memory_mb=768)
    try:
        with pytest.raises(ImageError) as err:
            pool.render(hog_memory, _task("hog.png"), _png(), Limits())
        assert err.value.code == "too_large" and "768 MB" in err.value.reason
        assert len(pool.render(render_task, _task("after.png"), _png(), Limits())) == 3
    finally:
        pool.close()


def test_a_crashing_image_fails_on_its_first_attempt(tmp_path):
    """The processor: a task whose render kills its worker is a failed image with the reason, on delivery 1."""
    from imageflow.bootstrap import make_backends
    from imageflow.settings import Settings
    from services.image_processor.processing import Processor

    settings = Settings.from_env({"IMAGEFLOW_DATA_DIR": str(tmp_path), "PROCESSOR_CONCURRENCY": "1"})
    backends = make_backends(settings)
    processor = Processor(settings, backends.blobs, backends.bus, FaultyRender(Faults(processor_crash_on="poison-")))
    try:
        task = _task("poison-2.png")
        backends.blobs.put(task.input_path, _png(), "image/png")
        result = processor.process(task)
        assert result.status == "failed" and "crashed its worker process" in result.error
    finally:
        processor.close()
        backends.close()


def test_a_stop_signal_to_the_whole_process_group_does_not_fail_the_task_being_handed_over():
    """A local stack stops a processor with SIGTERM to its process group, so its render workers get
    it too. A worker that is idle at that moment must stay: the draining processor may be handing it
    the task it just took (that race failed the image as ``worker_crashed``)."""
    import os
    import signal

    from imageflow.engine import Limits
    from services.image_processor.processing import RenderPool, render_task

    pool = RenderPool(1, memory_mb=768)
    try:
        assert len(pool.render(render_task, _task("warm.png"), _png(), Limits())) == 3  # the worker exists, idle
        [worker] = pool._idle

        def signal_the_group_now():  # runs after the slot is taken, just before the task is sent
            os.kill(worker.process.pid, signal.SIGTERM)
            worker.process.join(timeout=1)

        out = pool.render(render_task, _task("handed-over.png"), _png(), Limits(), before=signal_the_group_now)
        assert out[0].width == 32 and worker.process.is_alive() and pool.replaced == 0
    finally:
        pool.close()
