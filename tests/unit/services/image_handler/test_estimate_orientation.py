"""The estimate (``"estimate": true``) sees every input upright, turned exactly once: the
sizes it answers and the downscaled samples it renders to fit its model."""
from __future__ import annotations

import pytest

from imageflow.engine import sampling
from imageflow.settings import Settings
from services.image_handler import estimate as estimate_module
from tests.unit.engine.orientation_samples import LOSSY, WRITERS, assert_upright, sample, stored_pixels, upright
from tests.unit.fakes import FakeJobStore


class Upload:
    def __init__(self, filename, data):
        self.filename, self._data = filename, data

    def read(self, limit):
        return self._data[:limit]

    def rewind(self):
        pass


class InProcessEstimator:
    """The estimate's render workers, in this process: what they compute, without the pool."""

    def measure(self, sample, data, limits):
        return sampling.measure(sample, data, limits)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("kind", WRITERS)
def test_estimate_sees_the_input_upright(kind, orientation, monkeypatch):
    # the stored picture is 192x96: a sample limit below that makes the estimate downscale it
    monkeypatch.setattr(sampling, "SAMPLE_PIXELS", 4000)
    samples = []
    decode_scaled = sampling.decode_scaled
    monkeypatch.setattr(sampling, "decode_scaled",
                        lambda *args, **kwargs: samples.append(decode_scaled(*args, **kwargs)) or samples[-1])
    answer = estimate_module.estimate(Settings(), FakeJobStore(), [Upload(f"photo.{kind}", sample(kind, orientation))],
                                      [{"op": "resize", "width": 40}], estimator=InProcessEstimator())
    width, height = upright(stored_pixels(), orientation).shape[1::-1]
    assert answer["accepted"], answer["reasons"]
    row = answer["images"][0]
    assert (row["width"], row["height"]) == (width, height)
    assert answer["samples"][0].get("exponent") is not None, answer["samples"]
    assert len(samples) >= 2
    for image in samples:        # each sample an upright picture of the input
        assert_upright(image, orientation, 40 if kind in LOSSY else 2, f"{kind} {orientation} sample {image.size}")
