"""The fault injection itself (devtools.faults, wrapped around the production parts): parsed
strictly, off by default, and a failed write leaves no object (visible or hidden) behind."""
from __future__ import annotations

import pytest

from devtools.faults import Faults, FaultsError, FaultyBlobStore, FaultyRender
from imageflow.blobstore import BlobStoreError
from imageflow.blobstore.local import LocalBlobStore
from imageflow.messages import Task


def test_faults_are_off_unless_configured():
    assert not Faults.from_env({}).active
    faults = Faults.from_env({"IMAGEFLOW_FAULTS": "processor_crash_on=poison-,storage_fail_rate=0.25"})
    assert faults.active and faults.processor_crash_on == "poison-" and faults.storage_fail_rate == 0.25


@pytest.mark.parametrize("raw", ["crash_everything=1", "storage_fail_rate=lots", "storage_fail_rate=2",
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
    monkeypatch.setattr("devtools.faults.time.sleep", slept.append)
    faults = Faults(processor_delay_on="slowpoke-", processor_delay_seconds=7)
    faults.before_task("j/input/i-photo.png")
    faults.before_task("j/input/i-slowpoke-1.png")
    assert slept == [7]
    several = Faults.from_env({"IMAGEFLOW_FAULTS": "processor_delay_on=slowpoke-:10|chaos-:0.5"})
    several.before_task("j/input/i-chaos-0001.png")
    several.before_task("j/input/i-slowpoke-1.png")
    assert slept == [7, 0.5, 10]


def test_isolated_render_contains_a_crash_and_keeps_image_errors():
    import io

    from PIL import Image

    from imageflow.engine import ImageError, Limits
    from services.image_processor.processing import (
        WorkerCrash,
        render_isolated,
        render_task,
    )

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, "PNG")

    def task(name: str) -> Task:
        return Task(job_id="j", image_id="i", input_path=f"j/input/i-{name}", output_path="j/output/i",
                    operations=[{"op": "resize", "width": 32}])

    out, preview_in, preview_out = render_isolated(render_task, task("fine.png"), buf.getvalue(), Limits())
    assert (out.width, out.height, out.content_type) == (32, 24, "image/png")
    assert (preview_in.variant, preview_out.variant) == ("preview-in", "preview-out")  # from the same decode
    with pytest.raises(ImageError) as bad:
        render_isolated(render_task, task("text.png"), b"not an image at all", Limits())
    assert bad.value.code == "unsupported"
    with pytest.raises(WorkerCrash):  # the child is SIGKILLed; this process lives on
        render_isolated(FaultyRender(Faults(processor_crash_on="poison-")), task("poison-1.png"), buf.getvalue(),
                        Limits())
