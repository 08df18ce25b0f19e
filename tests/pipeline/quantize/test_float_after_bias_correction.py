"""Layers sent to float after bias correction (or AdaRound) run with the float model's weights and biases:
sending more layers to float never lowers accuracy against the all-int8 program (issue 14: the recipe's
mixed-precision steps kept biases corrected for int8 weights in float layers, down to 0.2 % top-1)."""
from __future__ import annotations

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.evaluate import run_float, run_int8
from edgeopt.pipeline.quantize.bias_correction import empirical_bias_correction
from edgeopt.pipeline.quantize.float_plan import with_float_weights
from edgeopt.pipeline.quantize.precision import apply_precision
from edgeopt.pipeline.quantize.sensitivity import sqnr_db
from edgeopt.pipeline.target import Target
from tests.builders.per_tensor import collapsing_graph, images


def test_float_layers_after_bias_correction_never_lower_accuracy() -> None:
    graph = collapsing_graph()
    target = Target(load_profile("snapdragon-845-hexagon-dsp"))  # per-tensor weights: large corrections
    calib, x = images(0, 64), images(1, 96)
    stats = target.ranges(graph, calib)
    corrected = empirical_bias_correction(target.quantize(graph, stats), calib[:32])
    want = run_float(graph, x)

    def sqnr(qgraph: QuantizedGraph) -> float:
        return sqnr_db(want, run_int8(target.ship(qgraph).program, x))

    all_int8 = sqnr(corrected)
    convs = [n.name for n in graph.nodes if n.op == "Conv"]
    for k in range(1, len(convs) + 1):
        mixed = apply_precision(corrected, stats, dict.fromkeys(convs[:k], "float"))
        assert sqnr(with_float_weights(mixed, graph)) >= all_int8 - 0.1, k
    # Every conv in float: the float model up to the int8 edges; with the corrected biases kept it is not.
    mixed = apply_precision(corrected, stats, dict.fromkeys(convs, "float"))
    fixed, stale = sqnr(with_float_weights(mixed, graph)), sqnr(mixed)
    assert fixed > all_int8 + 10 and fixed > stale + 3, (fixed, stale, all_int8)
    assert with_float_weights(corrected, graph) is corrected  # no float nodes: nothing to give back
    restored = with_float_weights(mixed, graph)
    for node in restored.graph.nodes:
        original = next(n for n in graph.nodes if n.name == node.name)
        np.testing.assert_array_equal(restored.graph.initializers[node.inputs[2]],
                                      graph.initializers[original.inputs[2]])
