"""Least-squares re-fit of one compressed layer's weights and bias against the uncompressed model's output.

Channel pruning re-fits every layer that lost input channels (``channel_pruning.reconstruct``); a spatial
or weight SVD re-fits the second layer of its pair (``refit_decomposition``): the first factor is kept as
the SVD gives it, and the second, which is linear in its weights given the first's outputs, is solved so
that on the calibration data the pair reproduces the uncompressed layer's output from the inputs the
compressed model gives it (Zhang et al. 2016, "Accelerating very deep convolutional networks for
classification and detection": reconstructing the responses rather than the weights, which at low
ranks loses far less). A re-fit that does not beat the layer's own weights on held-out calibration
images is not taken.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node
from edgeopt.pipeline.compress.layers import activations, conv_geometry, node_by_name

MAX_ROWS = 16384  # least-squares rows (output positions) sampled from the calibration data
RIDGE = 1e-6      # relative Tikhonov term: keeps the normal equations well posed for dead channels


def refit_layer(graph: Graph, node: Node, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Graph:
    """``graph`` with ``node``'s weight and bias re-fitted by least squares to map its input ``x`` to ``y``
    (its remaining output channels, NCHW for a Conv), or unchanged when the fit does not beat its own
    weights on held-out images (``_fit``)."""
    fit = _fit(graph, node, x, y, rng)
    if fit is None:
        return graph
    inits = dict(graph.initializers)
    w_name, b_name = f"{node.name}.refit_weight", f"{node.name}.refit_bias"
    inits[w_name], inits[b_name] = fit
    nodes = [node.with_(inputs=(node.inputs[0], w_name, b_name)) if n is node else n for n in graph.nodes]
    return graph.replace(nodes=tuple(nodes), initializers=inits).without_unused_initializers()


def refit_decomposition(decomposed: Graph, before: Graph, reference: Graph, name: str, x: np.ndarray) -> Graph:
    """``decomposed`` (``before`` with layer ``name`` split by ``svd.decompose``) with the pair's second layer
    re-fitted on the calibration inputs ``x``: to the layer's output in ``reference`` (the uncompressed
    model) when that tensor has the same shape there, else in ``before``. A MatMul (no bias input) or a
    layer with a fused activation (its pre-activation output is no tensor to fit) is left as decomposed."""
    second = node_by_name(decomposed, f"{name}.svd1")
    if second.op not in ("Conv", "Gemm") or "fused_activation" in second.attrs or (
            second.op == "Conv" and conv_geometry(second) is None):
        return decomposed
    out = second.outputs[0]
    target = reference if out in reference.tensors and reference.shape(out) == before.shape(out) else before
    y = activations(target, x, [out])[out]
    return refit_layer(decomposed, second, activations(decomposed, x, [second.inputs[0]])[second.inputs[0]], y,
                       np.random.default_rng(0))


def _fit(graph: Graph, node: Node, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray] | None:
    """Least-squares weight (in the node's layout) and bias mapping input ``x`` to output ``y``, or None
    when a re-fit does not map it closer to ``y`` than the node's own (cut) weight and bias.

    The check is made on held-out images: a re-fit on the even-numbered images of the batch must beat the
    cut weights on the odd-numbered ones (a fit with about as many unknowns as rows, such as a classifier
    re-fit on a few dozen images, only learns the batch). The weights returned are fitted on every image.
    """
    w = graph.initializers[node.inputs[1]]
    if node.op == "Conv":
        patches = im2col(x, node, w.shape[2:])
        rows = y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])
    else:
        patches, rows = x.reshape(len(x), -1), y.reshape(len(y), -1)
    image = np.arange(len(patches)) // (len(patches) // len(x))
    if len(patches) > MAX_ROWS:
        pick = rng.choice(len(patches), MAX_ROWS, replace=False)
        patches, rows, image = patches[pick], rows[pick], image[pick]
    a = np.concatenate([patches.astype(np.float64), np.ones((len(patches), 1))], axis=1)
    rows = rows.astype(np.float64)
    held = image % 2 == 1
    check = (~held, held) if held.any() and not held.all() else (slice(None), slice(None))
    trial = _least_squares(a[check[0]], rows[check[0]])
    a_held, rows_held = a[check[1]], rows[check[1]]
    if np.sum((a_held @ trial - rows_held) ** 2) >= np.sum((a_held @ _as_solution(graph, node) - rows_held) ** 2):
        return None
    sol = _least_squares(a, rows)
    weight, bias = sol[:-1].T, sol[-1]              # (outputs, inputs), (outputs,)
    if node.op == "Conv":
        weight = weight.reshape(w.shape)
    elif not node.attrs.get("transB", 0):
        weight = weight.T
    if node.op == "Gemm":
        weight = weight / node.attrs.get("alpha", 1.0)
        bias = bias / node.attrs.get("beta", 1.0)
    return weight.astype(np.float32), bias.astype(np.float32)


def _least_squares(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``argmin ||a s - rows||^2 + RIDGE * mean(diag(a^T a)) * ||s||^2``."""
    gram = a.T @ a
    gram += np.eye(len(gram)) * RIDGE * max(np.trace(gram) / len(gram), 1e-12)
    return np.linalg.solve(gram, a.T @ rows)


def _as_solution(graph: Graph, node: Node) -> np.ndarray:
    """The node's own weight and bias as a least-squares solution: ``(inputs + 1, outputs)``, the bias last
    (Gemm's ``alpha`` and ``beta`` applied)."""
    w = graph.initializers[node.inputs[1]].astype(np.float64)
    if node.op == "Conv":
        weight = w.reshape(w.shape[0], -1)
    else:
        weight = (w if node.attrs.get("transB", 0) else w.T) * node.attrs.get("alpha", 1.0)
    bias = np.asarray(graph.initializers.get(node.inputs[2], 0.0) if len(node.inputs) > 2 else 0.0, np.float64)
    if node.op == "Gemm":
        bias = bias * node.attrs.get("beta", 1.0)
    bias = np.broadcast_to(np.reshape(bias, -1), (weight.shape[0],))
    return np.concatenate([weight.T, bias[None, :]], axis=0)


def im2col(x: np.ndarray, node: Node, kernel: tuple[int, int]) -> np.ndarray:
    """Patches of ``x`` (N, C, H, W) as rows (one per output position), columns ordered (c, ky, kx)."""
    strides, dilations, pads = conv_geometry(node)
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (xp.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (xp.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    cols = [xp[:, :, i * dilations[0]: i * dilations[0] + (ho - 1) * strides[0] + 1: strides[0],
               j * dilations[1]: j * dilations[1] + (wo - 1) * strides[1] + 1: strides[1]]
            for i in range(kh) for j in range(kw)]
    stacked = np.stack(cols, axis=2)                                 # (N, C, KH*KW, Ho, Wo)
    return stacked.transpose(0, 3, 4, 1, 2).reshape(x.shape[0] * ho * wo, -1)
