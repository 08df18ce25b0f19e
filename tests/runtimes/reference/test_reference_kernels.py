"""Golden integer cases for the reference executor's kernels, worked out by hand in the comments.

Beside the hand cases, the vectorised kernels are checked against literal ports of TFLite's loops
(``reference/integer_ops/*.h``) and of gemmlowp's fixed-point helpers, written here as plainly as the
C++ reads, on small random tensors.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeopt.errors import DataError, InternalError, UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.reference.add import add, add_func
from edgeopt.runtimes.reference.conv import conv_per_channel
from edgeopt.runtimes.reference.depthwise_conv import depthwise_conv_per_channel
from edgeopt.runtimes.reference.executor import run_intermediates, run_program
from edgeopt.runtimes.reference.arith.fixedpoint import (
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_smaller_than_one_exp,
    quantize_multiplier,
    requantize,
    round_half_away_from_zero,
)
from edgeopt.runtimes.reference.fully_connected import fully_connected_per_channel
from edgeopt.runtimes.reference.pad import pad
from edgeopt.runtimes.reference.arith.padding import compute_padding_height_width
from edgeopt.runtimes.reference.pooling import average_pool
from edgeopt.runtimes.reference.prepare import (
    calculate_activation_range_quantized,
    needs_prepare,
    prepare_program,
)
from edgeopt.runtimes.reference.movement import axis_indices, reshape, strided_slice, transpose
from tests.builders.literal_ports import INT32_MAX, INT32_MIN, conv_loops, mbqm_double_gemmlowp, mbqm_single_tflite, pool_loops, random_window_params


def i8(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int8)


# ---------------------------------------------------------------------------------------------------
# QuantizeMultiplier


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.0, (0, 0)),
        (0.5, (2**30, 0)),  # frexp(0.5) = (0.5, 0)
        (1.0, (2**30, 1)),  # frexp(1.0) = (0.5, 1)
        (0.75, (3 * 2**29, 0)),
        (1.5, (3 * 2**29, 1)),
        (0.5 + 2**-32, (2**30 + 1, 0)),  # q * 2**31 = 2**30 + 0.5: the tie rounds away from zero
        (1 - 2**-40, (2**30, 1)),  # q * 2**31 rounds up to 2**31: halved, shift + 1
        (2**-32, (2**30, -31)),  # the smallest shift kept
        (2**-33, (0, 0)),  # frexp gives shift -32 < -31: flushed to zero
        (1e-12, (0, 0)),
        (-0.5, (-(2**30), 0)),
    ],
)
def test_quantize_multiplier(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected
    assert quantize_multiplier(real, "double") == expected


def test_quantize_multiplier_single_rounding_saturates_shifts_above_30() -> None:
    # frexp(2**31) = (0.5, 32): double rounding keeps it, single rounding saturates to (2**31 - 1, 30).
    assert quantize_multiplier(2.0**31, "double") == (2**30, 32)
    assert quantize_multiplier(2.0**31, "single") == (INT32_MAX, 30)
    # frexp(2**30) = (0.5, 31) > 30: saturated as well.
    assert quantize_multiplier(2.0**30, "single") == (INT32_MAX, 30)


def test_quantize_multiplier_reconstructs_the_real_value() -> None:
    rng = np.random.default_rng(0)
    for real in rng.uniform(1e-6, 4.0, 200):
        m, shift = quantize_multiplier(float(real))
        assert 2**30 <= m < 2**31
        assert abs(m * 2.0 ** (shift - 31) - real) <= real * 2**-31


# ---------------------------------------------------------------------------------------------------
# MultiplyByQuantizedMultiplier


# multiplier 2**30 with shift -1 is M = 1/4. single: floor(x/4 + 1/2) (ties up). double: r = floor(x/2 +
# 1/2) (ties up), then r/2 rounded half away from zero. x = 1: 0.25 -> single 0, double r = 1 -> 0.5 -> 1.
# x = -6: -1.5 -> single -1, double r = -3 -> -1.5 -> -2. x = -2: -0.5 -> single 0, double r = -1 -> -1.
QUARTER_X = [-7, -6, -5, -2, -1, 1, 2, 3, 6]
QUARTER_SINGLE = [-2, -1, -1, 0, 0, 0, 1, 1, 2]
QUARTER_DOUBLE = [-2, -2, -1, -1, 0, 1, 1, 1, 2]


@pytest.mark.parametrize(("rounding", "expected"), [("single", QUARTER_SINGLE), ("double", QUARTER_DOUBLE)])
def test_multiply_by_quantized_multiplier_ties(rounding: str, expected: list[int]) -> None:
    got = multiply_by_quantized_multiplier(np.array(QUARTER_X), 2**30, -1, rounding)
    assert got.tolist() == expected


def test_multiply_by_quantized_multiplier_half_at_shift_zero_rounds_up_in_both_modes() -> None:
    # M = 1/2, shift 0: gemmlowp's doubling high mul also rounds ties up (-1.5 -> -1, 1.5 -> 2).
    for rounding in ("single", "double"):
        got = multiply_by_quantized_multiplier(np.array([-3, -1, 1, 3]), 2**30, 0, rounding)
        assert got.tolist() == [-1, 0, 1, 2]


def test_multiply_by_quantized_multiplier_extremes() -> None:
    # x = INT32_MIN, M = (2**31 - 1) / 2**31: exactly -(2**31 - 1) in both modes.
    for rounding in ("single", "double"):
        got = multiply_by_quantized_multiplier(np.array([INT32_MIN]), INT32_MAX, 0, rounding)
        assert got[0] == -INT32_MAX
    # M = 2 (2**30, shift 2) on 2**30: single computes 2**31 in int64 and narrows it to INT32_MIN;
    # double shifts x left first, 2**32 wraps to 0 in int32, and 0 * M = 0.
    assert multiply_by_quantized_multiplier(np.array([2**30]), 2**30, 2, "single")[0] == INT32_MIN
    assert multiply_by_quantized_multiplier(np.array([2**30]), 2**30, 2, "double")[0] == 0
    # A zero multiplier gives zero.
    assert multiply_by_quantized_multiplier(np.array([12345]), 0, 0, "double")[0] == 0


def test_multiply_by_quantized_multiplier_matches_literal_ports() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.integers(INT32_MIN, INT32_MAX, 300, endpoint=True),
        rng.integers(-(2**16), 2**16, 300),
        [INT32_MIN, INT32_MAX, 0, -1, 1],
    ])
    for shift in [-31, -20, -9, -1, 0, 1, 3, 7]:
        m = rng.integers(0, 2**31, x.size)
        for rounding, port in (("single", mbqm_single_tflite), ("double", mbqm_double_gemmlowp)):
            got = multiply_by_quantized_multiplier(x, m, shift, rounding)
            expected = [port(int(a), int(b), shift) for a, b in zip(x, m, strict=True)]
            assert got.tolist() == expected, (rounding, shift)


def test_smaller_than_one_exp_rejects_positive_shifts() -> None:
    assert multiply_by_quantized_multiplier_smaller_than_one_exp(np.array([6]), 2**30, -1, "double")[0] == 2
    with pytest.raises(InternalError):
        multiply_by_quantized_multiplier_smaller_than_one_exp(np.array([6]), 2**30, 1, "double")


def test_round_half_away_from_zero() -> None:
    v = np.array([-2.5, -1.5, -0.5, -0.49999999999999994, 0.0, 0.49999999999999994, 0.5, 1.5, 2.5, 2.4])
    assert round_half_away_from_zero(v).tolist() == [-3, -2, -1, 0, 0, 0, 1, 2, 3, 2]


# ---------------------------------------------------------------------------------------------------
# Prepare


def test_calculate_activation_range_quantized() -> None:
    op = QOp("CONV_2D", (), (), source="n")
    # RELU6 at scale 0.05, zp -10: float32(6) / float32(0.05) rounds to 120 -> [-10, 110].
    assert calculate_activation_range_quantized("RELU6", QParams(0.05, -10), op) == (-10, 110)
    # RELU6 at scale 4, zp 0: 6 / 4 = 1.5 rounds away from zero to 2.
    assert calculate_activation_range_quantized("RELU6", QParams(4.0, 0), op) == (0, 2)
    # RELU_N1_TO_1 at scale 2, zp 3: -0.5 -> -1 and 0.5 -> 1, so [2, 4].
    assert calculate_activation_range_quantized("RELU_N1_TO_1", QParams(2.0, 3), op) == (2, 4)
    # Bounds beyond int8 are clamped; NONE is the full range; RELU keeps qmax.
    assert calculate_activation_range_quantized("RELU6", QParams(0.01, 0), op) == (0, 127)
    assert calculate_activation_range_quantized("NONE", QParams(0.01, 7), op) == (-128, 127)
    assert calculate_activation_range_quantized("RELU", QParams(0.01, -130 + 5), op) == (-125, 127)
    with pytest.raises(UnsupportedOpError):
        calculate_activation_range_quantized("TANH", QParams(0.01, 0), op)


@pytest.mark.parametrize(
    ("padding", "size", "kernel", "stride", "dilation", "expected"),
    [
        ("SAME", 5, 3, 2, 1, (3, 1)),  # total (3 - 1) * 2 + 3 - 5 = 2: one before
        ("SAME", 6, 3, 2, 1, (3, 0)),  # total 1: the odd element goes after
        ("SAME", 4, 1, 1, 1, (4, 0)),
        ("SAME", 9, 3, 1, 2, (9, 2)),  # effective filter 5: total 4
        ("VALID", 10, 3, 2, 1, (4, 0)),
        ("VALID", 7, 3, 1, 3, (1, 0)),  # effective filter 7
    ],
)
def test_compute_padding_height_width(
    padding: str, size: int, kernel: int, stride: int, dilation: int, expected: tuple[int, int]
) -> None:
    win = compute_padding_height_width(padding, size, size, kernel, kernel, stride, stride, dilation,
                                       dilation)
    assert (win.output_height, win.pad_height) == expected
    assert (win.output_width, win.pad_width) == expected


def _conv_program() -> QProgram:
    # Effective scales 0.5 * [0.25, 0.375] / 0.125 = [1.0, 1.5] -> (2**30, 1) and (3 * 2**29, 1).
    w = QTensor("w", (2, 3, 3, 1), "int8", QParams([0.25, 0.375], [0, 0], axis=0), np.ones((2, 3, 3, 1)))
    b = QTensor("b", (2,), "int32", QParams([0.125, 0.1875], [0, 0], "int32", axis=0), np.zeros(2))
    tensors = {
        "x": QTensor("x", (1, 5, 5, 1), "int8", QParams(0.5, 3)),
        "w": w,
        "b": b,
        "y": QTensor("y", (1, 3, 3, 2), "int8", QParams(0.125, -4)),
    }
    options = {"padding": "SAME", "stride_h": 2, "stride_w": 2, "fused_activation_function": "RELU"}
    op = QOp("CONV_2D", ("x", "w", "b"), ("y",), options, source="conv")
    return QProgram("conv", tensors, [op], ("x",), ("y",))


def test_prepare_conv() -> None:
    program = _conv_program()
    assert needs_prepare(program)
    p = prepare_program(program).ops[0].params
    assert not needs_prepare(prepare_program(program))
    assert program.ops[0].params == {}  # the input program is left alone
    assert p["output_multiplier"].tolist() == [2**30, 3 * 2**29]
    assert p["output_shift"].tolist() == [1, 1]
    assert (p["input_offset"], p["output_offset"]) == (-3, -4)
    assert (p["pad_height"], p["pad_width"], p["output_height"], p["output_width"]) == (1, 1, 3, 3)
    assert (p["activation_min"], p["activation_max"]) == (-4, 127)
    assert (p["stride_height"], p["dilation_height_factor"]) == (2, 1)


def test_prepare_rejects_what_litert_rejects() -> None:
    program = _conv_program()
    unknown = program.replace(ops=(QOp("SOFTMAX", ("x",), ("y",), source="sm"),))
    with pytest.raises(UnsupportedOpError, match="SOFTMAX"):
        prepare_program(unknown)
    w = program.tensor("w")
    asymmetric = QTensor("w", w.shape, "int8", QParams([0.25, 0.375], [0, 1], axis=0), w.data)
    with pytest.raises(UnsupportedOpError, match="zero point"):
        prepare_program(program.replace(tensors={**program.tensors, "w": asymmetric}))


def _add_program(activation: str = "NONE") -> QProgram:
    tensors = {
        "a": QTensor("a", (1, 2, 2, 1), "int8", QParams(2.0**-4, 3)),
        "b": QTensor("b", (1, 2, 2, 1), "int8", QParams(2.0**-5, -7)),
        "y": QTensor("y", (1, 2, 2, 1), "int8", QParams(2.0**-3, 1)),
    }
    op = QOp("ADD", ("a", "b"), ("y",), {"fused_activation_function": activation}, source="add")
    return QProgram("add", tensors, [op], ("a", "b"), ("y",))


def test_prepare_add() -> None:
    # twice_max = 2 * 2**-4 = 2**-3; real1 = 1/2 -> (2**30, 0); real2 = 1/4 -> (2**30, -1);
    # real_out = 2**-3 / (2**20 * 2**-3) = 2**-20 -> (2**30, -19).
    p = prepare_program(_add_program()).ops[0].params
    assert (p["input1_multiplier"], p["input1_shift"]) == (2**30, 0)
    assert (p["input2_multiplier"], p["input2_shift"]) == (2**30, -1)
    assert (p["output_multiplier"], p["output_shift"]) == (2**30, -19)
    assert (p["input1_offset"], p["input2_offset"], p["output_offset"], p["left_shift"]) == (-3, 7, 1, 20)


def test_prepare_fully_connected_keeps_double_effective_scales() -> None:
    s_in, s_w, s_out = np.float32(0.1), np.float32([0.2, 0.3]), np.float32(0.7)
    tensors = {
        "x": QTensor("x", (1, 3), "int8", QParams(s_in, 0)),
        "w": QTensor("w", (2, 3), "int8", QParams(s_w, [0, 0], axis=0), np.ones((2, 3))),
        "y": QTensor("y", (1, 2), "int8", QParams(s_out, 5)),
    }
    op = QOp("FULLY_CONNECTED", ("x", "w"), ("y",), source="fc")
    p = prepare_program(QProgram("fc", tensors, [op], ("x",), ("y",))).ops[0].params
    expected = [float(np.float64(s_in) * np.float64(s) / np.float64(s_out)) for s in s_w]
    assert p["effective_scale"].tolist() == expected


# ---------------------------------------------------------------------------------------------------
# Kernels, by hand


def conv_params(**overrides: Any) -> dict[str, Any]:
    p = {
        "stride_height": 1, "stride_width": 1, "dilation_height_factor": 1, "dilation_width_factor": 1,
        "pad_height": 0, "pad_width": 0, "output_height": 3, "output_width": 3, "input_offset": -1,
        "output_offset": -5, "output_multiplier": np.array([2**30]), "output_shift": np.array([-2]),
        "activation_min": -128, "activation_max": 127,
    }
    return p | overrides


# x - zp = [[0, 1, 2], [3, 4, 5], [6, 7, 8]], w = [[1, 2], [3, 4]], SAME (pad 0 before, 1 after), bias 3.
# acc = [[27, 37, 17], [57, 67, 29], [20, 23, 8]] + 3 (points past the edge are skipped), then x 1/8:
#   30 -> 3.75 -> 4, 40 -> 5, 20 -> 2.5 -> 3, 60 -> 7.5 -> 8, 70 -> 8.75 -> 9, 32 -> 4, 23 -> 2.875 -> 3,
#   26 -> 3.25 -> 3, 11 -> 1.375 -> 1 (single) but double first halves 11 to 5.5 -> 6, then 6/4 = 1.5 -> 2.
CONV_X = i8([[1, 2, 3], [4, 5, 6], [7, 8, 9]]).reshape(1, 3, 3, 1)
CONV_W = i8([[1, 2], [3, 4]]).reshape(1, 2, 2, 1)


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [("single", [-1, 0, -2, 3, 4, -1, -2, -2, -4]), ("double", [-1, 0, -2, 3, 4, -1, -2, -2, -3])],
)
def test_conv_per_channel_by_hand(rounding: str, expected: list[int]) -> None:
    y = conv_per_channel(CONV_X, CONV_W, np.array([3], np.int32), conv_params(), rounding)
    assert y.shape == (1, 3, 3, 1) and y.dtype == np.int8
    assert y.ravel().tolist() == expected


def test_conv_per_channel_clamps_to_the_activation_range() -> None:
    y = conv_per_channel(CONV_X, CONV_W, np.array([3], np.int32), conv_params(activation_min=-2), "single")
    assert y.ravel().tolist() == [-1, 0, -2, 3, 4, -1, -2, -2, -2]
    # A large multiplier saturates at int8's ends: M = 1 (2**30, shift 1) on acc up to 70, offset 100.
    y = conv_per_channel(CONV_X, -CONV_W, np.array([3], np.int32),
                         conv_params(output_shift=np.array([1]), output_offset=100), "double")
    assert y.ravel().tolist() == [76, 66, 86, 46, 36, 74, 83, 80, 95]
    y = conv_per_channel(CONV_X, CONV_W, np.array([3], np.int32),
                         conv_params(output_shift=np.array([1]), output_offset=100), "double")
    assert y.ravel().tolist() == [127, 127, 120, 127, 127, 127, 123, 126, 111]


def test_depthwise_conv_per_channel_by_hand() -> None:
    # Pixel (1, -2) and (3, 4), depth multiplier 2, w = [1, 2, -3, 4], bias [0, 1, 2, 3], M = 1/2:
    # acc = [1, 3, 8, -5] -> [0.5, 1.5, 4, -2.5] -> [1, 2, 4, -2] (ties up in both modes at shift 0)
    # acc = [3, 7, -10, 19] -> [1.5, 3.5, -5, 9.5] -> [2, 4, -5, 10]
    x = i8([[[1, -2], [3, 4]]]).reshape(1, 1, 2, 2)
    w = i8([1, 2, -3, 4]).reshape(1, 1, 1, 4)
    p = conv_params(output_height=1, output_width=2, input_offset=0, output_offset=0, depth_multiplier=2,
                    output_multiplier=np.full(4, 2**30), output_shift=np.zeros(4, int))
    for rounding in ("single", "double"):
        y = depthwise_conv_per_channel(x, w, np.array([0, 1, 2, 3], np.int32), p, rounding)
        assert y.reshape(2, 4).tolist() == [[1, 2, 4, -2], [2, 4, -5, 10]]


def test_fully_connected_per_channel_by_hand() -> None:
    # x - zp = [[2, 3, 4], [0, 1, -2]], w = [[1, 0, -1], [1, 1, 1]], scales [0.5, 0.5], offset 3:
    # acc = [[-2, 9], [2, -1]] -> [[-1, 4.5], [1, -0.5]] -> C round: [[-1, 5], [1, -1]] -> [[2, 8], [4, 2]].
    # (A fixed-point multiplier with single rounding would send -0.5 to 0.)
    x = i8([[1, 2, 3], [-1, 0, -3]])
    w = i8([[1, 0, -1], [1, 1, 1]])
    p = {"input_offset": 1, "output_offset": 3, "effective_scale": np.array([0.5, 0.5]),
         "activation_min": -128, "activation_max": 127}
    assert fully_connected_per_channel(x, w, np.zeros(2, np.int32), p).tolist() == [[2, 8], [4, 2]]
    assert fully_connected_per_channel(x, w, None, p | {"activation_min": 3}).tolist() == [[3, 8], [4, 3]]


def test_add_by_hand() -> None:
    # Scales 2**-4 (zp 3), 2**-5 (zp -7), output 2**-3 (zp 1): out = (a - 3)/2 + (b + 7)/4, rounded, + 1.
    # a = 5, b = -7: 1 -> 2.  a = 4, b = -7: 0.5 -> 1 -> 2 (ties away from zero, or up: same).
    # a = 2, b = -7: -0.5 -> single rounds up to 0 -> 1; double rounds away to -1 -> 0.
    # a = 3, b = -5: 0.5 -> 1 -> 2.  a = 127, b = 127: 62 + 33.5 = 95.5 -> 96 -> 97.
    p = prepare_program(_add_program()).ops[0].params
    a, b = i8([5, 4, 2, 3, 127]), i8([-7, -7, -7, -5, 127])
    assert add_func(a, b, p, "single").tolist() == [2, 2, 1, 2, 97]
    assert add_func(a, b, p, "double").tolist() == [2, 2, 0, 2, 97]
    assert add(a, b, p, "double").tolist() == [2, 2, 0, 2, 97]


def test_add_table_equals_the_formula_and_broadcasts() -> None:
    p = prepare_program(_add_program("RELU6")).ops[0].params
    values = np.arange(-128, 128, dtype=np.int8)
    a, b = np.repeat(values, 256), np.tile(values, 256)
    for rounding in ("single", "double"):
        assert np.array_equal(add(a, b, p, rounding), add_func(a, b, p, rounding))
    col, row = values[:5, None], values[None, 100:103]
    assert np.array_equal(add(col, row, p, "double"), add_func(col, row, p, "double"))


def test_average_pool_by_hand() -> None:
    # x = [[6, 2, 5], [0, -2, -6]], 2x2 filter, stride 1, SAME (odd padding after): windows and counts
    # (0,0): 6+2+0-2 = 6 / 4 = 1.5 -> 2    (0,1): 2+5-2-6 = -1 / 4 -> 0    (0,2): 5-6 = -1 / 2 -> -1
    # (1,0): 0-2 = -2 / 2 -> -1            (1,1): -8 / 2 -> -4             (1,2): -6 / 1 -> -6
    x = i8([[6, 2, 5], [0, -2, -6]]).reshape(1, 2, 3, 1)
    p = {"stride_height": 1, "stride_width": 1, "filter_height": 2, "filter_width": 2, "pad_height": 0,
         "pad_width": 0, "output_height": 2, "output_width": 3, "activation_min": -128, "activation_max": 127}
    assert average_pool(x, p).reshape(2, 3).tolist() == [[2, 0, -1], [-1, -4, -6]]
    assert average_pool(x, p | {"activation_min": -3}).reshape(2, 3).tolist() == [[2, 0, -1], [-1, -3, -3]]


def test_layout_kernels() -> None:
    x = np.arange(24, dtype=np.int8).reshape(1, 2, 3, 4)
    assert pad(i8([[1, 2]]), np.array([[1, 0], [0, 2]]), -7).tolist() == [[-7, -7, -7, -7], [1, 2, -7, -7]]
    assert reshape(x, (1, 24)).ravel().tolist() == list(range(24))
    assert transpose(x, (0, 3, 1, 2))[0, :, 1, 2].tolist() == [20, 21, 22, 23]
    sliced = strided_slice(x, np.array([0, 1, -2, 3]), np.array([1, 2, 3, 0]), np.array([1, 1, 1, -2]))
    assert sliced.ravel().tolist() == [19, 17, 23, 21]  # x[0, 1, 1:3, 3:0:-2]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((5, -2, 10, 1, False, False), [3, 4]),  # negative begin counts from the end; end clamps to 5
        ((5, 4, -6, -2, False, False), [4, 2, 0]),  # end -6 + 5 = -1: "before index 0" going down
        ((5, -1, -1, 1, False, False), []),
        ((5, 0, 0, -1, True, True), [4, 3, 2, 1, 0]),  # masks: from the last to the first going down
        ((5, 7, 0, 1, False, True), []),  # begin clamps to 5
    ],
)
def test_strided_slice_axis_indices(args: tuple[Any, ...], expected: list[int]) -> None:
    assert axis_indices(*args).tolist() == expected


# ---------------------------------------------------------------------------------------------------
# Kernels against literal ports of TFLite's loops


@pytest.mark.parametrize("depthwise", [False, True])
def test_convolutions_match_literal_loops(depthwise: bool) -> None:
    rng = np.random.default_rng(2)
    for trial in range(12):
        h, wd, ci = (int(v) for v in rng.integers(3, 8, 3))
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        mult = int(rng.integers(1, 3))
        co = ci * mult if depthwise else int(rng.integers(1, 5))
        p = random_window_params(rng, h, wd, k, dilated=True)
        if p["output_height"] == 0 or p["output_width"] == 0:
            continue
        p |= {
            "input_offset": int(rng.integers(-127, 129)), "output_offset": int(rng.integers(-128, 128)),
            "output_multiplier": rng.integers(2**30, 2**31, co), "output_shift": rng.integers(-12, 2, co),
            "activation_min": int(rng.integers(-128, -50)), "activation_max": int(rng.integers(50, 128)),
            "depth_multiplier": mult,
        }
        x = rng.integers(-128, 128, (2, h, wd, ci)).astype(np.int8)
        w_shape = (1, *k, co) if depthwise else (co, *k, ci)
        w = rng.integers(-127, 128, w_shape).astype(np.int8)
        bias = rng.integers(-3000, 3000, co).astype(np.int32)
        kernel = depthwise_conv_per_channel if depthwise else conv_per_channel
        for rounding in ("single", "double"):
            expected = conv_loops(x, w, bias, p, rounding, depthwise)
            assert np.array_equal(kernel(x, w, bias, p, rounding), expected), trial


def test_average_pool_matches_literal_loops() -> None:
    rng = np.random.default_rng(3)
    for _ in range(12):
        h, wd, c = (int(v) for v in rng.integers(2, 8, 3))
        k = (int(rng.integers(1, h + 1)), int(rng.integers(1, wd + 1)))
        p = random_window_params(rng, h, wd, k, dilated=False) | {
            "filter_height": k[0], "filter_width": k[1], "activation_min": -128, "activation_max": 127}
        x = rng.integers(-128, 128, (3, h, wd, c)).astype(np.int8)
        assert np.array_equal(average_pool(x, p), pool_loops(x, p))


def test_requantize_saturates_and_narrows() -> None:
    acc = np.array([[-(2**20)], [2**20], [0]])
    y = requantize(acc, np.array([2**30]), np.array([0]), 10, -128, 127, "double")
    assert y.dtype == np.int8 and y.ravel().tolist() == [-128, 127, 10]


# ---------------------------------------------------------------------------------------------------
# Executor


def test_executor_runs_batches_like_single_samples_and_keeps_intermediates() -> None:
    rng = np.random.default_rng(4)
    program = _conv_program()
    x = rng.integers(-128, 128, (7, 5, 5, 1)).astype(np.int8)
    (y,) = run_program(program, [x])
    assert y.shape == (7, 3, 3, 2) and y.dtype == np.int8
    for i in range(7):
        assert np.array_equal(run_program(program, [x[i : i + 1]])[0], y[i : i + 1])
    values = run_intermediates(prepare_program(program), [x])
    assert list(values) == ["x", "y"] and np.array_equal(values["y"], y)


def test_executor_rejects_bad_inputs_and_unknown_ops() -> None:
    program = _conv_program()
    with pytest.raises(DataError, match="int8"):
        run_program(program, [np.zeros((2, 5, 5, 1), np.float32)])
    with pytest.raises(DataError, match="shape"):
        run_program(program, [np.zeros((2, 4, 5, 1), np.int8)])
    with pytest.raises(DataError, match="input"):
        run_program(program, [])
    odd = program.replace(ops=(QOp("UNIDIRECTIONAL_SEQUENCE_LSTM", ("x",), ("y",), params={"a": 1}, source="t"),))
    with pytest.raises(UnsupportedOpError, match="no integer kernel"):
        run_program(odd, [np.zeros((1, 5, 5, 1), np.int8)])
