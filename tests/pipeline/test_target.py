"""Target: deploy's path and QuantSim quantize the same graph with the same data to the same encodings, on
every shipped profile, and QuantSim's simulated outputs are still the integer executor's."""
from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import helper

import edgeopt
from edgeopt.device_profiles import load_profile
from edgeopt.examples import digits
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.evaluate import run_int8
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
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


def _deploy_path(graph, profile: str, calib: np.ndarray) -> QuantizedGraph:
    """What deploy does with ``graph`` before shipping it: check, ranges, quantize (``deploy_with``)."""
    target = Target(load_profile(profile))
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
