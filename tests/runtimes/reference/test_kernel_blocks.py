"""The block-by-block int8 kernels (conv, depthwise, requantization) against the literal ports of
``test_reference_kernels``: results must not depend on how the work is cut into blocks, int32
accumulators must wrap as the C++ does, and per-channel shifts of mixed signs must round as gemmlowp
and TFLite do.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.builders.literal_ports import (
    INT32_MAX,
    INT32_MIN,
    random_window_params,
    conv_loops,
    mbqm_double_gemmlowp,
    mbqm_single_tflite,
)

from edgeopt.runtimes.reference import conv
from edgeopt.runtimes.reference.arith import im2col
from edgeopt.runtimes.reference.conv import conv_per_channel
from edgeopt.runtimes.reference.depthwise_conv import depthwise_conv_per_channel
from edgeopt.runtimes.reference.arith.fixedpoint import QuantizedMultiplier, Requantizer, requantize
from edgeopt.runtimes.reference.arith.im2col import output_blocks

ROUNDINGS = ("single", "double")


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few elements, so that small tensors take every path: several matmuls per chunk,
    several requantization blocks per matmul, row ranges of one sample and groups of samples."""
    monkeypatch.setattr(im2col, "BLOCK_ELEMENTS", 24)
    monkeypatch.setattr(conv, "BLOCK_ELEMENTS", 10)
    monkeypatch.setattr(conv, "MATMUL_ELEMENTS", 30)


def _case(rng: np.random.Generator, depthwise: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    while True:
        h, wd, ci = (int(v) for v in rng.integers(3, 10, 3))
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        p = random_window_params(rng, h, wd, k, dilated=True)
        if p["output_height"] and p["output_width"]:
            break
    mult = int(rng.integers(1, 3))
    co = ci * mult if depthwise else int(rng.integers(1, 6))
    p |= {
        "input_offset": int(rng.integers(-127, 129)), "output_offset": int(rng.integers(-128, 128)),
        "output_multiplier": rng.integers(2**30, 2**31, co), "output_shift": rng.integers(-12, 3, co),
        "activation_min": int(rng.integers(-128, -50)), "activation_max": int(rng.integers(50, 128)),
        "depth_multiplier": mult,
    }
    x = rng.integers(-128, 128, (3, h, wd, ci)).astype(np.int8)
    w = rng.integers(-127, 128, (1, *k, co) if depthwise else (co, *k, ci)).astype(np.int8)
    bias = rng.integers(-3000, 3000, co).astype(np.int32)
    return x, w, bias, p


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("depthwise", [False, True])
def test_convolutions_in_tiny_blocks_match_literal_loops(depthwise: bool) -> None:
    rng = np.random.default_rng(11)
    kernel = depthwise_conv_per_channel if depthwise else conv_per_channel
    for trial in range(8):
        x, w, bias, p = _case(rng, depthwise)
        for rounding in ROUNDINGS:
            expected = conv_loops(x, w, bias, p, rounding, depthwise)
            np.testing.assert_array_equal(kernel(x, w, bias, p, rounding), expected, err_msg=f"trial {trial}")


@pytest.mark.parametrize("depthwise", [False, True])
def test_int32_accumulator_wraps_like_the_cpp(depthwise: bool) -> None:
    # Biases at the int32 limits (as saturated biases of dead channels are) push the sums past them.
    rng = np.random.default_rng(12)
    x, w, _, p = _case(rng, depthwise)
    co = w.shape[3] if depthwise else w.shape[0]
    bias = np.resize(np.array([INT32_MIN, INT32_MAX, INT32_MIN + 5, INT32_MAX - 5], np.int32), co)
    p |= {"output_multiplier": np.full(co, 2**30), "output_shift": np.full(co, -24)}
    for rounding in ROUNDINGS:
        expected = conv_loops(x, w, bias, p, rounding, depthwise)
        np.testing.assert_array_equal(
            (depthwise_conv_per_channel if depthwise else conv_per_channel)(x, w, bias, p, rounding), expected
        )


def test_conv_sums_beyond_int32_wrap() -> None:
    # K = 65794 products of -32640 sum to -2**31 - 32512: the int32 accumulator wraps to 2**31 - 32512.
    depth = 65794
    x = np.full((1, 1, 1, depth), 127, np.int8)
    w = np.full((1, 1, 1, depth), -128, np.int8)
    p = random_window_params(np.random.default_rng(0), 1, 1, (1, 1), dilated=False) | {
        "input_offset": 128, "output_offset": 0, "output_multiplier": np.array([2**30]),
        "output_shift": np.array([-24]), "activation_min": -128, "activation_max": 127,
    }
    for rounding in ROUNDINGS:
        y = conv_per_channel(x, w, np.zeros(1, np.int32), p, rounding)
        # (2**31 - 32512) / 2**25 = 63.999..., rounded to 64.
        assert y.ravel().tolist() == [64]


def test_quantized_multiplier_with_per_channel_shifts_of_both_signs_matches_ports() -> None:
    rng = np.random.default_rng(13)
    x = np.concatenate([
        rng.integers(INT32_MIN, INT32_MAX, (40, 1), endpoint=True),
        rng.integers(-(2**12), 2**12, (40, 1)),
        [[INT32_MIN], [INT32_MAX], [0], [-1], [1]],
    ])
    shift = np.array([-31, -5, -1, 0, 0, 1, 4, -12, 0, 30])  # zero right shifts beside non-zero ones
    m = rng.integers(0, 2**31, shift.size)
    for rounding, port in (("single", mbqm_single_tflite), ("double", mbqm_double_gemmlowp)):
        expected = [[port(int(v), int(mc), int(sc)) for mc, sc in zip(m, shift, strict=True)] for v in x[:, 0]]
        # Channels last, and channels first (as broadcasting puts them on either axis).
        assert QuantizedMultiplier(m, shift, rounding)(x).tolist() == expected, rounding
        got = QuantizedMultiplier(m[:, None], shift[:, None], rounding)(x.T.astype(np.int32))
        assert got.T.tolist() == expected, rounding


@pytest.mark.parametrize(("offset", "low", "high"), [(-128, -128, 127), (127, -128, 127), (5, -20, 90), (0, 0, 0)])
def test_requantizer_offset_after_the_clamp_equals_the_formula(offset: int, low: int, high: int) -> None:
    rng = np.random.default_rng(14)
    acc = rng.integers(-(2**20), 2**20, (50, 6)).astype(np.int32)
    m, s = rng.integers(2**30, 2**31, 6), rng.integers(-14, -6, 6)
    for rounding in ROUNDINGS:
        scaled = np.array([[mbqm_single_tflite(int(a), int(mc), int(sc)) if rounding == "single"
                            else mbqm_double_gemmlowp(int(a), int(mc), int(sc))
                            for a, mc, sc in zip(row, m, s, strict=True)] for row in acc])
        expected = np.clip(scaled + offset, low, high)
        out, work = np.empty(acc.shape, np.int8), np.empty(acc.shape, np.int64)
        got = Requantizer(m, s, offset, low, high, rounding)(acc, out=out, work=work)
        assert got is out
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(requantize(acc, m, s, offset, low, high, rounding), expected)


@pytest.mark.parametrize(
    ("n", "height", "per_row", "budget"), [(5, 4, 3, 24), (3, 7, 5, 12), (2, 3, 50, 10), (4, 1, 1, 1)]
)
def test_output_blocks_cover_each_row_once_in_contiguous_blocks(
    n: int, height: int, per_row: int, budget: int
) -> None:
    seen = np.zeros((n, height), int)
    y = np.empty((n, height, per_row))
    for samples, rows in output_blocks(n, height, per_row, budget):
        seen[samples, rows] += 1
        assert y[samples, rows].flags.c_contiguous
    assert (seen == 1).all()
