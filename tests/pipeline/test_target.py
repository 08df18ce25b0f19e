"""Target: deploy's path and QuantSim quantize the same graph with the same data to the same encodings, on
every shipped profile, and QuantSim's simulated outputs are still the integer executor's; also on a model
with a dead ReLU6, after which weight scales are widened so that the next layer's bias fits int32."""
from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import helper
from torch import nn

import edgeopt
from edgeopt.device_profiles import load_profile
from edgeopt.examples import digits
from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.evaluate import run_float, run_int8
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.quantize.precision import Precision
from edgeopt.pipeline.target import Target
from edgeopt.qprogram import QProgram
from edgeopt.workflows.deploy import DEFAULT_CALIB_SIZE, DeployOptions, deploy
from tests.builders.onnx_models import model as onnx_model
from tests.builders.paths import PROFILES

PROFILE_NAMES = sorted(p.stem for p in PROFILES.glob("*.toml"))
HTP = "snapdragon-8-gen-2-htp"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """deploy's calibration set for the built-in example (its training split), and test samples."""
    return digits.example_data("train")[0][:DEFAULT_CALIB_SIZE], digits.example_data("test")[0][:64]


@pytest.fixture(scope="module", params=PROFILE_NAMES)
def sim(request: pytest.FixtureRequest, data: tuple[np.ndarray, np.ndarray]) -> edgeopt.QuantSim:
    sim = edgeopt.QuantSim(digits.load_example_model(), digits.example_input(), device=request.param)
    sim.compute_encodings(data[0])
    return sim


def _deploy_path(graph: Graph, profile: str, calib: np.ndarray, precision: Precision | None = None) -> QuantizedGraph:
    """What deploy does with ``graph`` before shipping it: check, ranges, quantize (``deploy_with``)."""
    target = Target(load_profile(profile), precision=precision)
    plan = target.check(graph).plan
    return target.quantize(graph, target.ranges(graph, calib), plan)


def assert_same_encodings(got: QuantizedGraph, want: QuantizedGraph) -> None:
    """Every tensor's dtype, axis, scales and zero points, the quantized weights, and the float nodes."""
    assert set(got.encodings) == set(want.encodings)
    for name, q in want.encodings.items():
        g = got.encodings[name]
        assert (g.dtype, g.axis) == (q.dtype, q.axis), name
        np.testing.assert_array_equal(g.scale, q.scale, err_msg=name)
        np.testing.assert_array_equal(g.zero_point, q.zero_point, err_msg=name)
        if name in want.graph.initializers:
            np.testing.assert_array_equal(g.quantize(got.graph.initializers[name]),
                                          q.quantize(want.graph.initializers[name]), err_msg=name)
    assert got.float_nodes == want.float_nodes


def assert_same_program(got: QProgram, want: QProgram) -> None:
    assert [(op.kind, op.inputs, op.outputs) for op in got.ops] == [(op.kind, op.inputs, op.outputs) for op in want.ops]
    assert set(got.tensors) == set(want.tensors)
    for name, t in want.tensors.items():
        g = got.tensors[name]
        assert (g.dtype, g.shape) == (t.dtype, t.shape), name
        assert (g.qparams is None) == (t.qparams is None), name
        if t.qparams is not None:
            assert g.qparams.same_as(t.qparams), name
        if t.data is not None:
            np.testing.assert_array_equal(g.data, t.data, err_msg=name)


def test_quantsim_encodings_are_deploys(sim: edgeopt.QuantSim, data: tuple[np.ndarray, np.ndarray]) -> None:
    assert_same_encodings(sim.export(), _deploy_path(sim.graph, sim.profile.name, data[0]))


def test_quantsim_simulates_the_program_that_ships(sim: edgeopt.QuantSim, data: tuple[np.ndarray, np.ndarray]) -> None:
    """The integer executor runs the program the target ships from QuantSim's export (supergroups honoured,
    placed, float-only ops in float islands): QuantSim's outputs are its outputs."""
    x = data[1]
    with torch.no_grad():
        simulated = sim.model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(simulated, run_int8(sim.target.ship(sim.export()).program, x))


def test_htp_weights_use_minus_128_in_quantsim_and_in_deploy(tmp_path: Path,
                                                            data: tuple[np.ndarray, np.ndarray]) -> None:
    """The profile's ``strict_symmetric = false``: deploy ships weights on [-128, 127], and QuantSim trains on
    that grid (it used to train on [-127, 127]); the program shipped from QuantSim's export is deploy's own."""
    sim = edgeopt.QuantSim(digits.load_example_model(), digits.example_input(), device=HTP)
    sim.compute_encodings(data[0])
    shipped = sim.target.ship(sim.export()).program
    deployed = deploy(None, HTP, out=tmp_path).program
    assert_same_program(shipped, deployed)
    weights = [t.data for t in deployed.tensors.values() if t.data is not None and t.dtype == "int8"]
    assert min(int(w.min()) for w in weights) == -128
    w = sim.model.weight_q[next(iter(sim.model.weight_q))]
    assert (w.qmin, w.qmax) == (-128, 127)


def test_deploy_options_are_frozen_and_the_keyword_form_refuses_an_unknown_option(tmp_path: Path) -> None:
    options = DeployOptions("host", precision_overrides={"conv": "int16"})
    with pytest.raises(FrozenInstanceError):
        options.max_drop = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.precision_overrides["fc"] = "float"  # type: ignore[index]
    with pytest.raises(TypeError, match="max_dorp"):
        deploy(None, "host", out=tmp_path, max_dorp=1.0)


def _weighted_graph():
    """Conv → ConvTranspose → Flatten → MatMul → Gemm (without transB): a weight on each output axis."""
    rng = np.random.default_rng(3)
    inits = {"w1": rng.normal(0, 0.3, (6, 4, 3, 3)), "w2": rng.normal(0, 0.3, (6, 4, 2, 2)),
             "w3": rng.normal(0, 0.3, (4 * 16 * 16, 5)), "w4": rng.normal(0, 0.3, (5, 3))}
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["a", "w2"], ["b"], name="deconv", strides=[2, 2]),
             helper.make_node("Flatten", ["b"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "w3"], ["m"], name="matmul"),
             helper.make_node("Gemm", ["m", "w4"], ["y"], name="gemm")]
    return onnx_to_graph(onnx_model(nodes, inits, [1, 4, 8, 8], [1, 3]), "weighted")


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_weight_encoding_is_quantizes_own(profile: str) -> None:
    """``Target.weight_encoding`` (what QuantSim recomputes while training) gives each weight the encoding
    ``Target.quantize`` gives it: axis, strict or full range, per-channel or per-tensor."""
    graph = _weighted_graph()
    target = Target(load_profile(profile))
    x = np.random.default_rng(4).normal(size=(8, 4, 8, 8)).astype(np.float32)
    qgraph = target.quantize(graph, target.ranges(graph, x))
    for node in graph.nodes:
        if node.op in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            w = node.inputs[1]
            assert target.weight_encoding(node, graph.initializers[w]).same_as(qgraph.encodings[w]), (profile, node.op)


class _DeadReLU6(nn.Module):
    """Conv → ReLU6 whose output is 0 on every input (bias -100) → Conv with a bias → ReLU → global
    average → Linear. The second conv's channel 0 has all-zero weights and the largest bias: a per-tensor
    scale chosen from the other channels would let that bias overflow int32."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.relu6 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6()
        self.conv2, self.relu = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.conv1.bias.fill_(-100.0)
            self.conv2.weight[0] = 0.0
            self.conv2.bias.copy_(torch.tensor([3.0, 0.5, -0.4, 0.3, 0.2, -0.1, 0.45, 0.05]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv2(self.relu6(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


DEAD_X = np.random.default_rng(5).normal(size=(48, 3, 8, 8)).astype(np.float32)


def _dead_sim(profile: str, precision: Precision | None = None) -> edgeopt.QuantSim:
    sim = edgeopt.QuantSim(_DeadReLU6(), torch.from_numpy(DEAD_X[:1]), device=profile, precision=precision)
    sim.compute_encodings(DEAD_X[:32])
    return sim


def _second_conv(qgraph: QuantizedGraph):
    """The conv that reads the dead ReLU6: its node, input encoding, weight encoding and bias encoding."""
    node = [n for n in qgraph.graph.nodes if n.op == "Conv"][1]
    return node, *(qgraph.encodings[t] for t in node.inputs)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_a_bias_after_a_dead_relu6_fits_int32_in_quantsim_and_in_deploy(profile: str) -> None:
    """QuantSim widens the weight scales as deploy does (same encodings), its outputs are the executor's,
    and every int32 bias of the second conv uses at most 2**30."""
    sim = _dead_sim(profile)
    exported = sim.export()
    assert_same_encodings(exported, _deploy_path(sim.graph, profile, DEAD_X[:32]))
    node, x_q, w_q, b_q = _second_conv(exported)
    assert x_q.scale[0] == np.float32(1e-6 / 255)
    assert w_q.per_channel == sim.target.rules.per_channel("Conv")
    plain = sim.target.weight_encoding(node, exported.graph.initializers[node.inputs[1]])
    assert np.all(w_q.scale >= plain.scale) and np.any(w_q.scale > plain.scale)  # widened
    assert b_q.dtype == "int32"
    assert np.abs(b_q.quantize(exported.graph.initializers[node.inputs[2]])).max() <= 2**30
    x = DEAD_X[32:]
    with torch.no_grad():
        simulated = sim.model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(simulated, run_int8(sim.target.ship(exported).program, x))


def test_the_widening_survives_per_tensor_weights() -> None:
    """google-coral-edgetpu has per-tensor weights: the one scale is widened for the bias of the all-zero
    channel too, which the channels' own scales (the per-tensor reduction skips a zero channel) would not
    cover, so the int8 program still gives the float model's output."""
    sim = _dead_sim("google-coral-edgetpu")
    exported = sim.export()
    node, x_q, w_q, b_q = _second_conv(exported)
    assert not w_q.per_channel
    bias = exported.graph.initializers[node.inputs[2]]
    assert np.abs(b_q.quantize(bias)).max() <= 2**30
    assert np.abs(bias[0]) / (float(x_q.scale[0]) * float(w_q.scale[0])) > 2**30 * 0.99  # channel 0 set the scale
    program = sim.target.ship(exported).program
    y_scale = float(program.tensor(program.outputs[0]).qparams.scale[0])
    # Within a few output steps (per-tensor weights are coarse); a saturated bias was off by some 200.
    np.testing.assert_allclose(run_int8(program, DEAD_X[32:]), run_float(sim.graph, DEAD_X[32:]), atol=5 * y_scale)


def test_int16_inputs_keep_their_weight_scales() -> None:
    """Behind an int16 input the bias is int64: no widening, in QuantSim and in deploy alike."""
    sim = _dead_sim("host", precision="w8a16")
    exported = sim.export()
    assert_same_encodings(exported, _deploy_path(sim.graph, "host", DEAD_X[:32], precision="w8a16"))
    node, x_q, w_q, b_q = _second_conv(exported)
    assert (x_q.dtype, b_q.dtype) == ("int16", "int64")
    assert w_q.same_as(sim.target.weight_encoding(node, exported.graph.initializers[node.inputs[1]]))


def test_qat_trains_through_the_widened_layer() -> None:
    """Gradients stay finite and reach the second conv's bias (its input is dead, so its weight's are about
    zero); after a step its weight encoding is the target's for the new weight and bias."""
    sim = _dead_sim("arm-cortex-a78-xnnpack")
    params = [p for p in sim.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3)
    loss = sim.model(torch.from_numpy(DEAD_X[:8])).square().mean()
    loss.backward()
    grads = {name: p.grad for name, p in sim.model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    node, *_ = _second_conv(sim.export())
    bias_key = sim.model.keys[node.inputs[2]]
    assert sim.model.params[bias_key].grad.abs().sum() > 0
    optimizer.step()
    exported = sim.export()
    w, b = (exported.graph.initializers[t] for t in node.inputs[1:])
    assert not np.array_equal(b, sim.model.source.initializers[node.inputs[2]])
    want = sim.target.weight_encoding(node, w, exported.encodings[node.inputs[0]], b)
    assert exported.encodings[node.inputs[1]].same_as(want)
    assert np.any(want.scale > sim.target.weight_encoding(node, w).scale)  # still widened
