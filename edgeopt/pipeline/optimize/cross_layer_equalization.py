"""Cross-layer equalization with high-bias absorption (Nagel et al. 2019, "Data-Free Quantization Through
Weight Equalization and Bias Correction", sections 4.1 and 4.2).

Equalization. Two weighted layers ``y = W2 f(W1 x + b1) + b2`` joined by a tensor that only ``W2`` reads,
with ``f`` the identity, ReLU or ReLU6 (the first layer's ``fused_activation``), compute the same function
after ``W1[i] /= s_i``, ``b1[i] /= s_i``, ``W2[:, i] *= s_i`` for any ``s_i > 0`` whenever
``f(z / s) = f(z) / s`` (identity and ReLU: always). With ``r1_i`` the range (max |w|) of output channel
``i`` of ``W1`` and ``r2_i`` that of input channel ``i`` of ``W2``, ``s_i = sqrt(r1_i * r2_i) / r2_i`` makes
both ``sqrt(r1_i * r2_i)``: the channel ranges of the two layers become equal, which is what per-tensor
weight quantization needs. Pairs are Conv (group 1 or depthwise with multiplier 1) and Gemm, so a
pointwise → depthwise → pointwise block is two pairs sharing the depthwise layer; pairs that share a
layer are iterated until every scale is within ``tol`` of 1.

ReLU6. ``W2 s * relu6(z / s) = W2 clip(z, 0, 6 s)``: scaling across ReLU6 moves its ceiling, so it is not
exact in general. Policies (``relu6=``):

* ``"exact"`` (default; strictly more than AIMET, which stopped scaling across ReLU6): a channel is
  scaled only where scaling provably changes nothing. When the first layer's input is itself a ReLU6
  output (in ``[0, 6]``), interval arithmetic bounds its pre-activation ``z_i <= U_i = b1_i + 6 *
  sum(max(W1[i], 0))`` (zero padding stays inside ``[0, 6]``). If ``U_i <= 6`` the ReLU6 never saturates
  on that channel and ``clip(z, 0, 6 s)`` equals ``clip(z, 0, 6)`` for every ``s >= U_i / 6``, so ``s_i``
  is clamped to that bound; channels with ``U_i > 6`` (or unbounded input) keep ``s_i = 1``. Float
  outputs are preserved exactly (up to float rounding) for every input.
* ``"clip"``: the ReLU6 of every pair becomes a ReLU followed by a per-channel ceiling, an ONNX ``Min``
  with the constant ``6 / S_i`` (``S_i``: the product of the scales channel ``i`` was divided by), lowered
  to TFLite's MINIMUM. Then ``W2 s * min(relu(z / s), 6 / s) = W2 relu6(z)``: exact for every input, and
  channels are scaled as freely as across a ReLU. The price is one MINIMUM per scaled ReLU6 (an
  elementwise op the cost model charges for its bytes), and the ReLU's output, which the MINIMUM reads,
  is quantized over its unclipped range. A pair whose scales all stay 1 keeps its ReLU6.
* ``"relu"`` (the paper's choice for MobileNetV2): ReLU6 becomes ReLU on the pairs that are scaled, then
  scaling is free. Outputs change wherever a pre-activation exceeded 6.
* ``"skip"``: AIMET's current behaviour, no scaling across ReLU6.

High-bias absorption. When the first layer carries the statistics of a folded batch norm (``bn_beta``,
``bn_gamma``: its pre-activation is ~N(beta, gamma^2)) and ``f`` is ReLU or the identity,
``c_i = max(0, beta_i - 3 gamma_i)`` is moved from ``b1`` to ``b2 += W2 c`` (summed over the kernel).
This is exact while ``z_i >= c_i`` (99.87 % of a normal channel), and shrinks the activation range.
Without the statistics (a model without batch norm, or a graph not folded by ``fold_batch_norm``) it is
skipped. It is also skipped into a second layer with zero padding (padded positions would miss ``c``)
and across ReLU6 (``relu6(z) != relu6(z - c) + c``).

Run it after ``fold_batch_norm`` and ``fuse_activation``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo, weight_out_axis
from edgeopt.pipeline.optimize import PASSES

ACTIVATIONS = (None, "Relu", "Relu6")
RELU6_POLICIES = ("exact", "clip", "relu", "skip")
RELU6_CEILING = 6.0
HIGH_BIAS_SIGMAS = 3.0


@dataclass(frozen=True)
class _Pair:
    first: str  # node names: nodes are rebuilt as the pass goes, names stay
    second: str


def _kind(node: Node, graph: Graph) -> str | None:
    """"conv", "depthwise" or "gemm" when ``node`` is a layer CLE can scale, else None."""
    if len(node.inputs) < 2 or node.inputs[1] not in graph.initializers:
        return None
    if node.op == "Gemm":
        ok = not node.attrs.get("transA", 0) and node.attrs.get("alpha", 1.0) == 1.0 and node.attrs.get("beta", 1.0) == 1.0
        return "gemm" if ok else None
    if node.op != "Conv":
        return None
    w = graph.initializers[node.inputs[1]]
    group = node.attrs.get("group", 1)
    if group == 1:
        return "conv"
    if group == w.shape[0] and w.shape[1] == 1:
        return "depthwise"
    return None


def _in_axis(node: Node, kind: str) -> int:
    if kind == "depthwise":
        return 0  # filter i reads input channel i only
    return 1 - weight_out_axis(node)  # a Conv's or Gemm's 2 leading axes: one output, one input


def _channel_absmax(w: np.ndarray, axis: int) -> np.ndarray:
    return np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis)).astype(np.float64)


def _bcast(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def find_pairs(graph: Graph) -> list[tuple[Node, Node]]:
    """(first, second) layer pairs CLE can equalize, in graph order."""
    pairs = []
    for first in graph.nodes:
        if _kind(first, graph) is None or first.attrs.get("fused_activation") not in ACTIVATIONS:
            continue
        out = first.outputs[0]
        consumers = graph.consumers(out)
        if len(consumers) != 1 or graph.is_output(out):
            continue
        second = consumers[0]
        if _kind(second, graph) is None or second.inputs[0] != out or out in second.inputs[1:]:
            continue
        if (first.op == "Gemm") != (second.op == "Gemm"):
            continue  # a 4-D conv output cannot feed a Gemm directly
        pairs.append((first, second))
    return pairs


class _Weights:
    """Mutable float64 copies of the weights, biases and batch-norm statistics the pass rewrites."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes = {n.name: n for n in graph.nodes}
        self.w: dict[str, np.ndarray] = {}
        self.b: dict[str, np.ndarray] = {}
        self.beta: dict[str, np.ndarray] = {}
        self.gamma: dict[str, np.ndarray] = {}
        self.activation: dict[str, str | None] = {}
        self.ceiling: dict[str, np.ndarray] = {}  # "clip": per-channel ceiling of a ReLU6 turned ReLU

    def load(self, name: str) -> None:
        if name in self.w:
            return
        node = self.nodes[name]
        w = self.graph.initializers[node.inputs[1]].astype(np.float64)
        self.w[name] = w
        has_bias = len(node.inputs) > 2 and node.inputs[2]
        c_out = w.shape[weight_out_axis(node)]
        self.b[name] = self.graph.initializers[node.inputs[2]].astype(np.float64) if has_bias else np.zeros(c_out)
        if "bn_beta" in node.attrs:
            self.beta[name] = np.array(node.attrs["bn_beta"], np.float64)
            self.gamma[name] = np.array(node.attrs["bn_gamma"], np.float64)
        self.activation[name] = node.attrs.get("fused_activation")

    def scale_output(self, name: str, s: np.ndarray) -> None:
        node = self.nodes[name]
        w = self.w[name]
        self.w[name] = w / _bcast(s, w.ndim, weight_out_axis(node))
        self.b[name] = self.b[name] / s
        if name in self.beta:
            self.beta[name] = self.beta[name] / s
            self.gamma[name] = self.gamma[name] / s
        if name in self.ceiling:
            self.ceiling[name] = self.ceiling[name] / s

    def scale_input(self, name: str, s: np.ndarray) -> None:
        node = self.nodes[name]
        w = self.w[name]
        self.w[name] = w * _bcast(s, w.ndim, _in_axis(node, _kind(node, self.graph)))


def _relu6_bound(weights: _Weights, first: Node, graph: Graph) -> np.ndarray:
    """Per-channel upper bound of ``first``'s pre-activation when its input lies in [0, 6], else inf."""
    producer = graph.producer(first.inputs[0])
    c_out = weights.b[first.name].shape[0]
    activation = None if producer is None else weights.activation.get(producer.name, producer.attrs.get("fused_activation"))
    if activation != "Relu6":
        return np.full(c_out, np.inf)
    w = weights.w[first.name]
    axis = weight_out_axis(first)
    positive = np.moveaxis(np.maximum(w, 0.0), axis, 0).reshape(c_out, -1).sum(axis=1)
    return weights.b[first.name] + 6.0 * positive


def _scales(weights: _Weights, first: Node, second: Node, graph: Graph, relu6: str) -> np.ndarray:
    r1 = _channel_absmax(weights.w[first.name], weight_out_axis(first))
    r2 = _channel_absmax(weights.w[second.name], _in_axis(second, _kind(second, graph)))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 * r2) / r2, 1.0)
    if weights.activation[first.name] == "Relu6":
        if relu6 == "skip":
            return np.ones_like(s)
        if relu6 == "exact":
            bound = _relu6_bound(weights, first, graph)
            # Exact iff the channel never saturates before or after: bound <= 6 and s >= bound / 6.
            s = np.where(bound <= 6.0, np.maximum(s, bound / 6.0), 1.0)
    return s


@PASSES.register("cross_layer_equalization")
def cross_layer_equalization(graph: Graph, *, relu6: str = "exact", absorb_high_bias: bool = True,
                             tol: float = 1e-4, max_iterations: int = 100) -> Graph:
    """Equalize the weight ranges of every CLE pair of ``graph``, then absorb high biases.

    Args:
        graph: a float graph, batch norms folded and activations fused.
        relu6: how to treat a ReLU6 between the two layers: "exact", "clip", "relu" or "skip" (module
            docstring).
        absorb_high_bias: move ``max(0, beta - 3 gamma)`` into the next layer where batch-norm
            statistics are recorded.
        tol: stop when every scale of an iteration is within ``tol`` of 1 (relative).
        max_iterations: at most this many sweeps over all pairs.

    Returns:
        A new graph with new weight and bias initializers (``<node>.weight_cle`` / ``<node>.bias_cle``).

    Raises:
        ValueError: ``relu6`` is not one of "exact", "clip", "relu", "skip".
    """
    if relu6 not in RELU6_POLICIES:
        raise ValueError(f"relu6 must be one of {RELU6_POLICIES}, not {relu6!r}")
    pairs = find_pairs(graph)
    if not pairs:
        return graph
    weights = _Weights(graph)
    for first, second in pairs:
        weights.load(first.name)
        weights.load(second.name)
        if relu6 in ("relu", "clip") and weights.activation[first.name] == "Relu6":
            weights.activation[first.name] = "Relu"
            if relu6 == "clip":
                weights.ceiling[first.name] = np.full(weights.b[first.name].shape, RELU6_CEILING)
    for _ in range(max_iterations):
        worst = 0.0
        for first, second in pairs:
            s = _scales(weights, first, second, graph, relu6)
            weights.scale_output(first.name, s)
            weights.scale_input(second.name, s)
            worst = max(worst, float(np.abs(np.log(s)).max(initial=0.0)))
        if worst < tol:
            break
    if absorb_high_bias:
        for first, second in pairs:
            _absorb_high_bias(weights, first, second, graph)
    return _rebuild(graph, weights)


def _absorb_high_bias(weights: _Weights, first: Node, second: Node, graph: Graph) -> None:
    if first.name not in weights.beta or weights.activation[first.name] not in (None, "Relu") \
            or first.name in weights.ceiling:  # min(relu(z - c) + c, C) is not min(relu(z), C)
        return
    if any(second.attrs.get("pads", ())) or second.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return
    c = np.maximum(0.0, weights.beta[first.name] - HIGH_BIAS_SIGMAS * weights.gamma[first.name])
    if not c.any():
        return
    weights.b[first.name] = weights.b[first.name] - c
    weights.beta[first.name] = weights.beta[first.name] - c
    w2 = weights.w[second.name]
    kind = _kind(second, graph)
    in_axis, out_axis = _in_axis(second, kind), weight_out_axis(second)
    if kind == "depthwise":
        shift = c * w2.reshape(w2.shape[0], -1).sum(axis=1)
    else:
        per_pair = np.moveaxis(w2, (out_axis, in_axis), (0, 1)).reshape(w2.shape[out_axis], w2.shape[in_axis], -1)
        shift = per_pair.sum(axis=2) @ c
    weights.b[second.name] = weights.b[second.name] + shift


def _rebuild(graph: Graph, weights: _Weights) -> Graph:
    inits, tensors = dict(graph.initializers), dict(graph.tensors)
    nodes = []
    for node in graph.nodes:
        if node.name not in weights.w:
            nodes.append(node)
            continue
        ceiling = weights.ceiling.get(node.name)
        if ceiling is not None and np.allclose(ceiling, RELU6_CEILING, rtol=1e-6):
            weights.activation[node.name], ceiling = "Relu6", None  # never scaled: the ReLU6 stays
        w_name, b_name = f"{node.name}.weight_cle", f"{node.name}.bias_cle"
        inits[w_name] = weights.w[node.name].astype(np.float32)
        inits[b_name] = weights.b[node.name].astype(np.float32)
        attrs: dict = {}
        if node.name in weights.beta:
            attrs = {"bn_beta": tuple(map(float, weights.beta[node.name])),
                     "bn_gamma": tuple(map(float, weights.gamma[node.name]))}
        if weights.activation[node.name] is not None:
            attrs["fused_activation"] = weights.activation[node.name]
        if ceiling is None:
            nodes.append(node.with_(inputs=(node.inputs[0], w_name, b_name), attrs=attrs))
            continue
        # "clip": relu(W1 x / s) then min with 6 / S per channel, written where the ReLU6 wrote.
        out = node.outputs[0]
        unclipped, c_name = f"{out}/unclipped", f"{node.name}.relu6_ceiling"
        rank = len(graph.shape(out))
        inits[c_name] = ceiling.astype(np.float32).reshape((1, -1) + (1,) * (rank - 2))
        tensors[unclipped] = TensorInfo(unclipped, graph.shape(out))
        nodes.append(node.with_(inputs=(node.inputs[0], w_name, b_name), outputs=(unclipped, *node.outputs[1:]),
                                attrs=attrs))
        nodes.append(Node("Min", f"{node.name}/relu6_ceiling", (unclipped, c_name), (out,)))
    return graph.replace(nodes=tuple(nodes), initializers=inits, tensors=tensors).without_unused_initializers()

