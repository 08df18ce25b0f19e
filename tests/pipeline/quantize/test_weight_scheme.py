"""The report's statement of the device's weight scheme against the shipped one, and the weight-range
search by MSE for per-tensor weights."""
from __future__ import annotations

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.ir import QParams
from edgeopt.pipeline.quantize.weight_range import mse_weight_scale
from edgeopt.pipeline.quantize.weight_scheme import asymmetric_sqnr_db, symmetric_sqnr_db, weight_scheme
from edgeopt.pipeline.target import Target
from tests.builders.per_tensor import collapsing_graph, images


def test_one_sided_weights_lose_about_6_db_on_the_symmetric_grid() -> None:
    w = np.random.default_rng(0).random(4096)  # all positive: the symmetric grid wastes its negative half
    assert 5.0 < asymmetric_sqnr_db(w) - symmetric_sqnr_db(w) < 7.0
    balanced = np.random.default_rng(1).uniform(-1, 1, 4096)
    assert abs(asymmetric_sqnr_db(balanced) - symmetric_sqnr_db(balanced)) < 0.5


def test_the_dsp_profile_states_its_weight_scheme_and_others_do_not() -> None:
    graph = collapsing_graph()
    for name, expected in (("snapdragon-845-hexagon-dsp", True), ("google-coral-edgetpu", False),
                           ("arm-cortex-a78-xnnpack", False)):
        target = Target(load_profile(name))
        entry = weight_scheme(target.quantize(graph, target.ranges(graph, images(0, 8))), target.rules)
        assert (entry is not None) == expected, name
    assert entry is None
    dsp = Target(load_profile("snapdragon-845-hexagon-dsp"))
    entry = weight_scheme(dsp.quantize(graph, dsp.ranges(graph, images(0, 8))), dsp.rules)
    assert entry["layers"] == 4 and entry["accuracy_of"] == "shipped"
    assert entry["sqnr_db"]["device_median"] >= entry["sqnr_db"]["shipped_median"] - 0.5


def test_mse_weight_scale_clips_an_outlier_and_lowers_the_error() -> None:
    w = np.concatenate([np.random.default_rng(2).normal(0, 0.1, 1000), [5.0]]).astype(np.float32)
    minmax = QParams(np.float32(5.0 / 127), 0)
    mse = mse_weight_scale(w, minmax, -127, 127)
    assert mse.scale[0] < minmax.scale[0]
    err = lambda q: float(np.sum((q.dequantize(q.quantize(w)) - w) ** 2))  # noqa: E731
    assert err(mse) < err(minmax)
    per_channel = QParams(np.full(2, 0.1, np.float32), np.zeros(2), axis=0)
    assert mse_weight_scale(np.ones((2, 3)), per_channel, -127, 127) is per_channel
