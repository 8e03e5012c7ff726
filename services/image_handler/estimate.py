"""What a job would do, before it is run (``POST /api/v1/jobs`` with ``"estimate": true``).

Nothing is stored or published. Every upload goes through the same checks as a real job
(size, sniffed type, the header's pixel and frame limits), so the answer says which images
would be accepted and which refused, with the same reasons. The files are checked one at a
time and only their header facts kept; a few of the accepted ones are then read again and
measured (imageflow.engine.sampling: a scaled decode of at most ``SAMPLE_PIXELS``, the
geometry again at half that side, and the real encodings once per format) and give a model
per sample:

- output pixels = A * input pixels ^ e  (e is 1 when the output follows the input's size,
  0 when a resize pins it to a box), fitted on the two scales;
- output bytes = bytes per output pixel * output pixels, the bytes per pixel taken from the
  render of the real encodings: of a full-resolution centre crop where the output follows
  the input's size (a downscale compresses better than the original), else of the sample;
- CPU seconds = CPU seconds per input pixel * input pixels.

Each image is predicted with the model of the sample nearest to it in size. The wall time
is the CPU time of the images queued ahead (the pending images of jobs in progress, at
this job's mean cost) and of this job, spread over ``PROCESSOR_CONCURRENCY`` render slots.

The cost of an estimate is small and fixed: its samples render in a pool of render workers of
the image-handler's own (imageflow.render_pool: ``ESTIMATE_CONCURRENCY`` processes, each
capped at ``ESTIMATE_WORKER_MEMORY_MB``, each render held to ``ESTIMATE_TIMEOUT_SECONDS``),
never in a request thread; at most ``ESTIMATE_MAX_IN_FLIGHT`` estimates run in one process
(more answer 503 ``estimates_busy``) and, with API keys on, ``ESTIMATE_MAX_IN_FLIGHT_PER_KEY``
per key (more answer 429 ``too_many_estimates``).
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

from imageflow import domain
from imageflow.domain import ErrorCode
from imageflow.engine import ImageError, Limits
from imageflow.engine.sampling import SAMPLE_PIXELS, Model, Sample, measure
from imageflow.jobstore import JobStore, iter_jobs
from imageflow.render_pool import RenderPool, WorkerCrash
from imageflow.settings import Settings

from .errors import ClientError, Refused, RefusalCode
from .intake import Rejected, Upload, checked_files

SAMPLES = 3
__all__ = ["SAMPLES", "SAMPLE_PIXELS", "Estimator", "estimate"]


@dataclass
class _Accepted:
    """An accepted file's header facts; its bytes are not kept (read again if it is a sample)."""
    filename: str
    index: int            # its place among the uploads
    format: str
    width: int
    height: int
    input_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


class Estimator:
    """The image-handler's estimates: the bound on those in flight (per process and per key) and
    the render workers their samples run in (started on the first estimate)."""

    GRACE_SECONDS = 5.0   # past the sample's own time limit, before its worker is replaced

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._running = 0
        self._per_key: dict[str, int] = {}
        self._pool: RenderPool | None = None

    @contextmanager
    def admitted(self, owner: str | None):
        """Hold one of the process's (and the key's) estimate slots for the block, or refuse."""
        s = self.settings
        with self._lock:
            if owner is not None and s.estimate_max_in_flight_per_key and \
                    self._per_key.get(owner, 0) >= s.estimate_max_in_flight_per_key:
                raise Refused(RefusalCode.TOO_MANY_ESTIMATES, f"too many estimates at once for this API key: at most "
                              f"{s.estimate_max_in_flight_per_key} in flight; retry when one has answered",
                              {"retry_after_seconds": 5})
            if s.estimate_max_in_flight and self._running >= s.estimate_max_in_flight:
                raise Refused(RefusalCode.ESTIMATES_BUSY, f"this server is making {self._running} estimates already "
                              f"(at most {s.estimate_max_in_flight} at once); retry in a few seconds",
                              {"retry_after_seconds": 5})
            self._running += 1
            if owner is not None:
                self._per_key[owner] = self._per_key.get(owner, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if owner is not None:
                    left = self._per_key.pop(owner) - 1
                    if left:
                        self._per_key[owner] = left

    @property
    def pool(self) -> RenderPool:
        with self._lock:
            if self._pool is None:
                self._pool = RenderPool(self.settings.estimate_concurrency, self.settings.estimate_worker_memory_mb,
                                        grace_seconds=self.GRACE_SECONDS, service="image-handler")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def measure(self, sample: Sample, data: bytes, limits: Limits) -> Model:
        """The sample's model, measured in a render worker. Raises ImageError (also for a sample
        whose render killed its worker or overran the time limit)."""
        try:
            return self.pool.render(measure, sample, data, limits)
        except WorkerCrash:
            raise ImageError(ErrorCode.TOO_LARGE, f"measuring it needs more than the "
                                                  f"{self.settings.estimate_worker_memory_mb} MB an estimate may use") from None


def _pick_samples(images: list[_Accepted]) -> list[_Accepted]:
    """Up to SAMPLES images spread over the sizes (smallest, middle, largest)."""
    ordered = sorted(images, key=lambda i: i.pixels)
    if len(ordered) <= SAMPLES:
        return ordered
    step = (len(ordered) - 1) / (SAMPLES - 1)
    return [ordered[round(k * step)] for k in range(SAMPLES)]


def _pending_images(jobs: JobStore, owner: str | None) -> int:
    """Images waiting or rendering in jobs in progress (they are ahead of a new job)."""
    return sum(max(0, job.total - job.done) for status in (domain.QUEUED, domain.PROCESSING)
               for job in iter_jobs(jobs, status=status))


def estimate(settings: Settings, jobs: JobStore, uploads: list[Upload], operations: list[dict],
             admit=None, owner: str | None = None, assets: dict[str, bytes] | None = None,
             estimator: Estimator | None = None) -> dict:
    """The estimate's answer body (see the module docstring). Creates nothing. ``uploads`` are read
    once to check them and again (after ``rewind()``) for the few that are measured, so only one
    file's bytes are held at a time. ``assets``: the overlay files sent with it, as a real job's
    renders get them. ``estimator``: the render workers (the caller holds its admission)."""
    limits = Limits.from_settings(settings)
    estimator = estimator or Estimator(settings)
    reasons: list[dict] = []
    if not uploads:
        raise Refused(RefusalCode.NO_FILES, "no files: send one or more images in the 'files' field")
    if len(uploads) > settings.max_files_per_job:
        reasons.append({"code": RefusalCode.TOO_MANY_FILES, "message": f"too many files: {len(uploads)} sent, at most "
                                                             f"{settings.max_files_per_job} per job"})
    if admit:
        try:
            admit(len(uploads))
        except ClientError as exc:
            reasons.append({"code": exc.code, "message": exc.message})
    accepted: list[_Accepted] = []
    refused: list[Rejected] = []
    for index, upload in enumerate(uploads):  # the same checks as a real job's, one file at a time
        [checked] = checked_files([upload], settings, limits)
        if isinstance(checked, Rejected):
            refused.append(checked)
        else:
            info = checked.info
            accepted.append(_Accepted(checked.filename, index, info.format, info.width, info.height,
                                      len(checked.data)))
        del checked
    if not accepted:
        reasons.append({"code": RefusalCode.NO_VALID_IMAGES, "message": "none of the files could be accepted"})
    models, samples = [], []
    deadline = time.monotonic() + settings.estimate_timeout_seconds
    for image in _pick_samples(accepted):
        left = deadline - time.monotonic()
        if left <= 0:
            samples.append({"filename": image.filename, "error": f"not measured: the estimate's time limit "
                            f"({settings.estimate_timeout_seconds:g} s) was spent on the other samples"})
            continue
        upload = uploads[image.index]
        upload.rewind()
        data = upload.read(settings.max_upload_bytes + 1)
        sample = Sample(image.filename, image.format, image.width, image.height, operations, assets)
        try:
            model = estimator.measure(sample, data, replace(limits, max_render_seconds=left))
        except ImageError as exc:  # the header passed but the pixels do not: a real job would fail it too
            samples.append({"filename": image.filename, "error": exc.reason})
            continue
        finally:
            del data
        models.append(model)
        samples.append({"filename": image.filename, "width": image.width, "height": image.height,
                        "exponent": round(model.e, 2), "outputs": model.outputs,
                        "rendered_outputs": model.rendered_outputs, "extrapolated": model.extrapolated})
    rows, total_cpu, total_out = [], 0.0, 0
    for image in accepted:
        row = {"filename": image.filename, "format": image.format, "width": image.width, "height": image.height,
               "input_bytes": image.input_bytes, "predicted_output_bytes": None, "cpu_seconds": None}
        if models:
            model = min(models, key=lambda m: abs(math.log(m.pixels / image.pixels)))
            out_bytes = round(model.bytes_per_pixel * model.output_pixels(image.pixels))
            cpu = model.cpu_per_pixel * image.pixels
            row.update(predicted_output_bytes=out_bytes, cpu_seconds=round(cpu, 4))
            total_cpu += cpu
            total_out += out_bytes
        rows.append(row)
    bytes_in = sum(i.input_bytes for i in accepted)
    slots = max(1, settings.processor_concurrency)
    ahead = _pending_images(jobs, owner)
    mean_cpu = total_cpu / len(accepted) if accepted else 0.0
    return {
        "estimate": True,
        "accepted": not reasons,
        "reasons": reasons,
        "images": rows,
        "refused": [r.to_dict() for r in refused],
        "totals": {"images": len(accepted), "refused": len(refused), "bytes_in": bytes_in,
                   "predicted_bytes_out": total_out if models else None,
                   "predicted_saved_percent": domain.saved_percent(bytes_in, total_out) if models else None,
                   "cpu_seconds": round(total_cpu, 3) if models else None,
                   "wall_seconds": round((total_cpu + ahead * mean_cpu) / slots, 3) if models else None},
        "processor_slots": slots,
        "images_queued_ahead": ahead,
        "samples": samples,
    }
