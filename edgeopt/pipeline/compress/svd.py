"""Spatial SVD and weight SVD: one layer becomes two thinner layers of rank r (Graph → Graph).

Spatial SVD (Jaderberg et al. 2014, "Speeding up convolutional neural networks with low rank
expansions"; AIMET's spatial SVD): a KH x KW convolution with weight ``W[o, i, y, x]`` is the matrix
``M[(i, y), (o, x)]``; its truncated SVD ``M ≈ A B`` (``A = U_r sqrt(S_r)``, ``B = sqrt(S_r) V_r^T``) is a
KH x 1 convolution ``A`` (Ci → r channels, carrying the height stride, dilation and padding) followed by a
1 x KW convolution ``B`` (r → Co, carrying the width ones and the bias). At full rank
``min(Ci*KH, Co*KW)`` the pair computes the same function.

Weight SVD: a 1x1 convolution, a Gemm or a MatMul with a constant weight ``W`` (K x N) becomes
``x @ A`` (K → r) followed by ``@ B`` (r → N) with the same split of the singular values.

Only ungrouped convolutions: a grouped or depthwise weight is block-diagonal across channel groups, so
one SVD of it would mix groups (the factors are dense) and cost more than the original; a depthwise
KxK conv already spends only K*K MACs per output, so factoring it saves almost nothing.
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo
from edgeopt.pipeline.compress.layers import constant_weight, conv_geometry, node_by_name

# They describe the layer's output: of the two new nodes only the second (which writes it) keeps them.
OUTPUT_ATTRS = ("bn_beta", "bn_gamma", "fused_activation")


def svd_kind(graph: Graph, node: Node) -> str | None:
    """``"spatial"`` for an ungrouped KxK Conv, ``"weight"`` for a 1x1 Conv, a Gemm (no transA) or a
    MatMul with a constant 2-D weight; None when neither applies."""
    w = constant_weight(graph, node)
    if w is None:
        return None
    if node.op == "Conv":
        if w.ndim != 4 or node.attrs.get("group", 1) != 1 or conv_geometry(node) is None:
            return None
        return "weight" if w.shape[2:] == (1, 1) else "spatial"
    if node.op == "Gemm" and not node.attrs.get("transA", 0) and w.ndim == 2:
        return "weight"
    if node.op == "MatMul" and w.ndim == 2:
        return "weight"
    return None


def full_rank(graph: Graph, node: Node) -> int:
    """The rank at which the decomposition of ``node`` is exact."""
    w = constant_weight(graph, node)
    if svd_kind(graph, node) == "spatial":
        co, ci, kh, kw = w.shape
        return min(ci * kh, co * kw)
    return min(_weight_matrix(node, w).shape)


def macs_per_rank(graph: Graph, node: Node) -> int:
    """MACs the decomposed pair spends per unit of rank."""
    out = graph.shape(node.outputs[0])
    if svd_kind(graph, node) == "spatial":
        co, ci, kh, kw = constant_weight(graph, node).shape
        n, _, ho, wo = out
        w_in = graph.shape(node.inputs[0])[3]
        return n * ho * (w_in * ci * kh + co * wo * kw)
    k, n_out = _weight_matrix(node, constant_weight(graph, node)).shape
    return math.prod(out) // n_out * (k + n_out)


def rank_for_ratio(graph: Graph, node: Node, ratio: float, macs: int) -> int:
    """The largest rank whose pair costs at most ``ratio * macs`` MACs (at least 1, at most full rank)."""
    return max(1, min(full_rank(graph, node), int(ratio * macs // macs_per_rank(graph, node))))


def decompose(graph: Graph, name: str, rank: int) -> Graph:
    """``graph`` with node ``name`` replaced by its rank-``rank`` spatial or weight SVD pair.

    The two new nodes are ``NAME.svd0`` and ``NAME.svd1``; the second writes the original output tensor
    and keeps the node's fused activation and batch-norm statistics.
    """
    node = node_by_name(graph, name)
    kind = svd_kind(graph, node)
    if kind is None:
        raise ValueError(f"{node.op} node '{name}' cannot be decomposed")
    first, second, inits = (_spatial if kind == "spatial" else _weight)(graph, node, rank)
    mid = first.outputs[0]
    out_shape = list(graph.shape(node.outputs[0]))
    if kind == "spatial":
        mid_shape = (out_shape[0], rank, out_shape[2], graph.shape(node.inputs[0])[3])
    else:
        mid_shape = (*out_shape[:-1], rank) if node.op != "Conv" else (out_shape[0], rank, *out_shape[2:])
    nodes = list(graph.nodes)
    i = nodes.index(node)
    nodes[i:i + 1] = [first, second]
    tensors = {**graph.tensors, mid: TensorInfo(mid, tuple(mid_shape), "float32")}
    return graph.replace(nodes=tuple(nodes), initializers={**graph.initializers, **inits},
                         tensors=tensors).without_unused_initializers()


def _factors(m: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``A`` (rows x rank), ``B`` (rank x cols) with ``A @ B`` the best rank-``rank`` approximation of ``m``."""
    u, s, vt = np.linalg.svd(m.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    return u[:, :rank] * root, root[:, None] * vt[:rank]


def _spatial(graph: Graph, node: Node, rank: int) -> tuple[Node, Node, dict[str, np.ndarray]]:
    w = constant_weight(graph, node)
    co, ci, kh, kw = w.shape
    strides, dilations, pads = conv_geometry(node)
    a, b = _factors(w.transpose(1, 2, 0, 3).reshape(ci * kh, co * kw), rank)
    wa = a.reshape(ci, kh, rank).transpose(2, 0, 1)[..., None]          # (r, Ci, KH, 1)
    wb = b.reshape(rank, co, kw).transpose(1, 0, 2)[:, :, None, :]      # (Co, r, 1, KW)
    mid, wa_name, wb_name = f"{node.name}.svd_mid", f"{node.name}.svd0.weight", f"{node.name}.svd1.weight"
    base = {k: v for k, v in node.attrs.items() if k not in (*OUTPUT_ATTRS, "auto_pad")}
    first = Node("Conv", f"{node.name}.svd0", (node.inputs[0], wa_name), (mid,), {
        **{k: v for k, v in base.items() if k not in ("pads", "strides", "dilations", "kernel_shape")},
        "kernel_shape": [kh, 1], "strides": [strides[0], 1], "dilations": [dilations[0], 1],
        "pads": [pads[0], 0, pads[2], 0]})
    second = Node("Conv", f"{node.name}.svd1", (mid, wb_name, *node.inputs[2:]), node.outputs, {
        **{k: v for k, v in node.attrs.items() if k not in ("pads", "strides", "dilations", "kernel_shape",
                                                             "auto_pad")},
        "kernel_shape": [1, kw], "strides": [1, strides[1]], "dilations": [1, dilations[1]],
        "pads": [0, pads[1], 0, pads[3]]})
    return first, second, {wa_name: wa.astype(np.float32), wb_name: wb.astype(np.float32)}


def _weight_matrix(node: Node, w: np.ndarray) -> np.ndarray:
    """The weight as K x N (input features x outputs), Gemm's alpha included."""
    if node.op == "Conv":
        return w[:, :, 0, 0].T
    if node.op == "Gemm":
        return (w.T if node.attrs.get("transB", 0) else w) * node.attrs.get("alpha", 1.0)
    return w


def _weight(graph: Graph, node: Node, rank: int) -> tuple[Node, Node, dict[str, np.ndarray]]:
    a, b = _factors(_weight_matrix(node, constant_weight(graph, node)), rank)   # (K, r), (r, N)
    mid, wa_name, wb_name = f"{node.name}.svd_mid", f"{node.name}.svd0.weight", f"{node.name}.svd1.weight"
    kept = {k: v for k, v in node.attrs.items() if k not in OUTPUT_ATTRS}
    if node.op == "Conv":
        wa, wb = a.T[:, :, None, None], b.T[:, :, None, None]
        first = Node("Conv", f"{node.name}.svd0", (node.inputs[0], wa_name), (mid,), kept)
        second_attrs = {k: v for k, v in node.attrs.items() if k not in ("pads", "strides", "dilations",
                                                                          "auto_pad")}
    elif node.op == "Gemm":
        wa, wb = a.T, b.T   # Gemm with transB=1 reads (N, K), as torch's Linear writes it
        first = Node("Gemm", f"{node.name}.svd0", (node.inputs[0], wa_name), (mid,), {"transB": 1})
        second_attrs = {**{k: v for k, v in node.attrs.items() if k != "alpha"}, "transB": 1}
    else:
        wa, wb = a, b
        first = Node("MatMul", f"{node.name}.svd0", (node.inputs[0], wa_name), (mid,))
        second_attrs = dict(node.attrs)
    second = Node(node.op, f"{node.name}.svd1", (mid, wb_name, *node.inputs[2:]), node.outputs, second_attrs)
    return first, second, {wa_name: wa.astype(np.float32), wb_name: wb.astype(np.float32)}
