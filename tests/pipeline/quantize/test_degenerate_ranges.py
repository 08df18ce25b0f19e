"""A degenerate activation range (a dead ReLU6, all zeros on the calibration data) still deploys.

The model is Conv → BatchNormalization → Clip(0, 6) → GlobalAveragePool → Flatten → Gemm with a batch
norm shift so negative that the ReLU6 output is 0 for every calibration sample. Its int8 encoding is
TFLite's converter's for such a range (``[-5e-7, 5e-7]``, scale ``1e-6 / 255``), whose fused RELU6 bound
fits int32 as LiteRT's Prepare requires (a scale below ``6 / 2**31`` is refused by LiteRT and the
executor alike); the Gemm after it, whose input scale is now tiny, gets weight scales wide enough to
keep its bias in int32, so the int8 model still tracks the float one. Both .tflite files (w8a8, w8a16)
run bit-exactly in the executor and LiteRT's reference kernels.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeopt.errors import ModelLoadError, UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input, run_float
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.quantize.encodings import activation_qparams, weight_qparams, weight_qparams_for_bias
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.workflows.deploy import DeployResult, deploy
from tests.builders.onnx_models import conv_bn_relu6

A78 = "arm-cortex-a78-xnnpack"
INT32_LIMIT = 2.0**31 - 1


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dead_relu6")
    model = conv_bn_relu6(np.random.default_rng(0), batch=1)
    beta = next(t for t in model.graph.initializer if t.name == "beta")
    beta.CopyFrom(numpy_helper.from_array(np.full(8, -100.0, np.float32), "beta"))
    onnx.save(model, out / "dead.onnx")
    np.savez(out / "d.npz", x=np.random.default_rng(1).normal(size=(40, 3, 8, 8)).astype(np.float32))
    return out / "dead.onnx"


@pytest.fixture(scope="module")
def int8_result(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DeployResult:
    return deploy(str(model_path), A78, data=model_path.parent / "d.npz", out=tmp_path_factory.mktemp("int8"))


def _x(model_path: Path) -> np.ndarray:
    return np.load(model_path.parent / "d.npz")["x"]


def _assert_bitexact(program: QProgram, tflite: bytes, x: np.ndarray) -> np.ndarray:
    q = quantize_input(program, x)
    got = run_program(program, [q])[0]
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([q])[0], got)
    return got


def test_relu6_output_is_all_zeros(model_path: Path) -> None:
    graph = load(str(model_path)).graph
    relu6 = next(n for n in graph.nodes if n.op == "Clip")
    probe = graph.replace(outputs=(graph.tensors[relu6.outputs[0]],))
    assert not run_float(probe, _x(model_path)).any()


def test_dead_relu6_deploys_bitexact_and_keeps_the_output(int8_result: DeployResult, model_path: Path) -> None:
    program = int8_result.program.replace(rounding="double")
    act = program.tensors["act"].qparams
    assert act.scale[0] == np.float32(1e-6 / 255) and 6.0 / act.scale[0] < INT32_LIMIT
    x = _x(model_path)[:16]
    got = _assert_bitexact(program, (int8_result.out_dir / "model.int8.tflite").read_bytes(), x)
    # The output is the Gemm's bias alone: kept in int32, it comes out within two output steps.
    y_scale = float(program.tensors[program.outputs[0]].qparams.scale[0])
    expected = run_float(load(str(model_path)).graph, x)
    np.testing.assert_allclose(dequantize_output(program, got), expected, atol=2 * y_scale)
    assert int8_result.report["accuracy"]["int8"] == 100.0


def test_dead_relu6_deploys_bitexact_in_16x8(model_path: Path, tmp_path: Path) -> None:
    result = deploy(str(model_path), "host", data=model_path.parent / "d.npz", out=tmp_path, precision="w8a16")
    program = result.program.replace(rounding="double")
    assert program.tensors["act"].dtype == "int16"
    _assert_bitexact(program, (result.out_dir / "model.int8.tflite").read_bytes(), _x(model_path)[:16])


def test_a_scale_whose_relu6_bound_overflows_is_refused_by_litert_and_the_executor(
        int8_result: DeployResult, model_path: Path) -> None:
    """The executor's refusal mirrors LiteRT's Prepare: 6 / scale must fit int32 (what the fix keeps)."""
    program = int8_result.program.replace(rounding="double")
    for scale, refused in ((6.0 / 2**31 * 1.01, False), (6.0 / 2**31 * 0.99, True)):
        tiny = QParams(np.float32(scale), -128)
        # The ReLU6 output's encoding travels unchanged through the pooling and the flatten.
        tensors = {**program.tensors, **{k: replace(program.tensors[k], qparams=tiny) for k in ("act", "gap", "flat")}}
        # Without their precomputed multipliers, the ops are prepared again from the new encoding.
        patched = program.replace(tensors=tensors, ops=tuple(op.with_params({}) for op in program.ops))
        if refused:
            with pytest.raises(ModelLoadError, match="no_integer_overflow_from_quantization"):
                LiteRT(program_to_tflite(patched), kernels="reference")
            with pytest.raises(UnsupportedOpError, match="activation bound 6.0 overflows int32"):
                run_program(patched, [quantize_input(patched, _x(model_path)[:1])])
        else:
            _assert_bitexact(patched, program_to_tflite(patched), _x(model_path)[:4])


@pytest.mark.parametrize("lo, hi", [(0.0, 0.0), (0.0, 1e-9), (-3e-7, 0.0), (-1e-7, 2e-7), (0.0, 1.0001e-6)])
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_degenerate_ranges_keep_every_fused_bound_in_int32(lo: float, hi: float, dtype: str) -> None:
    q = activation_qparams(lo, hi, dtype)
    assert 6.0 / float(q.scale[0]) < INT32_LIMIT
    assert q.qmin <= int(q.zero_point[0]) <= q.qmax


def test_ordinary_ranges_are_not_widened() -> None:
    q = activation_qparams(-0.5, 2.0)
    assert q.scale[0] == np.float32(2.5 / 255) and q.zero_point[0] == -77


def test_weight_scales_widen_only_where_the_bias_would_overflow() -> None:
    rng = np.random.default_rng(0)
    w_q = weight_qparams(rng.normal(0, 0.3, (4, 8)).astype(np.float32), axis=0)
    ordinary = activation_qparams(-1.0, 1.0)
    bias = np.array([0.1, -0.2, 0.0, 3.0], np.float32)
    assert weight_qparams_for_bias(w_q, ordinary, bias) is w_q
    dead = activation_qparams(0.0, 0.0)
    widened = weight_qparams_for_bias(w_q, dead, bias)
    quantized_bias = np.abs(bias) / (np.float64(dead.scale[0]) * widened.scale.astype(np.float64))
    assert np.all(quantized_bias <= 2.0**30 * (1 + 1e-6))
    assert widened.scale[2] == w_q.scale[2] and np.all(widened.scale >= w_q.scale)


def test_one_scale_stays_one_and_int16_inputs_are_left_alone() -> None:
    """A per-tensor weight held per channel (ConvTranspose's) gets one raised scale for every channel; an
    int16 input has an int64 bias, which needs no widening."""
    w_q = weight_qparams(np.full((4, 8), 0.3, np.float32), axis=0)
    bias = np.array([0.1, -0.2, 0.0, 3.0], np.float32)
    widened = weight_qparams_for_bias(w_q, activation_qparams(0.0, 0.0), bias, one_scale=True)
    assert np.all(widened.scale == widened.scale[3]) and widened.scale[3] > w_q.scale[3]
    assert weight_qparams_for_bias(w_q, activation_qparams(0.0, 0.0, "int16"), bias) is w_q
