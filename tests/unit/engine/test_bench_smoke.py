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


def test_the_auto_quality_benchmark_runs_on_a_small_input(tmp_path):
    autoquality = pytest.importorskip("bench.autoquality")
    inputs = bench.make_inputs(tmp_path, scale=0.05)
    data = autoquality.resized(inputs["2mp.jpg"], 64)
    row = autoquality.measure(data, "webp", repeats=1)
    assert row["fixed_ms"] > 0 and row["auto_ms"] > 0 and row["auto_bytes"] > 0
    assert row["auto_score"] >= autoquality.TARGET or row["auto_by"] != "target"
