"""The benchmark still runs (tiny images, a fraction of a second): figures, not judgements."""
from __future__ import annotations

import pytest
from PIL import Image

bench = pytest.importorskip("bench.engine")


def test_benchmark_cases_run_on_small_inputs(tmp_path):
    inputs = bench.make_inputs(tmp_path, scale=0.05)
    with Image.open(inputs["12mp.jpg"]) as photo, Image.open(inputs["1mp-rgba.png"]) as graphic:
        assert photo.size == (200, 150) and graphic.mode == "RGBA"
    for case in ("12mp-jpeg-fit1024-jpeg85", "12mp-jpeg-variants-3x2", "1mp-png-rgba-fit512-png"):
        path = inputs[bench.CASES[case][0]]
        for impl in ("engine", "naive"):
            result = bench.run_worker(case, impl, path, seconds=0, min_runs=1)
            assert result["times"] and result["output_bytes"] > 0 and result["peak_rss_mb"] > 0


peers = pytest.importorskip("bench.peers")


def test_peers_benchmark_measures_each_local_implementation_on_small_inputs(tmp_path):
    """The in-process parts of ``bench peers`` (its workers, the ceiling decoders, PSNR) on
    tiny inputs; thumbor and the peers' own virtualenvs are installed by the benchmark
    itself, never by the test suite."""
    inputs = peers.make_inputs(tmp_path, scale=0.02)
    assert set(inputs) == {"12mp-baseline.jpg", "12mp-progressive.jpg", "4mp.jpg", "5k-render.png", "16mp.webp",
                           "14mp-cutout-rgba.png"}
    assert {name for name, _, _ in peers.CASES.values()} == set(inputs)
    with Image.open(inputs["12mp-progressive.jpg"]) as image:
        assert image.info.get("progressive") and image.size == (80, 60)
    impls = ["engine", "pillow-draft", "decode-pillow", "decode-simplejpeg"]
    pytest.importorskip("pyvips")
    impls += ["pyvips", "decode-vips"]
    reference = peers.Reference()
    for name in ("12mp-baseline.jpg", "5k-render.png", "16mp.webp"):
        for impl in impls:
            if impl == "decode-simplejpeg" and not name.endswith(".jpg"):
                continue
            out = tmp_path / f"{impl}-{name}.out"
            result = peers.run_worker(peers.sys.executable, impl, inputs[name], out, 0, 1, max(peers.os.sched_getaffinity(0)),
                                      peers.ROOT if impl == "engine" else None)
            assert result["times"] and result["times"][0] > 0 and result["peak_above_idle_mb"] >= 0
            if not impl.startswith("decode-"):
                with Image.open(out) as image:
                    assert image.format == "JPEG"
                assert 20 < reference.psnr(inputs[name], out.read_bytes()) < 80


def test_the_limit_encoders_and_pillow_write_each_case_output_format(tmp_path):
    """The encoders of the limit (and Pillow-with-draft) write the case's format, the
    alpha kept for WebP and flattened onto white for JPEG."""
    inputs = peers.make_inputs(tmp_path, scale=0.02)
    formats = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "jxl": "JXL"}
    reference = peers.Reference()
    for case, (name, fmt, quality) in peers.CASES.items():
        for impl in ("pillow-draft", *peers.ENCODERS[fmt]):
            out = tmp_path / f"{impl}-{fmt}-{name}.out"
            result = peers.run_worker(peers.sys.executable, impl, inputs[name], out, 0, 1,
                                      max(peers.os.sched_getaffinity(0)), None, fmt, quality)
            assert result["times"] and result["times"][0] > 0, (case, impl)
            with Image.open(out) as image:
                assert image.format == formats[fmt], (case, impl)
                assert ("A" in image.getbands()) == (case == "14mp-cutout-rgba.png>webp"), (case, impl)
            assert 20 < reference.psnr(inputs[name], out.read_bytes()) < 80, (case, impl)


def test_the_sharp_job_protocol_without_sharp_installed(tmp_path):
    """What bench/peers.py sends the sharp worker and reads back. The worker checks a job
    (``--parse``) without loading sharp, so this needs node but never node_modules: the
    suite does not install sharp."""
    import json
    import shutil
    import subprocess

    line = peers.sharp_job(tmp_path / "in.png", tmp_path / "out.avif", "avif", 60, 1.5, 2, tmp_path / "warmup.png")
    assert line.endswith("\n") and "\n" not in line[:-1]
    sent = json.loads(line)
    assert sent["fit"] == "inside" and (sent["width"], sent["height"]) == (1024, 1024) and sent["effort"] == 1

    # the answers: a measurement, a format this sharp cannot write, a refused job, garbage
    answer = peers.parse_sharp_answer(json.dumps({"impl": "sharp", "times": [0.02, 0.03], "output_bytes": 9,
                                                  "idle_rss_mb": 50.0, "peak_above_idle_mb": 12.5}))
    assert answer == {"impl": "sharp", "times": [0.02, 0.03], "idle_rss_mb": 50.0, "peak_above_idle_mb": 12.5}
    assert peers.parse_sharp_answer('{"unsupported": "no jxl"}') == {"unsupported": "no jxl"}
    with pytest.raises(RuntimeError, match="refused the job: .quality"):
        peers.parse_sharp_answer('{"error": "\\"quality\\" must be an integer 1-100, not 0"}')
    with pytest.raises(RuntimeError, match="not JSON"):
        peers.parse_sharp_answer("Segmentation fault")
    with pytest.raises(RuntimeError, match="no CPU times"):
        peers.parse_sharp_answer('{"impl": "sharp", "times": []}')

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    bad = json.dumps(dict(sent, quality=0)) + "\n" + json.dumps({k: v for k, v in sent.items() if k != "input"})
    done = subprocess.run(["node", str(peers.SHARP_WORKER), "--parse"], input=line + "\n" + bad + "\n",
                          capture_output=True, text=True, timeout=120, env={"PATH": peers.os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    parsed, wrong_quality, no_input = (json.loads(out) for out in done.stdout.splitlines())
    assert parsed == {"job": sent}
    with pytest.raises(RuntimeError, match="quality"):
        peers.parse_sharp_answer(json.dumps(wrong_quality))
    assert no_input == {"error": 'the job has no "input"'}


def test_the_auto_quality_benchmark_runs_on_a_small_input(tmp_path):
    autoquality = pytest.importorskip("bench.autoquality")
    inputs = bench.make_inputs(tmp_path, scale=0.05)
    data = autoquality.resized(inputs["2mp.jpg"], 64)
    row = autoquality.measure(data, "webp", repeats=1)
    assert row["fixed_ms"] > 0 and row["auto_ms"] > 0 and row["auto_bytes"] > 0
    assert row["auto_score"] >= autoquality.TARGET or row["auto_by"] != "target"


def test_the_simplejpeg_ceiling_decodes_for_the_size_the_resize_needs():
    """A landscape JPEG is fitted to a landscape box (the header gives height first: read
    the other way round, the ceiling decoded a 4 MP photo at 5/8 instead of 1/2)."""
    import io

    from PIL import Image

    from bench.peers_worker import fit, jpeg_target
    out = io.BytesIO()
    Image.new("RGB", (2304, 1728), (90, 120, 200)).save(out, "JPEG")
    assert jpeg_target(out.getvalue()) == fit(2304, 1728) == (1024, 768)


def test_the_jpeg_budget_benchmark_prints_each_step_and_the_budget(tmp_path, capsys):
    from bench import jpeg_budget
    assert jpeg_budget.main(["--rounds", "2", "--scale", "0.2", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for step in ("decode (the ceiling)", "resample: libvips Lanczos-3", "encode, standard Huffman", "placeholders",
                 "whole engine render"):
        assert f"| {step}" in out
    assert "% of the ceiling at best" in out


def test_the_png_alpha_cases_run_beside_pyvips_on_small_inputs(tmp_path, capsys):
    """The cut-out cases (RGBA, LA, palette, and the same pixels opaque) run with the
    engine, naive Pillow and libvips' thumbnail, and the alpha table reports their ratios."""
    pytest.importorskip("pyvips")
    inputs = bench.make_inputs(tmp_path, scale=0.05, names={bench.CASES[case][0] for case in bench.PYVIPS_CASES})
    modes = {}
    for name, path in inputs.items():
        with Image.open(path) as image:
            modes[name] = (image.mode, "transparency" in image.info, image.size)
    size = (225, 163)
    assert modes == {"14mp-cutout-rgba.png": ("RGBA", False, size), "14mp-cutout-opaque.png": ("RGB", False, size),
                     "14mp-cutout-la.png": ("LA", False, size), "14mp-cutout-palette.png": ("P", True, size)}
    results = {}
    for case in sorted(bench.PYVIPS_CASES):
        for impl in bench._impls(case):
            result = bench.run_worker(case, impl, inputs[bench.CASES[case][0]], seconds=0, min_runs=1)
            assert result["times"] and result["output_bytes"] > 0
            results[(case, impl)] = [result]
    rows = bench.alpha_table(sorted(bench.PYVIPS_CASES), results)
    assert {row["case"] for row in rows} == bench.PYVIPS_CASES
    assert all(row["engine_vs_opaque"] > 0 and row["engine_vs_pyvips"] > 0 for row in rows)
    assert "14mp-png-rgba-fit1024-jpeg85" in capsys.readouterr().out
