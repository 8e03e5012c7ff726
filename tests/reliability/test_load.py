"""Load on the local stack (bench/load.py): one big job with the processors at full
concurrency while eight other clients upload, with every process's memory sampled."""
from __future__ import annotations

import pytest

from bench.load import run


def check_load(record, result, images: int) -> None:
    figures = result.to_dict()
    record.figure("images in the job", images)
    record.figure("processors x concurrency", f"{result.processors} x {result.concurrency}")
    record.figure("upload of the job (s)", result.upload_seconds)
    record.figure("POST to completed (s)", result.job_seconds)
    record.figure("throughput (images/s)", figures["throughput_images_per_s"])
    record.figure("concurrent uploads: jobs completed / posted", f"{result.side_jobs_completed} / {result.side_jobs}")
    record.figure("POST /api/v1/jobs latency (5 images each)", result.post_latency)
    record.figure("GET /api/v1/jobs/<id> latency", result.get_latency)
    record.figure("RSS per process (MiB)", {name: f"start {m['start']}, peak {m['peak']}, end {m['end']}, "
                                                  f"second-half growth {m['second_half_growth']}"
                                            for name, m in result.memory.items()})
    record.figure("memory over time (RSS MiB per process)", result.memory_timeline)
    record.expect((result.job_status, result.succeeded, result.failed) == ("completed", images, 0),
                  "the big job completed with every image succeeded", (result.job_status, result.succeeded))
    record.expect(result.outputs_in_storage == images, "one output per image in storage", result.outputs_in_storage)
    record.expect(result.upload_errors == 0 and result.status_errors == 0, "no API call failed under load",
                  (result.upload_errors, result.status_errors))
    record.expect(result.side_jobs_completed == result.side_jobs > 0, "every concurrently uploaded job completed")
    growing = {name: m for name, m in result.memory.items()
               if m["second_half_growth"] > max(25.0, 0.15 * m["peak"])}
    record.expect(not growing, "no process's memory keeps growing (second half of the run: < 25 MiB or 15%)",
                  growing)


def test_load_smoke_60_images_with_concurrent_uploads(tmp_path, record):
    """A 60-image job with 2 processors x 2, while 2 clients each upload 3 five-image jobs (CI-sized)."""
    result = run(tmp_path / "data", images=60, processors=2, concurrency=2, uploaders=2, uploads=3, timeout=300)
    check_load(record, result, 60)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_load_2000_image_job_with_8_concurrent_uploaders(tmp_path, record):
    """A 2000-image job (800x600 JPEGs, resize to 320 px wide and WebP) with 2 processors x 2 on 2 cores, while 8
    clients each upload 25 five-image jobs and read their status."""
    result = run(tmp_path / "data", images=2000, processors=2, concurrency=2, uploaders=8, uploads=25, timeout=1800)
    check_load(record, result, 2000)
