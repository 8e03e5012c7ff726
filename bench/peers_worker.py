"""One measurement of bench/peers.py: one implementation, one input, in a fresh process
pinned to one core. Run by whichever interpreter holds the implementation (the project's
.venv, or a peer's own virtualenv), so it imports nothing but the standard library until
it knows which implementation it runs.

    python bench/peers_worker.py IMPL INPUT OUTPUT SECONDS MIN_RUNS CORE FORMAT QUALITY [ENGINE_ROOT]

IMPL is ``engine`` (ImageFlow's render, from ENGINE_ROOT), ``pillow-draft``, ``pyvips``,
a decoder of the ceiling (``decode-simplejpeg``, ``decode-pillow``, ``decode-vips``) or an
encoder of the limit (``encode-simplejpeg``, ``encode-pillow``: the output-size image,
made before the timing, encoded with standard settings). FORMAT (jpeg, webp, avif, jxl)
and QUALITY are the output's. It writes one output to OUTPUT and prints one JSON line:
CPU seconds per image, and the peak RSS above the process's RSS once warmed up.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

BOX = 1024          # fit inside 1024 x 1024
QUALITY = 85        # JPEG quality for every implementation
# AVIF at libavif speed 8 (the engine's AVIF_SPEED); libvips and sharp name it effort = 9 - speed
AVIF_VIPS_EFFORT = 1
EXTENSIONS = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl", "png": ".png"}


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

def engine(root: str, fmt: str = "jpeg", quality: int = QUALITY):
    sys.path.insert(0, root)
    from imageflow.engine import Limits, render
    from imageflow.engine.schema import resolve_operations
    operations = resolve_operations(None, [{"op": "resize", "width": BOX, "height": BOX},
                                           {"op": "format", "format": fmt, "quality": quality}])
    limits = Limits()
    from imageflow.engine import decoding
    decoding._simplejpeg()                       # libraries it loads on first use
    try:
        from imageflow.engine import vips
        _prime_vips(vips.pyvips())
    except ImportError:                          # an engine from before libvips
        pass
    return lambda data: render(data, operations, limits)[0].data


def _project_root() -> None:
    """The project on the path (the encoders' settings are the engine's own constants)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)


def pillow_save_args(fmt: str, quality: int) -> tuple[str, dict]:
    """Pillow's format name and settings for each output: JPEG with standard Huffman tables,
    WebP at libwebp's default method (4), AVIF and JPEG XL at the engine's speed and effort,
    one thread."""
    _project_root()
    if fmt == "jpeg":
        return "JPEG", {"quality": quality}
    if fmt == "webp":
        return "WEBP", {"quality": quality, "method": 4}
    if fmt == "avif":
        from imageflow.engine.encoding import AVIF_SPEED
        return "AVIF", {"quality": quality, "speed": AVIF_SPEED, "max_threads": 1}
    if fmt == "jxl":
        from imageflow.engine import jxl
        from imageflow.engine.extra_formats import JXL_EFFORT
        jxl.available()                          # registers the plugin
        return "JXL", {"quality": quality, "effort": JXL_EFFORT, "num_threads": 1}
    raise SystemExit(f"unknown output format {fmt!r}")


def _on_white(image):
    """An image with alpha flattened onto white (what a JPEG of it shows); others as RGB."""
    from PIL import Image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _for_output(image, fmt: str):
    """The image in a mode the output stores: flattened for JPEG, alpha kept otherwise."""
    if fmt == "jpeg":
        return _on_white(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def pillow_draft(fmt: str = "jpeg", quality: int = QUALITY):
    """Pillow as a careful user writes it: JPEG draft (DCT scaling by 1/2, 1/4, 1/8),
    then ``thumbnail`` (Lanczos with its default reducing gap of 2)."""
    import io
    from PIL import Image
    name, params = pillow_save_args(fmt, quality)

    def once(data: bytes) -> bytes:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", fit(*image.size))
        image.thumbnail((BOX, BOX), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        _for_output(image, fmt).save(out, name, **params)
        return out.getvalue()
    return once


def vips_thumbnail(fmt: str = "jpeg", quality: int = QUALITY):
    """libvips' own fast path: shrink-on-load, then lanczos3 reduce (``thumbnail_buffer``);
    flattened onto white for JPEG."""
    import pyvips
    _prime_vips(pyvips)
    if fmt == "jxl":
        raise SystemExit("pyvips-binary's libvips has no JPEG XL encoder")
    options = {"Q": quality, "keep": "none"}
    if fmt == "avif":
        options["effort"] = AVIF_VIPS_EFFORT

    def once(data: bytes) -> bytes:
        image = pyvips.Image.thumbnail_buffer(data, BOX, height=BOX, size="down")
        if fmt == "jpeg" and image.hasalpha():
            image = image.flatten(background=[255] * (image.bands - 1))
        return image.write_to_buffer(EXTENSIONS[fmt], **options)
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


def _output_image(data: bytes, fmt: str):
    """The image an encoder of the limit encodes: the input fitted to the box (Lanczos from
    the full decode), in the output's mode. Made once, before any timing."""
    import io
    from PIL import Image
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        resized = image.resize(fit(*image.size), Image.Resampling.LANCZOS) if image.mode != "P" else \
            image.convert("RGBA").resize(fit(*image.size), Image.Resampling.LANCZOS)
    return _for_output(resized, fmt)


def encode_pillow(fmt: str = "jpeg", quality: int = QUALITY):
    """Pillow's encoder of the output (JPEG: libjpeg-turbo, standard Huffman tables; WebP:
    libwebp, default method) on the output-size image: the encode no render can skip."""
    import io
    name, params = pillow_save_args(fmt, quality)
    prepared: dict[int, object] = {}

    def once(data: bytes) -> bytes:
        image = prepared.get(id(data))
        if image is None:                    # the first call of each input (untimed) prepares it
            image = prepared[id(data)] = _output_image(data, fmt)
        out = io.BytesIO()
        image.save(out, name, **params)
        return out.getvalue()
    return once


def encode_simplejpeg(fmt: str = "jpeg", quality: int = QUALITY):
    """libjpeg-turbo through simplejpeg (standard Huffman tables, 4:2:0, accurate DCT) on
    the output-size image."""
    import numpy
    import simplejpeg
    if fmt != "jpeg":
        raise SystemExit("simplejpeg writes JPEG only")
    prepared: dict[int, object] = {}

    def once(data: bytes) -> bytes:
        pixels = prepared.get(id(data))
        if pixels is None:
            pixels = prepared[id(data)] = numpy.ascontiguousarray(numpy.asarray(_output_image(data, fmt)))
        return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB", colorsubsampling="420")
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


# output-format-aware implementations take (fmt, quality); the decoders do not
IMPLEMENTATIONS = {"pillow-draft": pillow_draft, "pyvips": vips_thumbnail, "encode-pillow": encode_pillow,
                   "encode-simplejpeg": encode_simplejpeg}
DECODERS = {"decode-simplejpeg": decode_simplejpeg, "decode-pillow": decode_pillow, "decode-vips": decode_vips}


def measure(impl: str, data: bytes, seconds: float, min_runs: int, engine_root: str | None = None,
            fmt: str = "jpeg", quality: int = QUALITY) -> dict:
    if impl.split("@")[0] == "engine":
        once = engine(engine_root, fmt, quality)
    elif impl in DECODERS:
        once = DECODERS[impl]()
    else:
        once = IMPLEMENTATIONS[impl](fmt, quality)
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
    impl, source, target, seconds, min_runs, core, fmt, quality = argv[:8]
    os.sched_setaffinity(0, {int(core)})
    with open(source, "rb") as handle:
        data = handle.read()
    result = measure(impl, data, float(seconds), int(min_runs), argv[8] if len(argv) > 8 else None,
                     fmt, int(quality))
    with open(target, "wb") as handle:
        handle.write(result.pop("output"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
