"""The cost model: exact MAC and byte counts, the right roofline bound, totals that add up."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.device_profiles import DeviceProfile, load_profile
from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.cost import estimate, estimate_float

A78 = load_profile("arm-cortex-a78-xnnpack")


def _profile(**performance: float) -> DeviceProfile:
    """The A78 profile with round numbers (1 GMAC/s, 1 GB/s, 1 us/op, 1 W static) for hand arithmetic."""
    perf = {
        "peak_int8_macs_per_s": 1e9,
        "peak_fp32_macs_per_s": 0.25e9,
        "memory_bandwidth_bytes_per_s": 1e9,
        "per_op_overhead_s": 1e-6,
        **performance,
    }
    energy = {"int8_mac_j": 1e-12, "fp32_mac_j": 4e-12, "dram_byte_j": 1e-10, "static_power_w": 1.0}
    return A78.model_copy(
        update={
            "performance": A78.performance.model_copy(update=perf),
            "energy": A78.energy.model_copy(update=energy),
        }
    )


def _act(name: str, shape: tuple[int, ...]) -> QTensor:
    return QTensor(name, shape, "int8")


def _const(name: str, shape: tuple[int, ...], dtype: str = "int8") -> QTensor:
    return QTensor(name, shape, dtype, data=np.zeros(shape, dtype=dtype))


def _small_program() -> QProgram:
    """conv 3x3 (3->4, 8x8) -> depthwise 3x3 stride 2 -> add to itself -> reshape -> fully connected."""
    tensors = [
        _act("x", (1, 8, 8, 3)),
        _const("w_conv", (4, 3, 3, 3)),
        _const("b_conv", (4,), "int32"),
        _act("c", (1, 8, 8, 4)),
        _const("w_dw", (1, 3, 3, 4)),
        _const("b_dw", (4,), "int32"),
        _act("d", (1, 4, 4, 4)),
        _act("s", (1, 4, 4, 4)),
        _const("shape", (2,), "int32"),
        _act("f", (1, 64)),
        _const("w_fc", (10, 64)),
        _const("b_fc", (10,), "int32"),
        _act("y", (1, 10)),
    ]
    none = {"fused_activation_function": "NONE"}
    conv = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dilation_h_factor": 1, "dilation_w_factor": 1}
    dw = {**conv, **none, "stride_h": 2, "stride_w": 2, "depth_multiplier": 1}
    ops = [
        QOp("CONV_2D", ("x", "w_conv", "b_conv"), ("c",), {**conv, **none}, source="conv"),
        QOp("DEPTHWISE_CONV_2D", ("c", "w_dw", "b_dw"), ("d",), dw, source="dw"),
        QOp("ADD", ("d", "d"), ("s",), none, source="add"),
        QOp("RESHAPE", ("s", "shape"), ("f",), {"new_shape": (1, 64)}, source="flatten"),
        QOp("FULLY_CONNECTED", ("f", "w_fc", "b_fc"), ("y",), none, source="fc"),
    ]
    return QProgram("small", {t.name: t for t in tensors}, ops, ("x",), ("y",))


def test_mac_counts_are_exact() -> None:
    report = estimate(_small_program(), A78)
    kinds = ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESHAPE", "FULLY_CONNECTED"]
    assert [r.kind for r in report.ops] == kinds
    assert [r.source for r in report.ops] == ["conv", "dw", "add", "flatten", "fc"]
    conv = 1 * 8 * 8 * 4 * (3 * 3 * 3)  # out elements x KH x KW x Ci
    dw = 1 * 4 * 4 * 4 * (3 * 3)  # out elements x KH x KW
    fc = 1 * 10 * 64  # N x Co x Ci
    assert [r.macs for r in report.ops] == [conv, dw, 0, 0, fc]
    assert report.macs == conv + dw + fc == 8128


def test_params_count_weights_and_biases_once() -> None:
    report = estimate(_small_program(), A78)
    assert report.params == (4 * 27 + 4) + (9 * 4 + 4) + (10 * 64 + 10)


def test_bytes_use_stored_dtypes_for_int8_and_four_bytes_for_float() -> None:
    program = _small_program()
    int8 = estimate(program, A78)
    # x int8 + w int8 + b int32 + out int8
    assert int8.ops[0].bytes == 192 + 108 + 4 * 4 + 256
    # the add reads d twice; reshape's shape constant is int32
    assert int8.ops[2].bytes == 64 + 64 + 64
    assert int8.ops[3].bytes == 64 + 2 * 4 + 64
    fp32 = estimate_float(program, A78)
    assert fp32.ops[0].bytes == 4 * (192 + 108 + 4 + 256)
    assert fp32.macs == int8.macs and fp32.params == int8.params
    assert fp32.precision == "fp32" and int8.precision == "int8"


def test_time_and_energy_by_hand() -> None:
    profile = _profile()
    conv = estimate(_small_program(), profile).ops[0]
    # 6912 MACs / 1e9 = 6.912 us of compute against 572 B / 1e9 B/s = 0.572 us of traffic
    assert conv.bound == "compute"
    assert conv.time_s == pytest.approx(6.912e-6 + 1e-6)
    assert conv.energy_j == pytest.approx(6912 * 1e-12 + 572 * 1e-10 + 1.0 * conv.time_s)


def _single_op_program(kind: str, x: tuple[int, ...], w: tuple[int, ...], y: tuple[int, ...]) -> QProgram:
    """One weighted op ``y = kind(x, w, b)``; options do not matter to the cost model."""
    channels = w[3] if kind == "DEPTHWISE_CONV_2D" else w[0]
    tensors = [_act("x", x), _const("w", w), _const("b", (channels,), "int32"), _act("y", y)]
    op = QOp(kind, ("x", "w", "b"), ("y",), source="node")
    return QProgram(kind.lower(), {t.name: t for t in tensors}, [op], ("x",), ("y",))


def test_large_conv_is_compute_bound_on_a78() -> None:
    # 56x56x64 -> 64, 3x3: 115.6 M MACs (1.5 ms at 77 GMAC/s) against ~0.44 MB (26 us at 17 GB/s).
    program = _single_op_program("CONV_2D", (1, 56, 56, 64), (64, 3, 3, 64), (1, 56, 56, 64))
    (row,) = estimate(program, A78).ops
    assert row.macs == 56 * 56 * 64 * 9 * 64
    assert row.bound == "compute"
    expected = row.macs / A78.performance.peak_int8_macs_per_s + A78.performance.per_op_overhead_s
    assert row.time_s == pytest.approx(expected)


def test_batch_one_fully_connected_is_memory_bound_on_a78() -> None:
    # Each weight byte is used once: 1 M MACs (13 us) against 1 MB of weights (62 us at 17 GB/s).
    program = _single_op_program("FULLY_CONNECTED", (1, 1024), (1024, 1024), (1, 1024))
    (row,) = estimate(program, A78).ops
    assert row.macs == 1024 * 1024
    assert row.bound == "memory"
    expected = row.bytes / A78.performance.memory_bandwidth_bytes_per_s + A78.performance.per_op_overhead_s
    assert row.time_s == pytest.approx(expected)


def test_bound_follows_the_profile() -> None:
    program = _single_op_program("DEPTHWISE_CONV_2D", (1, 16, 16, 32), (1, 3, 3, 32), (1, 16, 16, 32))
    assert estimate(program, _profile(memory_bandwidth_bytes_per_s=1e15)).ops[0].bound == "compute"
    assert estimate(program, _profile(peak_int8_macs_per_s=1e15)).ops[0].bound == "memory"


def test_elementwise_ops_have_no_macs_and_are_memory_bound() -> None:
    report = estimate(_small_program(), A78)
    for row in report.ops[2:4]:
        assert row.macs == 0 and row.bound == "memory"


def test_totals_add_up() -> None:
    for report in (estimate(_small_program(), A78), estimate_float(_small_program(), A78)):
        latency_s = sum(r.time_s for r in report.ops)
        assert report.latency_ms == pytest.approx(latency_s * 1e3)
        assert report.fps == pytest.approx(1.0 / latency_s)
        assert report.energy_mj == pytest.approx(sum(r.energy_j for r in report.ops) * 1e3)
        assert report.bytes == sum(r.bytes for r in report.ops)
        assert report.profile == A78.name


def test_int8_is_cheaper_than_float() -> None:
    program = _single_op_program("CONV_2D", (1, 56, 56, 64), (64, 3, 3, 64), (1, 56, 56, 64))
    int8, fp32 = estimate(program, A78), estimate_float(program, A78)
    # compute-bound: the ratio is the peak ratio (4x on A78), less the shared per-op overhead
    assert fp32.latency_ms / int8.latency_ms == pytest.approx(4.0, rel=1e-2)
    assert fp32.energy_mj > int8.energy_mj


def test_formula_names_the_profile_numbers() -> None:
    report = estimate(_small_program(), A78)
    assert "max(MACs / 7.744e+10 MAC/s" in report.formula
    assert A78.name in report.formula
    assert "1.7e+10 B/s" in report.formula


def test_unpriced_op_kind_is_an_unsupported_op_error() -> None:
    program = _small_program()
    program = program.replace(ops=(QOp("SVDF", ("y",), ("y",), source="svdf"),))
    with pytest.raises(UnsupportedOpError, match="SVDF.*svdf.*CONV_2D"):
        estimate(program, A78)
