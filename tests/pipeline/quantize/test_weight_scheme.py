"""The report's statement of the device's weight scheme against the shipped one, the program of the
device's own (asymmetric) weights, and the weight-range search by MSE for per-tensor weights."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgeopt.device_profiles import load_profile
from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.emit.onnx import quantized_to_onnx
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import run_float, run_int8
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.weight_range import mse_weight_scale
from edgeopt.pipeline.quantize.weight_scheme import (
    asymmetric_sqnr_db,
    asymmetric_weight_qparams,
    device_weights,
    device_weights_program,
    symmetric_sqnr_db,
    weight_scheme,
)
from edgeopt.pipeline.target import Target
from edgeopt.runtimes.onnxruntime import OnnxRuntime
from tests.builders import one_sided
from tests.builders.onnx_models import model
from tests.builders.per_tensor import collapsing_graph, images

DSP = "snapdragon-845-hexagon-dsp"


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
    assert entry["layers"] == 4 and entry["accuracy_of"] == "shipped" and "device_scheme" in entry["device_accuracy"]
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


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got).astype(np.float64) ** 2)))


def test_asymmetric_grid_covers_the_range_with_zero_on_it() -> None:
    q = asymmetric_weight_qparams(np.array([0.0, 0.5, 2.55]))
    assert np.isclose(q.scale[0], 0.01) and q.zero_point[0] == -128  # one-sided: all 256 levels above 0
    q = asymmetric_weight_qparams(np.array([-1.0, 0.275]))
    assert q.dequantize(q.quantize(np.zeros(1)))[0] == 0 and -128 < q.zero_point[0] < 127
    assert np.isclose(asymmetric_weight_qparams(np.array([0.0, 1.0]), min_scale=0.1).scale[0], 0.1)


@pytest.fixture(scope="module")
def dsp_one_sided():
    graph = one_sided.one_sided_graph()
    target = Target(load_profile(DSP))
    shipped = target.ship(target.quantize(graph, target.ranges(graph, one_sided.images(0, 64))))
    return graph, target, shipped, target.device_program(shipped)


def test_the_device_program_carries_asymmetric_weights_and_beats_the_shipped_grid(dsp_one_sided) -> None:
    """One-sided weights: the device's grid (zero point -128, all levels above 0) halves the weight step of
    the shipped symmetric one; the executor runs it, and the emulated output is closer to float."""
    graph, _, shipped, device = dsp_one_sided
    convs = [op for op in device.ops if op.kind == "CONV_2D"]
    assert len(convs) == 2
    assert all(int(device.tensor(op.inputs[1]).qparams.zero_point[0]) == -128 for op in convs)
    assert all(not np.any(shipped.program.tensor(op.inputs[1]).qparams.zero_point) for op in convs)
    assert [op.kind for op in device.ops] == [op.kind for op in shipped.program.ops]
    x = one_sided.images(1, 64)
    fp32 = run_float(graph, x)
    gain = _sqnr_db(fp32, run_int8(device, x)) - _sqnr_db(fp32, run_int8(shipped.program, x))
    assert gain >= 1.5, gain
    program_to_tflite(shipped.program)  # the shipped program is the one a .tflite carries
    with pytest.raises(UnsupportedOpError, match="zero point -128; LiteRT's int8 kernels take symmetric weights"):
        program_to_tflite(device)


def test_qdq_onnx_of_the_device_weights_matches_the_executor(dsp_one_sided) -> None:
    """The QDQ model carries the same non-zero weight zero points (one ``QParams.quantize`` for both); ONNX
    Runtime, requantizing in float, lands within one step of the executor and mostly on it."""
    graph, target, shipped, device = dsp_one_sided
    qgraph = device_weights(shipped.qgraph, target.rules)
    model = quantized_to_onnx(qgraph)
    zps = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("__zp")}
    assert zps["w0__zp"] == -128 and zps["w1__zp"] == -128
    w0 = device.tensor(next(op.inputs[1] for op in device.ops if op.kind == "CONV_2D"))
    np.testing.assert_array_equal(w0.data, qgraph.encodings["w0"].quantize(graph.initializers["w0"]).transpose(0, 2, 3, 1))
    x = one_sided.images(2, 64)
    ort = OnnxRuntime(model).run_batch(x)[0]
    steps = np.abs(ort - run_int8(device, x)) / device.tensor(device.outputs[0]).qparams.scale[0]
    assert steps.max() <= 1.001 and np.mean(steps < 1e-3) >= 0.9


def test_profiles_whose_files_carry_their_scheme_have_no_device_program() -> None:
    graph = one_sided.one_sided_graph()
    for name in ("google-coral-edgetpu", "arm-cortex-a78-xnnpack"):
        target = Target(load_profile(name))
        shipped = target.ship(target.quantize(graph, target.ranges(graph, one_sided.images(0, 8))))
        assert target.device_program(shipped) is None


def test_a_programs_weights_requantized_on_the_device_grid(dsp_one_sided) -> None:
    """From a program alone (a .tflite read back): the symmetric per-tensor weights, re-quantized on the
    asymmetric grid, keep their real values to within the coarser of the two steps, and the result runs."""
    _, target, shipped, _ = dsp_one_sided
    device = device_weights_program(shipped.program, target.rules)
    for op in (op for op in device.ops if op.kind == "CONV_2D"):
        old, new = shipped.program.tensor(op.inputs[1]), device.tensor(op.inputs[1])
        assert new.qparams.zero_point[0] == -128 and new.qparams.scale[0] < old.qparams.scale[0]
        np.testing.assert_allclose(new.qparams.dequantize(new.data), old.qparams.dequantize(old.data),
                                   atol=float(old.qparams.scale[0]))
    x = one_sided.images(4, 8)
    assert run_int8(device, x).shape == run_int8(shipped.program, x).shape
    assert device_weights_program(shipped.program, Target(load_profile("google-coral-edgetpu")).rules) is None


def _single_op_models() -> dict[str, tuple[onnx.ModelProto, tuple[int, ...]]]:
    """A depthwise Conv and a Gemm alone, with lopsided weights (negative side shrunk), as ONNX models."""
    rng = np.random.default_rng(4)
    dw = rng.normal(0, 0.5, (6, 1, 3, 3))
    gemm = rng.normal(0, 0.3, (7, 24))
    dw, gemm = (np.where(w < 0, 0.2 * w, w).astype(np.float32) for w in (dw, gemm))
    return {
        "depthwise": (model([onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="dw", group=6,
                                                             pads=[1, 1, 1, 1])],
                                      {"w": dw}, [1, 6, 7, 7], [1, 6, 7, 7]), (6, 7, 7)),
        "gemm": (model([onnx.helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)],
                                 {"w": gemm, "b": rng.normal(0, 0.2, 7).astype(np.float32)}, [1, 24], [1, 7]), (24,)),
    }


@pytest.mark.parametrize("name", ["depthwise", "gemm"])
def test_single_ops_with_a_weight_zero_point_match_onnx_runtime_within_one_step(name: str) -> None:
    """DEPTHWISE_CONV_2D and FULLY_CONNECTED with the device's weights against ONNX Runtime running the QDQ
    model with the same weight zero points (it requantizes in float): within one step, mostly exact."""
    proto, shape = _single_op_models()[name]
    graph = optimize(onnx_to_graph(proto, name))
    target = Target(load_profile(DSP))
    rng = np.random.default_rng(5)
    calib, x = (rng.normal(size=(n, *shape)).astype(np.float32) for n in (32, 200))
    shipped = target.ship(target.quantize(graph, target.ranges(graph, calib)))
    device = target.device_program(shipped)
    (op,) = [op for op in device.ops if op.kind in ("DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert int(device.tensor(op.inputs[1]).qparams.zero_point[0]) < -60  # lopsided: far from 0
    ort = OnnxRuntime(quantized_to_onnx(device_weights(shipped.qgraph, target.rules))).run_batch(x)[0]
    steps = np.abs(ort - run_int8(device, x)) / device.tensor(device.outputs[0]).qparams.scale[0]
    assert steps.max() <= 1.001 and np.mean(steps < 1e-3) >= 0.95
