"""The cost of ``quality: "auto"`` (SSIMULACRA2 search) against a fixed quality, in one run.

    .venv/bin/python -m bench.autoquality             # or: python bench/autoquality.py
    .venv/bin/python -m bench.autoquality --repeats 5 --json autoquality.json
    .venv/bin/python -m bench.autoquality --calibrate   # the typical curves of engine/autoquality.py

For each input (the engine benchmark's camera-like photo and RGBA graphic, resized to
1024 px first so only the encode differs) and each format, it renders the same image with
the format's fixed default quality and with ``quality: auto`` (target 80), in this one
single-threaded process, and prints the median CPU time of each, their ratio, the bytes,
the quality auto chose, how many encodes it made and the SSIMULACRA2 score of both outputs (scored as auto scores:
the 512 px window with the most detail, transparency on mid grey). No assertion on timings:
it prints figures, it does not judge.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):          # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import _cpu_model, make_inputs  # noqa: E402

TARGET = 80
FORMATS = ("jpeg", "webp", "avif", "jxl")
INPUTS = ("2mp.jpg", "1mp-rgba.png")
CALIBRATION = ("2mp.jpg", "1mp-rgba.png", "12mp.jpg", "14mp-cutout-opaque.png")
AIM = 3.0             # issue 28: quality auto at most 3x the CPU of a fixed quality


def measure(data: bytes, fmt: str, repeats: int, target: float = TARGET) -> dict:
    from PIL import Image

    from imageflow.engine import Limits, render
    from imageflow.engine.autoquality import score_output
    from imageflow.engine.encoding import OUTPUT_FORMATS, prepare
    from imageflow.engine.schema import resolve_operations

    limits = Limits()
    # the pixels the encoder is handed (flattened onto white for a format without alpha),
    # scored the way quality auto scores them (its window, transparency on mid grey)
    with Image.open(io.BytesIO(data)) as decoded:
        original = prepare(decoded.convert("RGBA" if "A" in decoded.getbands() else "RGB"),
                           OUTPUT_FORMATS[fmt], "#ffffff")
    row = {"format": fmt, "fixed_quality": OUTPUT_FORMATS[fmt].default_quality}
    for mode, op in (("fixed", {"op": "format", "format": fmt}),
                     ("auto", {"op": "format", "format": fmt, "quality": "auto", "target": target})):
        operations = resolve_operations(None, [op])
        output = render(data, operations, limits)[0]           # warm-up (lazy imports), and the output
        times = []
        for _ in range(repeats):
            start = time.process_time()
            render(data, operations, limits)
            times.append(time.process_time() - start)
        row[f"{mode}_ms"] = statistics.median(times) * 1000
        row[f"{mode}_bytes"] = len(output.data)
        row[f"{mode}_score"] = score_output(original, output.data)
        if mode == "auto":
            row["auto_encodes"] = _encodes(lambda: render(data, operations, limits))
            row["auto_quality"] = output.choices["quality"]
            row["auto_by"] = output.choices["quality_by"]
    row["ratio"] = row["auto_ms"] / row["fixed_ms"]
    return row


def _encodes(run) -> int:
    """How many encodes (of the window or the whole output) one render makes."""
    from imageflow.engine import encoding
    original, count = encoding._encode_once, [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)
    encoding._encode_once = counting
    try:
        run()
    finally:
        encoding._encode_once = original
    return count[0]


def calibrate(width: int, formats) -> dict[str, list[float]]:
    """The median score over the inputs at quality 1, 10, ..., 100 per format, each scored as
    auto scores (its window encoded alone): the TYPICAL curves of engine/autoquality.py."""
    import statistics

    import numpy as np
    from PIL import Image

    from imageflow.engine import autoquality as auto, extra_formats, metric
    from imageflow.engine.encoding import OUTPUT_FORMATS, EncodeOptions, _encode_once, _save_args, prepare
    with tempfile.TemporaryDirectory(prefix="imageflow-bench-") as tmp:
        inputs = make_inputs(Path(tmp), names=CALIBRATION)
        images = [Image.open(io.BytesIO(resized(inputs[name], width))) for name in CALIBRATION]
        curves = {}
        for name in formats:
            fmt = OUTPUT_FORMATS[name]
            extra_formats.register(name)
            per_image = []
            for image in images:
                image = prepare(image.convert("RGBA" if "A" in image.getbands() else "RGB"), fmt, "#ffffff")
                box = auto.scored_window(image)
                part = image.crop(box) if box else image
                reference = metric.Reference(np.asarray(auto._flat(part)))
                per_image.append([reference.score(auto._pixels(_encode_once(
                    [part], [100], None, fmt, _save_args(fmt, EncodeOptions(), q)))) for q in auto.QUALITIES])
            curves[name] = [round(statistics.median(scores)) for scores in zip(*per_image)]
            print(f'    "{name}": {tuple(curves[name])},', flush=True)
    return curves


def resized(path: Path, width: int) -> bytes:
    from imageflow.engine import Limits, render
    from imageflow.engine.schema import resolve_operations
    ops = [{"op": "resize", "width": width, "height": width}, {"op": "format", "format": "png"}]
    return render(path.read_bytes(), resolve_operations(None, ops), Limits())[0].data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed renders per case (median)")
    parser.add_argument("--width", type=int, default=1024, help="the size the inputs are resized to first")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--calibrate", action="store_true",
                        help="print the typical score curves quality auto's search starts from, and stop")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.calibrate:
        calibrate(args.width, args.formats.split(","))
        return 0
    with tempfile.TemporaryDirectory(prefix="imageflow-bench-") as tmp:
        inputs = make_inputs(Path(tmp))
        print(f"# quality auto (target {TARGET}) vs the fixed default quality  ({time.strftime('%Y-%m-%d %H:%M')})")
        print(f"cpu: {_cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
              f"one thread, median CPU time of {args.repeats} renders")
        rows = []
        for name in INPUTS:
            data = resized(inputs[name], args.width)
            for fmt in args.formats.split(","):
                rows.append({"input": f"{name} at {args.width} px", **measure(data, fmt, args.repeats)})
    print()
    print("| input | format | fixed q | fixed ms | auto ms | auto/fixed | auto encodes | auto q | fixed KiB | "
          "auto KiB | fixed score | auto score |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['input']} | {row['format']} | {row['fixed_quality']} | {row['fixed_ms']:.0f} | "
              f"{row['auto_ms']:.0f} | {row['ratio']:.1f}x | {row['auto_encodes']} | "
              f"{row['auto_quality']} ({row['auto_by']}) | "
              f"{row['fixed_bytes'] / 1024:.0f} | {row['auto_bytes'] / 1024:.0f} | {row['fixed_score']:.1f} | "
              f"{row['auto_score']:.1f} |")
    if rows:
        worst = max(rows, key=lambda row: row["ratio"])
        print(f"\nauto/fixed: at most {worst['ratio']:.1f}x ({worst['input']}, {worst['format']}); "
              f"the aim is at most {AIM:g}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cpu": _cpu_model()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
