"""QuantSim's evaluation path (no autograd): the exact values alone, kernels kept between batches,
integers handed from kernel to kernel, float64 and wrapping int32 accumulators. Each must give the
values the autograd path and the integer executor give."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from edgeopt.torch import requantize as quantsim_requantize
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.range_setting import set_ranges
from edgeopt.torch.quantsim import simulate
from tests.builders.onnx_models import model
from tests.builders.quantsim import sim_and_executor

RNG = np.random.default_rng(11)
X = RNG.standard_normal((24, 4, 12, 12)).astype(np.float32)


def _w(*shape: int, std: float = 0.3) -> np.ndarray:
    return RNG.normal(0, std, shape).astype(np.float32)


def block_model() -> onnx.ModelProto:
    """Conv (stride 2, pads 0/1) → ReLU6 → depthwise Conv → ReLU → 1x1 Conv → residual Add →
    GlobalAveragePool → Flatten → Gemm: an inverted-residual block, as EfficientNet-Lite's."""
    inits = {"w1": _w(8, 4, 3, 3), "b1": _w(8, std=0.1), "dw": _w(8, 1, 3, 3), "bdw": _w(8, std=0.1),
             "pw": _w(8, 8, 1, 1), "bpw": _w(8, std=0.1), "lo": np.array(0, np.float32),
             "hi": np.array(6, np.float32), "fc_w": _w(10, 8), "fc_b": _w(10, std=0.1)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", strides=[2, 2], pads=[0, 0, 1, 1]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "dw", "bdw"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="r2"),
             helper.make_node("Conv", ["r2", "pw", "bpw"], ["c3"], name="pw"),
             helper.make_node("Add", ["c3", "r1"], ["res"], name="res"),
             helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1)]
    return model(nodes, inits, ["N", 4, 12, 12], ["N", 10])


def wide_model() -> onnx.ModelProto:
    """Conv whose channel 0 has tiny weights and a bias that saturates int32 (its int32 accumulator
    wraps) → Flatten → Gemm over 1152 inputs whose weights all quantize to ±127 (sums beyond 2^24:
    float64)."""
    w = _w(8, 4, 3, 3)
    w[0] *= 1e-6
    b = _w(8, std=0.1)
    b[0] = 1.0
    inits = {"w": w, "b": b, "fc_w": (np.sign(_w(10, 8 * 12 * 12)) * 0.05).astype(np.float32),
             "fc_b": _w(10, std=0.1)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="c", pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1)]
    return model(nodes, inits, ["N", 4, 12, 12], ["N", 10])


def _quantized(onnx_model: onnx.ModelProto) -> QuantizedGraph:
    graph = optimize(onnx_to_graph(onnx_model, "test"))
    return quantize_minmax(graph, set_ranges(calibrate(graph, X[:16]), "minmax"))


@pytest.fixture(scope="module")
def block() -> QuantizedGraph:
    return _quantized(block_model())


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_evaluation_gives_the_autograd_forward_and_the_executor(block: QuantizedGraph, rounding: str) -> None:
    module = simulate(block, rounding=rounding)
    x = torch.from_numpy(X)
    trained = module(x.clone().requires_grad_(True))  # the autograd path: soft + exact, fake-quantized weights
    assert trained.requires_grad
    with torch.no_grad():
        evaluated = module(x)
    np.testing.assert_array_equal(evaluated.numpy(), trained.detach().numpy())
    simulated, executed, _ = sim_and_executor(module, lower(block, rounding=rounding), X)
    np.testing.assert_array_equal(simulated, executed)


def test_kept_kernels_follow_weight_changes(block: QuantizedGraph) -> None:
    module = simulate(block)
    x = torch.from_numpy(X)
    with torch.no_grad():
        before = module(x)
        key = module.keys[next(n for n in module.graph.nodes if n.name == "pw").inputs[1]]
        module.params[key].data.mul_(-0.5)  # in place, behind autograd's back: the kept kernel must notice
        after = module(x)
    assert not torch.equal(before, after)
    program = lower(module.export(), rounding="double")
    simulated, executed, _ = sim_and_executor(module, program, X)
    np.testing.assert_array_equal(simulated, after.numpy())
    np.testing.assert_array_equal(simulated, executed)


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_wide_and_saturated_accumulators_match_the_executor(rounding: str) -> None:
    qgraph = _quantized(wide_model())
    module = simulate(qgraph, rounding=rounding)
    simulated, executed, _ = sim_and_executor(module, lower(qgraph, rounding=rounding), X)
    np.testing.assert_array_equal(simulated, executed)
    kernels = module._kernels
    assert kernels["fc"].weight.dtype == torch.float64  # 1152 · 127 · 255 > 2^24
    assert kernels["c"].int_bias is not None and kernels["c"].bound >= 1 << 31  # int32 wrap-around


def test_small_blocks_in_parallel_parts_give_the_same_values(block: QuantizedGraph,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantsim_requantize, "BLOCK", 64)  # many blocks per layer, split over two threads
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        simulated, executed, _ = sim_and_executor(simulate(block), lower(block, rounding="double"), X)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(simulated, executed)
