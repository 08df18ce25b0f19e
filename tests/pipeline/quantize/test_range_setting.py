"""Range setting: the streaming histogram is exact, and percentile/MSE/SQNR ranges behave as designed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import DataError
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.calibrate import Histogram
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.range_setting import percentile_range, search_range, set_ranges
from tests.builders.onnx_models import conv_bn_relu6


def _hist(*chunks: np.ndarray, bins: int = 2048) -> Histogram:
    h = Histogram(bins)
    for c in chunks:
        h.add(c)
    return h


def test_histogram_merges_exactly_as_the_range_grows():
    rng = np.random.default_rng(0)
    chunks = [np.zeros(7)] + [rng.normal(size=500) * (k + 1) ** 2 for k in range(15)]
    h = _hist(*chunks, bins=64)
    values = np.concatenate(chunks)
    assert len(h.counts) <= 64 and h.total == values.size and h.zeros == 7
    want = np.bincount(np.floor(values / h.width).astype(np.int64) - h.first, minlength=len(h.counts))
    np.testing.assert_array_equal(h.counts, want)
    assert (h.min, h.max) == (values.min(), values.max())


def test_percentile_clips_each_tail():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200_000)
    r = percentile_range(_hist(x), 99.0)
    lo, hi = np.percentile(x, [1.0, 99.0])
    bin_width = (x.max() - x.min()) / 1024
    assert abs(r.min - lo) <= 2 * bin_width and abs(r.max - hi) <= 2 * bin_width


def test_mse_minimises_the_measured_error_and_sqnr_clips_less():
    rng = np.random.default_rng(2)
    x = np.abs(rng.laplace(size=200_000))  # a heavy-tailed ReLU output
    h = _hist(x)
    mse, sqnr = search_range(h, gamma=1.0), search_range(h, gamma=3.0)
    assert mse.min == 0.0 and mse.max < 0.9 * x.max()
    assert mse.max <= sqnr.max <= x.max()

    def noise(hi: float) -> float:
        s = hi / 255
        return float(np.mean((np.clip(np.round(x / s), 0, 255) * s - x) ** 2))

    # The histogram's model of the error agrees with the error measured on the values themselves.
    measured = {hi: noise(hi) for hi in np.linspace(0.3, 1.0, 15) * x.max()}
    assert noise(mse.max) <= 1.02 * min(measured.values())
    assert noise(mse.max) < noise(x.max())


def test_set_ranges_methods(tmp_path: Path):
    rng = np.random.default_rng(3)
    path = tmp_path / "m.onnx"
    path.write_bytes(conv_bn_relu6(rng).SerializeToString())
    graph = optimize(load(str(path)).graph)
    x = rng.normal(size=(64, 3, 8, 8)).astype(np.float32)
    plain, hist = calibrate(graph, x), calibrate(graph, x, histograms=True)
    assert all(s.histogram is None for s in plain.values())
    assert all((plain[k].min, plain[k].max) == (s.min, s.max) for k, s in hist.items())
    assert set_ranges(plain, "minmax") == plain
    for method in ("percentile", "mse", "sqnr"):
        ranges = set_ranges(hist, method, keep=frozenset({"y"}))
        assert ranges["y"] == plain["y"]
        for name, r in ranges.items():
            assert min(plain[name].min, 0.0) <= r.min <= r.max <= plain[name].max
        qgraph = quantize_minmax(graph, ranges)
        # The TFLite rules still hold on top: Relu6's output covers 0, the shared ops keep their input's encoding.
        assert qgraph.encodings["act"].zero_point[0] == -128
    with pytest.raises(DataError, match="unknown range method"):
        set_ranges(hist, "entropy")
