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
    assert set(inputs) == {"12mp-baseline.jpg", "12mp-progressive.jpg", "4mp.jpg", "5k-render.png", "16mp.webp"}
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
