"""Variants are encoded and released one by one: the peak memory of a render does not grow
with the number of variants (issue 14, D2: eight near-full-width variants of a 25 MP
photo once peaked at 1.4 GiB, because every scaled copy was held until the end).

Measured as the peak RSS of a child process (Pillow's pixels live outside Python's
allocator, so tracemalloc cannot see them). glibc is told to map every large buffer on
its own, so RSS follows the live pixels instead of the allocator's high-water mark."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WIDTH, HEIGHT = 2400, 1800
COPY_MB = WIDTH * HEIGHT * 3 / 2**20          # one full-width RGB copy: about 12 MiB

CHILD = textwrap.dedent("""
    import io, json, sys
    from PIL import Image
    from imageflow.engine import Limits, render
    from imageflow.engine.schema import resolve_operations

    def status(field):
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith(field + ":")) / 1024

    width, height, count = (int(arg) for arg in sys.argv[1:4])
    image = Image.merge("RGB", [Image.linear_gradient("L").resize((width, height))] * 3)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    data, image = out.getvalue(), None
    widths = [width - 8 * index for index in range(count)]       # near full width, as in D2
    operations = resolve_operations(None, [{"op": "variants", "widths": widths, "formats": ["png"]}])
    render(data, resolve_operations(None, [{"op": "variants", "widths": [64, 32], "formats": ["png"]}]), Limits())
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    idle = status("VmRSS")
    outputs = render(data, operations, Limits())
    print(json.dumps({"peak_mb": status("VmHWM") - idle, "widths": [o.width for o in outputs],
                      "output_mb": sum(len(o.data) for o in outputs) / 2**20}))
""")


def working_mb(count: int) -> float:
    """Peak RSS of the render above the idle process, less the encoded outputs it returns
    (those are the result, held by design)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(256 * 1024), VIPS_CONCURRENCY="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", CHILD, str(WIDTH), str(HEIGHT), str(count)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["widths"] == [WIDTH - 8 * index for index in range(count)]
    return result["peak_mb"] - result["output_mb"]


def test_peak_memory_does_not_grow_with_the_number_of_variants():
    three, eight = working_mb(3), working_mb(8)
    # holding every copy, eight variants would need five more full-width copies (~60 MiB)
    # than three; encoded and released one by one, only the copy being scaled from and
    # the one being made are alive, whatever the count
    assert eight < three + COPY_MB / 2, (three, eight)
    assert three < 6 * COPY_MB, three      # the decode, two copies, the resize's own buffer
