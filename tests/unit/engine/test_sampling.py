"""An estimate's sample never decodes the whole of a large image (issue 24: a 7000x7000 PNG
decoded at full resolution is 147 MB; three requests of three took the image-handler to 1.3 GB)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[3]

MEASURE = """
import json, resource, sys
from imageflow.engine import Limits, probe
from imageflow.engine.sampling import Sample, measure
data = open(sys.argv[1], "rb").read()
info = probe(data, Limits())
Image = __import__("PIL.Image").Image
Image.new("RGB", (64, 64)).save(__import__("io").BytesIO(), "WEBP")   # the codecs loaded before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = measure(Sample("x", info.format, info.width, info.height, json.loads(sys.argv[2])), data, Limits())
print(json.dumps({"grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "e": model.e, "bytes_per_pixel": model.bytes_per_pixel}))
"""


def _big(fmt: str) -> bytes:
    image = Image.new("RGB", (7000, 7000), (230, 230, 235))
    draw = ImageDraw.Draw(image)
    for y in range(0, 7000, 140):
        draw.line((0, y, 7000, y), fill=(40, 90, 160), width=4)
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_7000x7000_sample_is_measured_without_decoding_it_whole(tmp_path, fmt):
    """Peak memory of a fresh process measuring the sample grows far less than the 147 MB the
    full decode alone would take (measured in a subprocess: its peak RSS is its own)."""
    path = tmp_path / f"big.{fmt.lower()}"
    path.write_bytes(_big(fmt))
    ops = [{"op": "format", "format": "webp", "quality": 80, "lossless": False, "progressive": False,
            "background": "#ffffff"}]
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), json.dumps(ops)], cwd=REPO, check=True,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["grew_mb"] < 100, figures
    assert figures["e"] == 1.0 and figures["bytes_per_pixel"] > 0
