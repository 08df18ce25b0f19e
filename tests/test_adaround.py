"""AdaRound: lower layer reconstruction error than nearest rounding, and its integers reach the .tflite."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import quantize_input
from edgeopt.pipeline.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize import quantize_minmax
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig, adaround
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.onnx_models import conv_bn_relu6

FAST = AdaRoundConfig(iterations=200, samples=64, batch_size=16)


@pytest.fixture(scope="module", params=[8, 4], ids=["w8", "w4"])
def rounded(request, tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("adaround") / "m.onnx"
    path.write_bytes(conv_bn_relu6(rng, cin=8, cout=16).SerializeToString())
    graph = optimize(load(str(path)).graph)
    x = rng.normal(size=(64, 8, 8, 8)).astype(np.float32)
    stats = calibrate(graph, x)
    qgraph = quantize_minmax(graph, stats, weight_bits=request.param)
    result = adaround(qgraph, x, FAST)
    final = quantize_minmax(result.graph, stats, weight_bits=request.param, weight_encodings=result.weight_encodings)
    return request.param, qgraph, result, final, x


def test_adaround_lowers_reconstruction_error(rounded):
    bits, _, result, _, _ = rounded
    assert [layer.node for layer in result.layers] == ["conv", "fc"]
    for layer in result.layers:
        assert layer.iterations <= FAST.iterations
        assert layer.kept_nearest or layer.adaround_mse < layer.nearest_mse
    conv = result.layers[0]
    assert conv.adaround_mse < conv.nearest_mse and conv.flipped > 0 and not conv.kept_nearest


def test_adaround_integers_survive_the_export(rounded):
    bits, qgraph, result, final, x = rounded
    qmax = 2 ** (bits - 1) - 1
    program = lower(final, rounding="double")
    tflite = program_to_tflite(program)
    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    by_name = {d["name"]: d["index"] for d in interp.get_tensor_details()}
    for w_name, enc in result.weight_encodings.items():
        assert enc.same_as(final.encodings[w_name])
        q = enc.quantize(result.graph.initializers[w_name])
        assert np.abs(q).max() <= qmax
        stored = interp.get_tensor(by_name[w_name])
        want = q.transpose(0, 2, 3, 1) if q.ndim == 4 else q  # CONV_2D stores OHWI
        np.testing.assert_array_equal(stored, want)
    # The file runs bit-exactly with the program that the executor runs.
    qx = quantize_input(program, x[:16])
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([qx])[0], run_program(program, [qx])[0])
