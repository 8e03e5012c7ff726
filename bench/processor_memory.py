"""Peak memory of one image-processor task at the worst the limits allow, to size the pods.

    .venv/bin/python -m bench.processor_memory                  # writes bench/processor_memory.json
    .venv/bin/python -m bench.processor_memory --pixels 2000000 --json /tmp/x.json   (a quick look)

The input is a camera-like JPEG of MAX_IMAGE_PIXELS (k8s/base/config.env; 3:2, quality 85,
under MAX_UPLOAD_BYTES). Each case runs in a fresh process that first imports what the
processor imports (its app, the engine, the GCP client libraries), records that resident
size, renders the case with the engine exactly as the processor does (services.image_processor.processing's
in-process path: every output is held until it is written), and reports its peak
(ru_maxrss). Per-task cost = peak - idle. The cases are the heaviest operation lists the
schema accepts for one image: 8 near-full-width variants (every scaled copy is kept until
encoded) and full-size filters re-encoded (an operation that would grow the image past
MAX_IMAGE_PIXELS, such as an expanding rotation, is refused before it runs).
tests/deploy/test_k8s_manifests.py checks the processor's memory limit against these figures
for PROCESSOR_CONCURRENCY tasks at once, and that they were measured at today's limits.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):          # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench/processor_memory.json"


def config_value(name: str) -> int:
    for line in (ROOT / "k8s/base/config.env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return int(line.split("=", 1)[1])
    raise KeyError(name)


def cases(width: int, max_variants: int) -> dict[str, list[dict]]:
    return {
        "variants": [{"op": "variants", "widths": [width - 1 - i for i in range(max_variants)],
                      "formats": ["jpeg"]}],
        "filters": [{"op": "blur", "radius": 4}, {"op": "sharpen"}, {"op": "format", "format": "jpeg", "quality": 95}],
    }


def make_input(pixels: int, path: Path, max_bytes: int) -> tuple[int, int]:
    """A 3:2 photo-like JPEG (smooth shapes plus sensor noise) of ``pixels`` pixels."""
    from PIL import Image, ImageFilter

    width = int(math.sqrt(pixels * 3 / 2))
    height = pixels // width
    small = Image.frombytes("RGB", (width // 64, height // 64),
                            random.Random(1).randbytes((width // 64) * (height // 64) * 3))
    image = small.resize((width, height), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((width, height), 12).convert("RGB")
    image = Image.blend(image, noise, 0.08)
    for quality in (85, 75, 60):
        image.save(path, "JPEG", quality=quality)
        if path.stat().st_size <= max_bytes:
            break
    return width, height


CHILD = r'''
import json, resource, sys
import services.image_processor.app  # what the processor imports, GCP clients included
import google.cloud.storage, google.cloud.pubsub_v1, google.cloud.firestore  # noqa: F401
from imageflow.engine.limits import Limits
from imageflow.engine.render import render
from imageflow.settings import Settings

def rss_mib():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1024

idle = rss_mib()
data = open(sys.argv[1], "rb").read()
limits = Limits.from_settings(Settings.from_env({"MAX_IMAGE_PIXELS": sys.argv[3]}))
outputs = render(data, json.loads(sys.argv[2]), limits)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"idle_mib": round(idle, 1), "peak_mib": round(peak, 1), "outputs": len(outputs),
                  "output_mib": round(sum(len(o.data) for o in outputs) / 2**20, 1)}))
'''


def main(argv: list[str] | None = None) -> int:
    from imageflow.engine import schema

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=config_value("MAX_IMAGE_PIXELS"))
    parser.add_argument("--json", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    max_variants = schema.Variants.model_fields["widths"].metadata[0].max_length
    max_upload = config_value("MAX_UPLOAD_BYTES")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "input.jpg"
        width, height = make_input(args.pixels, source, max_upload)
        results = {}
        for name, operations in cases(width, max_variants).items():
            proc = subprocess.run([sys.executable, "-c", CHILD, str(source), json.dumps(operations), str(args.pixels)],
                                  capture_output=True, text=True, cwd=ROOT, check=True)
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            measured["task_mib"] = round(measured["peak_mib"] - measured["idle_mib"], 1)
            results[name] = {"operations": operations, **measured}
            print(f"{name:10s} idle {measured['idle_mib']:7.1f} MiB  peak {measured['peak_mib']:7.1f} MiB  "
                  f"task {measured['task_mib']:7.1f} MiB  ({measured['outputs']} outputs, "
                  f"{measured['output_mib']} MiB encoded)", flush=True)
        report = {
            "command": "python -m bench.processor_memory" + (f" --pixels {args.pixels}" if args.pixels != config_value("MAX_IMAGE_PIXELS") else ""),
            "machine": f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}",
            "input": {"width": width, "height": height, "pixels": width * height, "bytes": source.stat().st_size},
            "limits": {"MAX_IMAGE_PIXELS": args.pixels, "MAX_UPLOAD_BYTES": max_upload,
                       "max_variant_widths": max_variants},
            "idle_mib": max(r["idle_mib"] for r in results.values()),
            "worst_task_mib": max(r["task_mib"] for r in results.values()),
            "worst_case": max(results, key=lambda n: results[n]["task_mib"]),
            "cases": results,
        }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst case {report['worst_case']}: {report['worst_task_mib']} MiB per task; idle {report['idle_mib']} MiB "
          f"-> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
