"""The render budget as a property: for any valid operations list, however hostile (sizes up to the schema's
16384 px, upscales, pads, rotations, big watermarks, many variants), and any small input, ``render`` returns
within T seconds or raises ImageError, and never needs more than M MB (its peak resident memory). It runs in a
child process with an address-space cap (RLIMIT_AS) of the render workers' memory cap (which is on resident memory,
so this is stricter), so a bomb cannot hide behind a big test machine: past the cap the child fails (killed, or an
error that is not an ImageError) and so does the test."""
from __future__ import annotations

import multiprocessing
import os
import time

from hypothesis import strategies as st

from imageflow.engine.schema import GRAVITIES, MAX_DIMENSION

# Examples run in the child: IMAGEFLOW_HYPOTHESIS_SCALE multiplies them (a longer hunt, by hand).
EXAMPLES = 40 * int(os.environ.get("IMAGEFLOW_HYPOTHESIS_SCALE", "1"))
CAP_MB = 768                  # the processor's default PROCESSOR_WORKER_MEMORY_MB (its render workers' cap)
# What the property allows above the idle process (the engine's libraries loaded): the 10 MP
# budget below is 40 MB per RGBA copy, a render holds a few copies at once (the decode, an
# operation's result, a variant or a layer) plus libvips' own buffers. The hard bound is CAP_MB.
M_MB = 256
TIME_LIMIT_S = 10.0           # the budget's time limit here (RENDER_TIMEOUT_SECONDS)
T_SECONDS = 30.0              # what the property allows: the limit, plus one step past it on a shared machine
LIMITS = {"max_pixels": 4_000_000, "max_animation_pixels": 10_000_000, "max_render_seconds": TIME_LIMIT_S}

big = st.integers(1, MAX_DIMENSION)
HOSTILE_OPS = st.one_of(
    st.fixed_dictionaries({"op": st.just("resize"), "width": big},
                          optional={"height": big, "fit": st.sampled_from(["contain", "cover", "fill"]),
                                    "upscale": st.booleans()}),
    st.fixed_dictionaries({"op": st.just("pad"), "width": big}, optional={"height": big}),
    st.fixed_dictionaries({"op": st.just("rotate"), "degrees": st.floats(-360, 360, allow_nan=False)},
                          optional={"expand": st.booleans()}),
    st.fixed_dictionaries({"op": st.just("watermark"),
                           "text": st.one_of(st.text(min_size=1, max_size=200), st.just("W" * 200))},
                          optional={"size": st.one_of(st.integers(4, 2000), st.sampled_from([1000, 2000])),
                                    "position": st.sampled_from(GRAVITIES)}),
    st.fixed_dictionaries({"op": st.just("blur"), "radius": st.floats(0.1, 100)}),
    st.fixed_dictionaries({"op": st.just("crop"), "width": big, "height": big}),
    st.just({"op": "grayscale"}),
    st.just({"op": "sharpen"}),
)
HOSTILE_SETTINGS = st.one_of(
    st.fixed_dictionaries({"op": st.just("format"), "format": st.sampled_from(["jpeg", "png", "webp", "gif"])}),
    st.fixed_dictionaries({"op": st.just("variants"),
                           "widths": st.lists(big, min_size=1, max_size=8, unique=True)}),
    st.just({"op": "frames", "mode": "all"}),
)
OPERATIONS = st.lists(st.one_of(HOSTILE_OPS, HOSTILE_SETTINGS), min_size=1, max_size=5)


@st.composite
def animations(draw) -> bytes:
    """A tiny GIF of up to 60 frames (a few KB, far under every input limit)."""
    import io

    from PIL import Image

    side = draw(st.integers(1, 16))
    frames = [Image.new("RGB", (side, side), ((i * 37) % 256, (i * 91) % 256, 50))
              for i in range(draw(st.integers(2, 60)))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    return buffer.getvalue()


def _known_bombs() -> list[tuple[bytes, list[dict]]]:
    """The issue's repros, always tried first: a watermark layer far larger than its 16x16 image, and an
    animation of tiny frames blown up past every budget (both valid and under every input limit)."""
    import io

    from PIL import Image

    small = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(small, "PNG")
    frames = [Image.new("RGB", (10, 10), (i * 2, 0, 0)) for i in range(100)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=40)
    return [(small.getvalue(), [{"op": "watermark", "text": "W" * 200, "size": 1000}]),
            (gif.getvalue(), [{"op": "resize", "width": 1500, "height": 1500, "fit": "fill", "upscale": True},
                              {"op": "format", "format": "gif"}])]


def _hunt(conn) -> None:
    """In the child: cap the address space, then run the property; send back the outcome."""
    import resource

    from hypothesis import HealthCheck, example, given, settings

    from imageflow.engine import ImageError, Limits, render
    from imageflow.engine.schema import OperationsError, resolve_operations
    from tests.unit.engine.test_properties import images

    resource.setrlimit(resource.RLIMIT_AS, (CAP_MB << 20, CAP_MB << 20))
    limits = Limits(**LIMITS)
    slowest = {"s": 0.0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.one_of(images(), animations()), operations=OPERATIONS)
    def render_is_bounded(data, operations):
        try:
            resolved = resolve_operations(None, operations)
        except OperationsError:
            return  # not a valid operations list: the API refuses it before any render
        started = time.monotonic()
        try:
            render(data, resolved, limits)
        except ImageError:
            pass
        elapsed = time.monotonic() - started
        slowest["s"] = max(slowest["s"], elapsed)
        assert elapsed < T_SECONDS, (operations, elapsed)

    for data, operations in _known_bombs():
        render_is_bounded = example(data=data, operations=operations)(render_is_bounded)
    # the engine's libraries (Pillow, libvips, OpenCV...) are loaded once; the peak is measured above that
    render(_known_bombs()[0][0], resolve_operations(None, [{"op": "resize", "width": 8}]), limits)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current RSS
    idle_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    try:
        render_is_bounded()
    except BaseException as exc:  # noqa: BLE001 - the failure goes back to the test as text
        conn.send(("failed", f"{type(exc).__name__}: {str(exc)[:3000]}"))
        return
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would count the test runner that forked us
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    conn.send(("held", {"peak_rss_mb": (peak_kb - idle_kb) // 1024, "slowest_render_s": round(slowest["s"], 2)}))


def test_any_valid_operations_render_within_the_time_and_memory_budget_or_fail_as_image_errors():
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_hunt, args=(child,))
    process.start()
    child.close()
    try:
        ready = parent.poll(EXAMPLES * T_SECONDS)
        outcome = parent.recv() if ready else ("failed", "the hunt did not finish")
    except EOFError:
        process.join(10)
        outcome = ("failed", f"the child died (exit code {process.exitcode}): a render broke the {CAP_MB} MB cap")
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
    kind, detail = outcome
    assert kind == "held", detail
    assert detail["peak_rss_mb"] <= M_MB, detail
