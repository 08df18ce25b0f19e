"""Rewrite a BatchNormalization that no Conv/Gemm absorbs as a per-channel Mul and Add.

An inference batch norm is the per-channel affine map ``y = x * s + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``. ``fold_batch_norm`` folds it into the
Conv/Gemm that writes its input; one without such a producer (DenseNet's batch norm reading a Concat,
RepVGG's identity branch reading the block input) stays, and TFLite has no int8 kernel for it. TensorFlow's
converter writes it as MUL and ADD with constant operands; here it becomes ``Mul(x, s)`` → ``Add(., t)``
with ``s`` and ``t`` of shape ``[C, 1, ..., 1]``, broadcast over ``[N, C, ...]``, which the elementwise
lowering turns into MUL and ADD, and ``fuse_activation`` can fuse a following Relu into the Add.

Run it after ``fold_batch_norm``, so that foldable batch norms still fold. A batch norm in training mode,
with computed statistics, or whose statistics are not one value per channel is left alone.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo
from edgeopt.pipeline.optimize import PASSES


@PASSES.register("batch_norm_as_mul_add")
def batch_norm_as_mul_add(graph: Graph) -> Graph:
    """``graph`` with every inference BatchNormalization of constant statistics as Mul → Add (see the module)."""
    targets = [n for n in graph.nodes if _is_affine(n, graph)]
    if not targets:
        return graph
    inits = dict(graph.initializers)
    tensors = dict(graph.tensors)
    nodes = list(graph.nodes)
    for bn in targets:
        x, y = bn.inputs[0], bn.outputs[0]
        gamma, beta, mean, var = (graph.initializers[t].astype(np.float64) for t in bn.inputs[1:5])
        scale = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        shift = beta - mean * scale
        # One value per channel on axis 1, aligned to the input's rank so ONNX's right-aligned broadcasting
        # applies it along C of [N, C, ...].
        shape = (-1,) + (1,) * (len(graph.shape(x)) - 2)
        s_name, t_name, scaled = f"{bn.name}.scale", f"{bn.name}.shift", f"{bn.name}.scaled"
        inits[s_name] = scale.astype(np.float32).reshape(shape)
        inits[t_name] = shift.astype(np.float32).reshape(shape)
        tensors[scaled] = TensorInfo(scaled, graph.shape(x), graph.tensors[x].dtype)
        index = nodes.index(bn)
        nodes[index:index + 1] = [Node("Mul", f"{bn.name}.mul", (x, s_name), (scaled,)),
                                  Node("Add", f"{bn.name}.add", (scaled, t_name), (y,))]
    return graph.replace(nodes=tuple(nodes), initializers=inits, tensors=tensors).without_unused_initializers()


def _is_affine(node: Node, graph: Graph) -> bool:
    """Whether ``node`` is a batch norm in inference mode with constant per-channel statistics."""
    if (node.op != "BatchNormalization" or node.attrs.get("training_mode", 0)
            or any(node.outputs[1:])  # running mean/var outputs (opsets before 14) are training outputs
            or not all(t in graph.initializers for t in node.inputs[1:5])
            or node.inputs[0] not in graph.tensors or graph.tensors[node.inputs[0]].dtype != "float32"):
        return False
    shape = graph.shape(node.inputs[0])
    # ``spatial=0`` (opsets before 9) keeps statistics per element, not per channel.
    return len(shape) >= 2 and all(graph.initializers[t].shape == (shape[1],) for t in node.inputs[1:5])
