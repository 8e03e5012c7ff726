"""What a job would do, before it is run (``POST /api/v1/jobs`` with ``"estimate": true``).

Nothing is stored or published. Every upload goes through the same checks as a real job
(size, sniffed type, the header's pixel and frame limits), so the answer says which images
would be accepted and which refused, with the same reasons. A few of the accepted ones are
then rendered with the job's operations at reduced scale (at most ``SAMPLE_PIXELS``, and
again at half that side) and the two renders give a model per sample:

- output pixels = A * input pixels ^ e  (e is 1 when the output follows the input's size,
  0 when a resize pins it to a box), fitted on the two scales;
- output bytes = bytes per output pixel * output pixels, the bytes per pixel taken from the
  larger render, or (as far as the output follows the input's size) from a render of a
  full-resolution centre crop, since a downscale compresses better than the original;
- CPU seconds = CPU seconds per input pixel * input pixels (thread CPU time of the render).

Each image is predicted with the model of the sample nearest to it in size. The wall time
is the CPU time of the images queued ahead (the pending images of jobs in progress, at
this job's mean cost) and of this job, spread over ``PROCESSOR_CONCURRENCY`` render slots.
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

from PIL import Image

from imageflow import domain
from imageflow.engine import ImageError, Limits, render
from imageflow.engine.decoding import open_source, turn
from imageflow.jobstore import JobStore, iter_jobs
from imageflow.settings import Settings

from .errors import ClientError
from .intake import Rejected, Upload, checked_files

SAMPLES = 3
SAMPLE_PIXELS = 1_000_000
MIN_SAMPLE_SIDE = 16
_SAVE = {"jpeg": ("JPEG", {"quality": 92}), "png": ("PNG", {}), "webp": ("WEBP", {"quality": 92}),
         "gif": ("GIF", {}), "tiff": ("TIFF", {}), "bmp": ("BMP", {})}


@dataclass
class _Accepted:
    filename: str
    data: bytes
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class _Model:
    pixels: int          # the full image the sample came from
    a: float
    e: float
    bytes_per_pixel: float
    cpu_per_pixel: float

    def output_pixels(self, pixels: int) -> float:
        return self.a * pixels ** self.e


def _scaled(image: _Accepted, scale: float, limits: Limits, crop: bool = False) -> bytes:
    """The image at ``scale`` of its side (or, with ``crop``, its centre at full resolution
    and that size), upright, re-encoded in its own format."""
    # the engine's open: it knows per format whether the decoder already turns the pixels
    # upright (Pillow does a TIFF's, libheif a HEIC's), so the sample is turned exactly once
    source = open_source(image.data, limits)
    with source.image as im:
        size = (max(MIN_SAMPLE_SIDE, round(image.width * scale)), max(MIN_SAMPLE_SIDE, round(image.height * scale)))
        correction = source.correction()
        if im.format == "JPEG" and not crop:
            im.draft("RGB", (size[1], size[0]) if correction in (5, 6, 7, 8) else size)   # in stored pixels
        upright = turn(im, correction)
        if crop:
            left, top = (upright.width - size[0]) // 2, (upright.height - size[1]) // 2
            small = upright.crop((left, top, left + size[0], top + size[1]))
        else:
            small = upright.resize(size, Image.Resampling.LANCZOS) if scale < 1 else upright
        name, options = _SAVE.get(image.format, ("PNG", {}))
        if name == "JPEG" and small.mode not in ("RGB", "L"):
            small = small.convert("RGB")
        out = io.BytesIO()
        small.save(out, name, **options)
        return out.getvalue()


def _render_sample(data: bytes, operations: list[dict], limits: Limits,
                   assets: dict[str, bytes] | None = None) -> tuple[int, int, float, int]:
    """(input pixels, output pixels, CPU seconds, output bytes) of one render (every output counted)."""
    with Image.open(io.BytesIO(data)) as im:
        pixels = im.width * im.height
    started = time.thread_time()
    outputs = render(data, operations, limits, assets)
    cpu = time.thread_time() - started
    return pixels, sum(o.width * o.height for o in outputs), cpu, sum(len(o.data) for o in outputs)


def _model(image: _Accepted, operations: list[dict], limits: Limits, assets: dict[str, bytes] | None = None) -> _Model:
    scale = min(1.0, math.sqrt(SAMPLE_PIXELS / image.pixels))
    p1, o1, cpu1, bytes1 = _render_sample(_scaled(image, scale, limits) if scale < 1 else image.data, operations,
                                          limits, assets)
    e = 1.0
    if min(image.width, image.height) * scale / 2 >= MIN_SAMPLE_SIDE:
        p2, o2, _, _ = _render_sample(_scaled(image, scale / 2, limits), operations, limits, assets)
        if o1 > 0 and o2 > 0 and p1 > p2:
            e = min(1.0, max(0.0, math.log(o1 / o2) / math.log(p1 / p2)))
    bytes_per_pixel = bytes1 / max(1, o1)
    if scale < 1 and e > 0:
        # A downscale is smoother than the original and compresses better: where the output
        # follows the input's size, take the bytes per pixel of a full-resolution crop instead.
        try:
            _, oc, _, bytes_crop = _render_sample(_scaled(image, scale, limits, crop=True), operations, limits,
                                                  assets)
            if oc > 0:
                bytes_per_pixel = (bytes_crop / oc) ** e * bytes_per_pixel ** (1 - e)
        except ImageError:  # operations that need the whole frame (a crop box): keep the downscale's figure
            pass
    return _Model(pixels=image.pixels, a=o1 / p1 ** e, e=e, bytes_per_pixel=bytes_per_pixel,
                  cpu_per_pixel=cpu1 / max(1, p1))


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
             admit=None, owner: str | None = None, assets: dict[str, bytes] | None = None) -> dict:
    """The estimate's answer body (see the module docstring). Creates nothing. ``assets``: the
    overlay files sent with it, as a real job's renders get them."""
    limits = Limits.from_settings(settings)
    reasons: list[dict] = []
    if not uploads:
        raise ClientError(400, "no_files", "no files: send one or more images in the 'files' field")
    if len(uploads) > settings.max_files_per_job:
        reasons.append({"code": "too_many_files", "message": f"too many files: {len(uploads)} sent, at most "
                                                             f"{settings.max_files_per_job} per job"})
    if admit:
        try:
            admit(len(uploads))
        except ClientError as exc:
            reasons.append({"code": exc.code, "message": exc.message})
    accepted: list[_Accepted] = []
    refused: list[Rejected] = []
    for checked in checked_files(uploads, settings, limits):  # the same checks as a real job's
        if isinstance(checked, Rejected):
            refused.append(checked)
        else:
            accepted.append(_Accepted(checked.filename, checked.data, checked.info.format, checked.info.width,
                                      checked.info.height))
    if not accepted:
        reasons.append({"code": "no_valid_images", "message": "none of the files could be accepted"})
    models, samples = [], []
    for image in _pick_samples(accepted):
        try:
            model = _model(image, operations, limits, assets)
        except ImageError as exc:  # the header passed but the pixels do not: a real job would fail it too
            samples.append({"filename": image.filename, "error": exc.reason})
            continue
        models.append(model)
        samples.append({"filename": image.filename, "width": image.width, "height": image.height,
                        "exponent": round(model.e, 2)})
    rows, total_cpu, total_out = [], 0.0, 0
    for image in accepted:
        row = {"filename": image.filename, "format": image.format, "width": image.width, "height": image.height,
               "input_bytes": len(image.data), "predicted_output_bytes": None, "cpu_seconds": None}
        if models:
            model = min(models, key=lambda m: abs(math.log(m.pixels / image.pixels)))
            out_bytes = round(model.bytes_per_pixel * model.output_pixels(image.pixels))
            cpu = model.cpu_per_pixel * image.pixels
            row.update(predicted_output_bytes=out_bytes, cpu_seconds=round(cpu, 4))
            total_cpu += cpu
            total_out += out_bytes
        rows.append(row)
    bytes_in = sum(len(i.data) for i in accepted)
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
