"""Bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction", section 4.2): remove the mean error that quantization adds to each layer's output.

Quantized weights ``W~ = W + eps`` shift a layer's pre-activation output by ``E[eps x]`` per output
channel; because that shift is not zero mean in general, it biases every layer after it. Both variants
subtract an estimate of the shift from the layer's float bias:

* ``empirical_bias_correction`` (from calibration data): for each Conv/Gemm in graph order, the mean of
  its pre-activation output per channel in the quantized model (the QDQ model of the current
  encodings, in ONNX Runtime: quantized weights, biases and activations, float arithmetic) minus the
  same mean in the float model. Layers are corrected one after another and the quantized model is
  re-run after each, so a layer also absorbs the (mean) error its inputs accumulated upstream,
  including activation quantization error.
* ``analytical_bias_correction`` (data-free): for a layer whose input is the output of a layer that
  carries the statistics of a folded batch norm (``bn_beta``, ``bn_gamma``, recorded by
  ``fold_batch_norm``) followed by its fused ReLU/ReLU6/identity, ``E[x]`` is the mean of the clipped
  normal and the correction is ``eps E[x]`` (summed over the kernel, zero padding ignored as in the
  paper). Other layers are left as they are.

Where it sits: it needs the weight encodings, so it is a ``QuantizedGraph -> QuantizedGraph``
refinement after ``quantize_minmax`` and before lowering. Only float biases change: a bias's int32
encoding depends on the input and weight scales alone, so the encodings stay valid (a layer without
a bias gains one, encoded per the TFLite spec). Activation encodings are not re-derived: the correction
moves each channel's mean by a fraction of a quantization step of the weights, well inside the range.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import numpy as np
import onnx
from onnx import helper

from edgeopt.errors import DataError
from edgeopt.ir import Graph, Node, QuantizedGraph, weight_out_axis
from edgeopt.pipeline.emit.onnx import graph_to_onnx, quantized_to_onnx
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.runtimes.onnxruntime import OnnxRuntime

LAYER_OPS = ("Conv", "Gemm")
_CLIP = {None: (-math.inf, math.inf), "Relu": (0.0, math.inf), "Relu6": (0.0, 6.0)}


def corrected_layers(qgraph: QuantizedGraph) -> list[Node]:
    """The Conv/Gemm nodes bias correction applies to: constant, encoded weights and an encoded input."""
    g, enc = qgraph.graph, qgraph.encodings
    return [n for n in g.nodes if n.op in LAYER_OPS and len(n.inputs) > 1 and n.inputs[1] in g.initializers
            and n.inputs[1] in enc and n.inputs[0] in enc
            and not (n.op == "Gemm" and n.attrs.get("transA", 0))]


def empirical_bias_correction(qgraph: QuantizedGraph, x: np.ndarray) -> QuantizedGraph:
    """Correct every layer's bias by the measured mean output error of the quantized model on ``x``.

    Args:
        qgraph: the quantized model (float graph + encodings).
        x: calibration inputs, batch first (a few dozen samples suffice: only channel means are used).

    Returns:
        A new QuantizedGraph whose layers' float biases are corrected.

    Raises:
        DataError: ``x`` is empty.
    """
    if len(x) == 0:
        raise DataError("bias correction needs calibration data: the set is empty")
    layers = corrected_layers(qgraph)
    if not layers:
        return qgraph
    float_means = _preactivation_means(graph_to_onnx(qgraph.graph), qgraph.graph, layers, x, encoded=None)
    corrections: dict[str, np.ndarray] = {}
    for i, layer in enumerate(layers):
        current = _with_bias_corrections(qgraph, corrections)
        # Only this layer and the ones after it still need their means: expose just this layer's.
        q_mean = _preactivation_means(quantized_to_onnx(current), current.graph, [layer], x,
                                      encoded=current.encodings.keys())
        corrections[layer.name] = q_mean[layer.name] - float_means[layer.name]
    return _with_bias_corrections(qgraph, corrections)


def analytical_bias_correction(qgraph: QuantizedGraph) -> QuantizedGraph:
    """Correct the bias of each layer whose input mean is known from batch-norm statistics.

    Returns:
        A new QuantizedGraph; layers without such an input are unchanged (returned as is if none has).
    """
    g, enc = qgraph.graph, qgraph.encodings
    corrections: dict[str, np.ndarray] = {}
    for layer in corrected_layers(qgraph):
        producer = g.producer(layer.inputs[0])
        if producer is None or "bn_beta" not in producer.attrs:
            continue
        lo, hi = _CLIP[producer.attrs.get("fused_activation")]
        mean_x = clipped_normal_mean(np.array(producer.attrs["bn_beta"]), np.array(producer.attrs["bn_gamma"]), lo, hi)
        w = g.initializers[layer.inputs[1]].astype(np.float64)
        eps = enc[layer.inputs[1]].dequantize(enc[layer.inputs[1]].quantize(w)).astype(np.float64) - w
        corrections[layer.name] = _weight_error_times_mean(layer, eps, mean_x)
    return _with_bias_corrections(qgraph, corrections) if corrections else qgraph


def clipped_normal_mean(mu: np.ndarray, sigma: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``E[clip(z, lo, hi)]`` for ``z ~ N(mu, sigma^2)``, per channel (``lo``/``hi`` may be infinite)."""
    mu, sigma = np.asarray(mu, np.float64), np.maximum(np.asarray(sigma, np.float64), 1e-12)
    cdf = np.vectorize(lambda t: 0.5 * (1.0 + math.erf(t / math.sqrt(2.0))))
    pdf = lambda t: np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)  # noqa: E731
    a = (lo - mu) / sigma
    b = (hi - mu) / sigma
    cdf_a = cdf(a) if math.isfinite(lo) else np.zeros_like(mu)
    cdf_b = cdf(b) if math.isfinite(hi) else np.ones_like(mu)
    pdf_a = pdf(a) if math.isfinite(lo) else np.zeros_like(mu)
    pdf_b = pdf(b) if math.isfinite(hi) else np.zeros_like(mu)
    below = lo * cdf_a if math.isfinite(lo) else 0.0
    above = hi * (1.0 - cdf_b) if math.isfinite(hi) else 0.0
    return below + above + mu * (cdf_b - cdf_a) + sigma * (pdf_a - pdf_b)


def _weight_error_times_mean(layer: Node, eps: np.ndarray, mean_x: np.ndarray) -> np.ndarray:
    """``sum_{i,k} eps[c, i, k] E[x_i]`` per output channel ``c``."""
    if layer.op == "Gemm":
        return (eps.T if weight_out_axis(layer) else eps) @ mean_x
    group = layer.attrs.get("group", 1)
    c_out, c_in_per_group = eps.shape[:2]
    per_pair = eps.reshape(c_out, c_in_per_group, -1).sum(axis=2)
    # Output channel c of group g reads input channels g*c_in_per_group ... (g+1)*c_in_per_group - 1.
    groups_of = np.arange(c_out) // (c_out // group)
    inputs = groups_of[:, None] * c_in_per_group + np.arange(c_in_per_group)[None, :]
    return (per_pair * mean_x[inputs]).sum(axis=1)


def _preact_name(node: Node, encoded: Collection[str] | None) -> str:
    """The name of ``node``'s pre-activation output in ``emit.onnx``'s float (``encoded`` None) or QDQ model.

    The float writer names a fused op's own output ``<out>__preact``; the QDQ writer renames the float
    value of an encoded tensor ``<out>__f`` before its QuantizeLinear.
    """
    out = node.outputs[0]
    if node.attrs.get("fused_activation"):
        return f"{out}__preact"
    return f"{out}__f" if encoded is not None and out in encoded else out


def _preactivation_means(model: onnx.ModelProto, graph: Graph, layers: list[Node], x: np.ndarray,
                         encoded: Collection[str] | None) -> dict[str, np.ndarray]:
    """Per-channel means (over samples and positions) of each layer's pre-activation output."""
    names = {layer.name: _preact_name(layer, encoded) for layer in layers}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.output[:]
    for layer in layers:
        info = graph.tensors[layer.outputs[0]]
        model.graph.output.append(helper.make_tensor_value_info(names[layer.name], onnx.TensorProto.FLOAT, info.shape))
    session = OnnxRuntime(model)
    sums = {layer.name: 0.0 for layer in layers}
    count = 0
    for outputs in session.iter_run(x):
        count += 1
        for layer, value in zip(layers, outputs):
            sums[layer.name] = sums[layer.name] + _channel_mean(value.astype(np.float64))
    return {name: total / count for name, total in sums.items()}


def _channel_mean(value: np.ndarray) -> np.ndarray:
    """Mean over every axis but 1 (NC or NCHW)."""
    return value.mean(axis=tuple(i for i in range(value.ndim) if i != 1))


def _with_bias_corrections(qgraph: QuantizedGraph, corrections: Mapping[str, np.ndarray]) -> QuantizedGraph:
    """``qgraph`` with ``bias -= correction`` for each named layer (a layer without a bias gains one)."""
    if not corrections:
        return qgraph
    g = qgraph.graph
    inits, enc, nodes = dict(g.initializers), dict(qgraph.encodings), []
    for node in g.nodes:
        if node.name not in corrections:
            nodes.append(node)
            continue
        delta = corrections[node.name]
        has_bias = len(node.inputs) > 2 and node.inputs[2]
        bias = g.initializers[node.inputs[2]].astype(np.float64) if has_bias else np.zeros_like(delta)
        b_name = f"{node.name}.bias_corrected"
        inits[b_name] = (bias - delta).astype(np.float32)
        enc[b_name] = enc[node.inputs[2]] if has_bias else bias_qparams(enc[node.inputs[0]], enc[node.inputs[1]])
        nodes.append(node.with_(inputs=(node.inputs[0], node.inputs[1], b_name)))
    graph = g.replace(nodes=tuple(nodes), initializers=inits).without_unused_initializers()
    return QuantizedGraph(graph=graph, encodings={k: v for k, v in enc.items()
                                                  if k not in g.initializers or k in graph.initializers})
