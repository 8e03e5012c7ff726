"""Where a JPEG render's time goes, step by step, and what each alternative would save.

    .venv/bin/python -m bench.jpeg_budget                     # the 4 MP input of bench/peers.py
    .venv/bin/python -m bench.jpeg_budget --input 12mp-baseline.jpg --rounds 30

One process on one core, the steps interleaved round after round (CPU time, the median of
the rounds), on an input of ``bench/peers.py`` fitted into 1024 x 1024 as a JPEG at
quality 85, as the peers benchmark does:

* the decode the engine makes (libjpeg-turbo's N/8 scaling, the fast IDCT): the ceiling;
* the resample: libvips' Lanczos-3 reduce (the engine's), against OpenCV's bilinear and
  area resizes, each with its PSNR against a full-resolution Lanczos reference;
* the encode with and without optimised Huffman tables, with the bytes of each;
* the placeholders (BlurHash and dominant colour);
* the whole engine render.

It then prints what a share of the ceiling leaves for everything after the decode. It
prints figures and judges nothing.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):          # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.peers import make_inputs  # noqa: E402
from imageflow.engine import placeholders, vips  # noqa: E402
from imageflow.engine.limits import Limits  # noqa: E402
from imageflow.engine.render import render  # noqa: E402
from imageflow.engine.schema import resolve_operations  # noqa: E402

BOX, QUALITY = 1024, 85


def psnr(a: np.ndarray, reference: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - reference) ** 2).mean())
    return 10 * np.log10(255 ** 2 / mse) if mse else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default="4mp.jpg", help="a JPEG of bench/peers.py's inputs")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--share", type=float, default=0.75, help="the share of the ceiling to budget for")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "imageflow-bench"))
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)  # small inputs, for a smoke test
    args = parser.parse_args(argv)

    import cv2
    import simplejpeg
    pyvips = vips.pyvips()
    cv2.setNumThreads(1)
    inputs = Path(args.cache) / ("inputs-v1" if args.scale == 1 else f"inputs-v1-scale-{args.scale}")
    path = make_inputs(inputs, args.scale)[args.input]
    data = path.read_bytes()
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    fit = min(1.0, BOX / width, BOX / height)
    size = (round(width * fit), round(height * fit))
    reference = np.asarray(Image.open(path).convert("RGB").resize(size, Image.Resampling.LANCZOS))
    operations = resolve_operations(None, [{"op": "resize", "width": BOX, "height": BOX},
                                           {"op": "format", "format": "jpeg", "quality": QUALITY}])
    limits = Limits()

    def decode():
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=size[0], min_height=size[1],
                                      fastdct=True, fastupsample=True)

    decoded = decode()

    def vips_reduce():
        source = pyvips.Image.new_from_memory(decoded.data, decoded.shape[1], decoded.shape[0], 3, "uchar")
        reduced = source.reduce(decoded.shape[1] / size[0], decoded.shape[0] / size[1], kernel="lanczos3")
        return np.ndarray(buffer=reduced.write_to_memory(), dtype=np.uint8, shape=(size[1], size[0], 3))

    resized = Image.fromarray(vips_reduce())

    def encode(optimize: bool):
        def once():
            out = io.BytesIO()
            resized.save(out, "JPEG", quality=QUALITY, optimize=optimize)
            return out.getvalue()
        return once

    steps = {
        "decode (the ceiling)": decode,
        "resample: libvips Lanczos-3 (the engine)": vips_reduce,
        "resample: OpenCV bilinear": lambda: cv2.resize(decoded, size, interpolation=cv2.INTER_LINEAR),
        "resample: OpenCV area": lambda: cv2.resize(decoded, size, interpolation=cv2.INTER_AREA),
        "encode, optimised Huffman (the engine)": encode(True),
        "encode, standard Huffman": encode(False),
        "placeholders": lambda: placeholders.of(resized),
        "whole engine render": lambda: render(data, operations, limits)[0].data,
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    results = {name: step() for name, step in steps.items()}      # warm up, and keep one output of each
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.process_time()
            step()
            times[name].append(time.process_time() - started)
    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}

    print(f"{args.input} ({width}x{height}) -> {size[0]}x{size[1]} JPEG q{QUALITY}, decoded at "
          f"{decoded.shape[1]}x{decoded.shape[0]}; median CPU ms of {args.rounds} interleaved rounds, one process")
    print("| step | CPU ms | PSNR dB before the encode | bytes |")
    print("|---|---:|---:|---:|")
    for name in steps:
        quality = f"{psnr(np.asarray(results[name]), reference):.2f}" if name.startswith("resample") else ""
        size_bytes = f"{len(results[name]):,}" if name.startswith("encode") or name.startswith("whole") else ""
        print(f"| {name} | {ms[name]:.2f} | {quality} | {size_bytes} |")
    ceiling = ms["decode (the ceiling)"]
    budget = ceiling / args.share
    plain, optimised = len(results["encode, standard Huffman"]), len(results["encode, optimised Huffman (the engine)"])
    print()
    print(f"engine: {100 * ceiling / ms['whole engine render']:.0f} % of the ceiling. "
          f"{100 * args.share:.0f} % of it allows {budget:.1f} ms per image: {budget - ceiling:.1f} ms after the decode,"
          f" of which the engine's encode alone takes {ms['encode, optimised Huffman (the engine)']:.1f} ms.")
    print(f"standard Huffman tables save {ms['encode, optimised Huffman (the engine)'] - ms['encode, standard Huffman']:.1f}"
          f" ms and make the file {100 * (plain / optimised - 1):.1f} % larger.")
    best = ceiling + min(ms[n] for n in steps if n.startswith("resample")) + ms["encode, standard Huffman"] \
        + ms["placeholders"]
    print(f"decode + the fastest resample + the standard encode + placeholders = {best:.1f} ms: "
          f"{100 * ceiling / best:.0f} % of the ceiling at best")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
