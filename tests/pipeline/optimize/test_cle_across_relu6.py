"""Cross-layer equalization across ReLU6 ("clip": ReLU + a per-channel MINIMUM) on a network that collapses
under per-tensor weights, with trained-looking batch-norm statistics (``tests.builders.per_tensor``)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.device_profiles import load_profile
from edgeopt.ir import Graph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import write_tflite
from edgeopt.pipeline.evaluate import program_inputs, run_float, run_int8
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization
from edgeopt.pipeline.quantize.sensitivity import sqnr_db
from edgeopt.pipeline.target import Target
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.per_tensor import collapsing_graph, images

PER_TENSOR = "snapdragon-845-hexagon-dsp"  # per-tensor weights, MINIMUM on the DSP


@pytest.fixture(scope="module")
def graph() -> Graph:
    return collapsing_graph()


def _int8_sqnr(graph: Graph, reference: Graph, profile: str = PER_TENSOR) -> float:
    target = Target(load_profile(profile))
    program = target.ship(target.quantize(graph, target.ranges(graph, images(0, 64)))).program
    x = images(1, 96)
    return sqnr_db(run_float(reference, x), run_int8(program, x))


def test_the_depthwise_ranges_differ_by_two_orders_of_magnitude(graph: Graph) -> None:
    dw = next(n for n in graph.nodes if n.op == "Conv" and n.attrs.get("group", 1) > 1)
    w = np.abs(graph.initializers[dw.inputs[1]]).reshape(16, -1).max(1)
    assert w.max() / w.min() >= 100
    assert all(n.attrs.get("fused_activation") == "Relu6" for n in graph.nodes)


def test_clip_keeps_float_outputs_where_the_clip_is_active(graph: Graph) -> None:
    out = cross_layer_equalization(graph, relu6="clip")
    mins = [n for n in out.nodes if n.op == "Min"]
    assert len(mins) == 3  # stem, pointwise and depthwise: every ReLU6 before a pair
    x = images(2, 32) * 3  # large inputs: the ReLU6 ceilings are reached
    stats = calibrate(out, x)
    active = [float(stats[m.inputs[0]].max) > float(out.initializers[m.inputs[1]].min()) for m in mins]
    assert any(active), "some channel's ceiling clips"
    want = run_float(graph, x)
    np.testing.assert_allclose(run_float(out, x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_per_tensor_collapse_and_recovery(graph: Graph) -> None:
    per_channel = _int8_sqnr(graph, graph, "arm-cortex-a78-xnnpack")
    minmax = _int8_sqnr(graph, graph)
    exact = _int8_sqnr(cross_layer_equalization(graph, relu6="exact"), graph)
    clip = _int8_sqnr(cross_layer_equalization(graph, relu6="clip"), graph)
    # Per-tensor min/max: over 10 dB (10x the noise power) below per-channel; the provable rule scales
    # nothing useful; the clip recovers most of it.
    assert minmax < per_channel - 10, (minmax, per_channel)
    assert exact < minmax + 2, (exact, minmax)
    assert clip > minmax + 8 and clip > per_channel - 5, (clip, minmax, per_channel)


def test_the_minimum_program_is_bit_exact_with_builtin_ref(graph: Graph, tmp_path) -> None:
    out = cross_layer_equalization(graph, relu6="clip")
    target = Target(load_profile(PER_TENSOR))
    program = target.ship(target.quantize(out, target.ranges(out, images(0, 32)))).program.replace(rounding="double")
    assert "MINIMUM" in [op.kind for op in program.ops]
    path = write_tflite(program, tmp_path / "m.tflite")
    q = program_inputs(program, images(3, 8) * 2)[0]
    np.testing.assert_array_equal(run_program(program, [q])[0], LiteRT(path, kernels="reference").run([q])[0])


def test_the_dsp_runs_the_equalized_program(graph: Graph) -> None:
    out = cross_layer_equalization(graph, relu6="clip")
    target = Target(load_profile(PER_TENSOR))
    shipped = target.ship(target.quantize(out, target.ranges(out, images(0, 16))))
    units = {(p.kind, p.unit_kind) for p in shipped.placement.ops}
    assert units == {("CONV_2D", "npu"), ("DEPTHWISE_CONV_2D", "npu"), ("MINIMUM", "npu")}, units
    convs = [op for op in shipped.program.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    for op in convs:  # one weight scale per tensor
        assert len(shipped.program.tensor(op.inputs[1]).qparams.scale) == 1


def test_quantsim_of_the_equalized_graph_equals_the_executor(graph: Graph) -> None:
    import torch

    from edgeopt.torch.quantsim import simulate

    out = cross_layer_equalization(graph, relu6="clip")
    target = Target(load_profile(PER_TENSOR))
    qgraph = target.quantize(out, target.ranges(out, images(0, 32)))
    program = target.ship(qgraph).program
    x = images(4, 8) * 2
    with torch.no_grad():
        sim = simulate(qgraph, target, rounding=target.rounding)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sim, run_int8(program, x), rtol=0, atol=1e-6)
