"""AdaRound: lower layer reconstruction error than nearest rounding, and its integers reach the .tflite."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ai_edge_litert.interpreter import Interpreter
from onnx import helper

from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import quantize_input
from edgeopt.pipeline.frontend.load import load, onnx_to_graph
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig, _layer, adaround
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.onnx_models import conv_bn_relu6, model

FAST = AdaRoundConfig(iterations=100, samples=32, positions=512)


@pytest.fixture(scope="module", params=[8, 4], ids=["w8", "w4"])
def rounded(request, tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("adaround") / "m.onnx"
    path.write_bytes(conv_bn_relu6(rng, cin=8, cout=16).SerializeToString())
    graph = optimize(load(str(path)).graph)
    # Channels mixed from 2 sources: correlated inputs, as in real feature maps. (With i.i.d. inputs,
    # E[(ΔW·x)²] = |ΔW|², which nearest rounding already minimises: AdaRound could only overfit.)
    mix = rng.normal(size=(8, 2))
    x = (np.einsum("ck,nkhw->nchw", mix, rng.normal(size=(32, 2, 8, 8)))
         + 0.1 * rng.normal(size=(32, 8, 8, 8))).astype(np.float32)
    stats = calibrate(graph, x)
    qgraph = quantize_minmax(graph, stats, weight_bits=request.param)
    result = adaround(qgraph, x, FAST)
    final = quantize_minmax(result.graph, stats, weight_bits=request.param, weight_encodings=result.weight_encodings)
    return request.param, qgraph, result, final, x


def test_adaround_lowers_reconstruction_error(rounded):
    bits, _, result, _, _ = rounded
    assert [layer.node for layer in result.layers] == ["conv", "fc"]
    for layer in result.layers:  # errors on held-out positions; a layer AdaRound did not improve keeps nearest
        assert layer.iterations <= FAST.iterations
        assert layer.kept_nearest == (layer.adaround_mse >= layer.nearest_mse)
        assert layer.kept_nearest == (layer.flipped == 0)
    if bits == 4:  # where weight rounding error dominates, AdaRound's gain on unseen positions is large
        conv = result.layers[0]
        assert not conv.kept_nearest and conv.adaround_mse < 0.6 * conv.nearest_mse, conv


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


@pytest.mark.parametrize("cin,cout,kernel,attrs", [
    (4, 6, 3, {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    (4, 6, 3, {"pads": [2, 0, 1, 2], "dilations": [2, 2]}),
    (6, 6, 5, {"group": 6, "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    (4, 6, 3, {"group": 2, "auto_pad": "SAME_LOWER", "strides": [2, 1]}),
    (4, 6, 1, {}),
], ids=["stride", "dilation", "depthwise-same-upper", "grouped-same-lower", "pointwise"])
def test_patches_reproduce_the_convolution(cin, cout, kernel, attrs):
    """The im2col rows AdaRound caches, times the weight, are the float Conv's output at those positions."""
    rng = np.random.default_rng(0)
    groups = attrs.get("group", 1)
    w = rng.normal(size=(cout, cin // groups, kernel, kernel)).astype(np.float32)
    b = rng.normal(size=cout).astype(np.float32)
    x = rng.normal(size=(1, cin, 9, 11)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **attrs)
    graph = onnx_to_graph(model([node], {"w": w, "b": b}, [1, cin, 9, 11], [1, cout, "H", "W"]), "m", None)
    lay = _layer(graph.nodes[0], graph)
    top, left, bottom, right = lay.pads
    padded = F.pad(torch.from_numpy(x), (left, right, top, bottom))
    want = F.conv2d(padded, torch.from_numpy(w), torch.from_numpy(b), attrs.get("strides", [1, 1]), 0,
                    attrs.get("dilations", [1, 1]), groups)
    assert tuple(want.shape[2:]) == lay.out_hw == tuple(graph.shape("y")[2:])
    where = rng.choice(lay.per_sample, 7, replace=False)
    got = lay.forward(torch.from_numpy(lay.patches(x, where).astype(np.float32)), torch.from_numpy(lay.to_gok(w)))
    np.testing.assert_allclose(got.numpy(), want.flatten(2)[0].T[where].numpy(), rtol=1e-5, atol=1e-5)
