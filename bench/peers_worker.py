"""One measurement of bench/peers.py: one implementation, one input, in a fresh process
pinned to one core. Run by whichever interpreter holds the implementation (the project's
.venv, or a peer's own virtualenv), so it imports nothing but the standard library until
it knows which implementation it runs.

    python bench/peers_worker.py IMPL INPUT OUTPUT SECONDS MIN_RUNS CORE [ENGINE_ROOT]

IMPL is ``engine`` (ImageFlow's render, from ENGINE_ROOT), ``pillow-draft``, ``pyvips``,
or a decoder of the ceiling: ``decode-simplejpeg``, ``decode-pillow``, ``decode-vips``.
It writes one output to OUTPUT and prints one JSON line: CPU seconds per image, output
bytes, and the peak RSS above the process's RSS once warmed up.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

BOX = 1024          # fit inside 1024 x 1024
QUALITY = 85        # JPEG quality for every implementation


def fit(width: int, height: int, box: int = BOX) -> tuple[int, int]:
    """The size every implementation aims at: inside the box, aspect kept, no upscaling."""
    scale = min(box / width, box / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def kind_of(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise SystemExit("unknown input format")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")          # VmHWM := VmRSS


def _prime_vips(pyvips) -> None:
    """Start libvips' machinery (types, thread pool) with a tiny image: once a process,
    not per image."""
    if pyvips is not None:
        pyvips.Image.black(64, 48, bands=3).reduce(2, 2, kernel="lanczos3").write_to_memory()


# -- implementations: each returns (once(data) -> output bytes, tiny input for the warm-up) ---

def engine(root: str):
    sys.path.insert(0, root)
    from imageflow.engine import Limits, render
    from imageflow.engine.schema import resolve_operations
    operations = resolve_operations(None, [{"op": "resize", "width": BOX, "height": BOX},
                                           {"op": "format", "format": "jpeg", "quality": QUALITY}])
    limits = Limits()
    from imageflow.engine import decoding
    decoding._simplejpeg()                       # libraries it loads on first use
    try:
        from imageflow.engine import vips
        _prime_vips(vips.pyvips())
    except ImportError:                          # an engine from before libvips
        pass
    return lambda data: render(data, operations, limits)[0].data


def pillow_draft():
    """Pillow as a careful user writes it: JPEG draft (DCT scaling by 1/2, 1/4, 1/8),
    then ``thumbnail`` (Lanczos with its default reducing gap of 2)."""
    import io
    from PIL import Image

    def once(data: bytes) -> bytes:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", fit(*image.size))
        image.thumbnail((BOX, BOX), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=QUALITY)
        return out.getvalue()
    return once


def vips_thumbnail():
    """libvips' own fast path: shrink-on-load, then lanczos3 reduce (``thumbnail_buffer``)."""
    import pyvips
    _prime_vips(pyvips)

    def once(data: bytes) -> bytes:
        image = pyvips.Image.thumbnail_buffer(data, BOX, height=BOX, size="down")
        return image.write_to_buffer(".jpg", Q=QUALITY, keep="none")
    return once


def jpeg_target(data: bytes) -> tuple[int, int]:
    """The (width, height) a JPEG is fitted to, from simplejpeg's header, which gives
    (height, width, colourspace, subsampling)."""
    import simplejpeg
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    return fit(width, height)


def decode_simplejpeg():
    """libjpeg-turbo's DCT scaling by N/8 to the smallest size not below the target, with
    the fast IDCT and upsampling (the cheapest decode of the pixels the resize needs)."""
    import simplejpeg

    def once(data: bytes) -> bytes:
        target = jpeg_target(data)
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=target[0], min_height=target[1],
                                        fastdct=True, fastupsample=True)
        return pixels[:1, :16].tobytes()         # a decoder's output is not compared
    return once


def decode_pillow():
    """Pillow's decode: draft for JPEG (1/2, 1/4, 1/8), in full otherwise."""
    import io
    from PIL import Image

    def once(data: bytes) -> bytes:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", fit(*image.size))
        image.load()
        return image.crop((0, 0, 16, 1)).tobytes()   # a decoder's output is not compared
    return once


def decode_vips():
    """libvips' decode at the scale the resize needs: JPEG shrink-on-load (1/2, 1/4, 1/8),
    WebP scaled decode, PNG in full (sequential)."""
    import pyvips
    _prime_vips(pyvips)

    def once(data: bytes) -> bytes:
        header = pyvips.Image.new_from_buffer(data, "")
        target = fit(header.width, header.height)
        kind = kind_of(data)
        options = {}
        if kind == "jpeg":
            shrink = max((s for s in (1, 2, 4, 8)
                          if math.ceil(header.width / s) >= target[0] and math.ceil(header.height / s) >= target[1]))
            options["shrink"] = shrink
        elif kind == "webp":
            options["scale"] = max(target[0] / header.width, target[1] / header.height)
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", **options)
        return image.write_to_memory()[:64]      # a decoder's output is not compared
    return once


WARMUP_SIZE = (1600, 1200)


def warmup_input(kind: str) -> bytes:
    """A small image of the input's format, large enough to take the same path (a scaled
    decode and a reduce to 1024 px), so that every lazy library is loaded before the
    peak is reset; made with whichever library this interpreter has."""
    try:
        import io
        from PIL import Image
        out = io.BytesIO()
        warmup_image().save(out, {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[kind])
        return out.getvalue()
    except ImportError:
        import pyvips
        image = (pyvips.Image.xyz(*WARMUP_SIZE)[0] % 256).cast("uchar").bandjoin([128, 64])
        return image.write_to_buffer({"jpeg": ".jpg", "png": ".png", "webp": ".webp"}[kind])


def warmup_image():
    from PIL import Image
    return Image.merge("RGB", [Image.linear_gradient("L").resize(WARMUP_SIZE)] * 3)


IMPLEMENTATIONS = {"pillow-draft": pillow_draft, "pyvips": vips_thumbnail, "decode-simplejpeg": decode_simplejpeg,
                   "decode-pillow": decode_pillow, "decode-vips": decode_vips}


def measure(impl: str, data: bytes, seconds: float, min_runs: int, engine_root: str | None = None) -> dict:
    once = engine(engine_root) if impl.split("@")[0] == "engine" else IMPLEMENTATIONS[impl]()
    warmup = warmup_input(kind_of(data))
    _reset_peak()                            # libraries loaded, no image yet
    idle = _status_kib("VmRSS")
    once(warmup)                             # first calls set up what they need
    output = once(data)                      # the first real image counts for memory, not time
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < deadline:
        cpu = time.process_time()            # every thread of this process, on its one core
        once(data)
        times.append(time.process_time() - cpu)
    return {"impl": impl, "times": times, "output": output, "idle_rss_mb": idle / 1024,
            "peak_above_idle_mb": (_status_kib("VmHWM") - idle) / 1024}


def main(argv: list[str]) -> int:
    impl, source, target, seconds, min_runs, core = argv[:6]
    os.sched_setaffinity(0, {int(core)})
    with open(source, "rb") as handle:
        data = handle.read()
    result = measure(impl, data, float(seconds), int(min_runs), argv[6] if len(argv) > 6 else None)
    with open(target, "wb") as handle:
        handle.write(result.pop("output"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
