"""Batch-norm statistics that survive the torch → ONNX export.

The dynamo exporter's optimizer (onnxscript's rewriter) folds every BatchNormalization into the
Conv/Gemm before it, so ``fold_batch_norm`` never sees a batch norm in an exported model and cannot
record the statistics of the folded output (``bn_beta``, ``bn_gamma``: the layer's pre-activation is
~N(beta, gamma²)) that high-bias absorption and analytical bias correction need.

They are read instead from the torch program before export: every convolution or linear layer whose
only consumer is an inference-mode batch norm gets that batch norm's ``(beta, |gamma|)``, keyed by the
layer's weight parameter name, which the exporter keeps as the ONNX initializer name (the folded
weight keeps it too). The table travels in the ONNX model's ``metadata_props`` under ``METADATA_KEY``
(valid ONNX, saved with the file), and the frontend attaches it to the Conv/Gemm nodes reading those
weights. A layer whose batch norm the exporter did not fold (a BatchNormalization still follows it in
ONNX) is left alone: ``fold_batch_norm`` records the statistics itself when it folds it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from edgeopt.ir import Graph

METADATA_KEY = "edgeopt.batch_norm_stats"
# aten ops (torch.export's pre-dispatch IR) whose output a batch norm can be folded into.
LAYER_OPS = ("conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d", "linear")
BATCH_NORM_OPS = ("batch_norm", "_native_batch_norm_legit_no_training")

BatchNormStats = dict[str, tuple[tuple[float, ...], tuple[float, ...]]]


def batch_norm_stats(program: Any) -> BatchNormStats:
    """``{weight parameter name: (beta, |gamma|)}`` for each layer followed only by a batch norm.

    Args:
        program: a ``torch.export.ExportedProgram`` of the model in eval mode.

    Returns:
        The statistics per layer weight; layers sharing a weight, and batch norms in training mode, are
        left out.
    """
    signature = program.graph_signature
    params = {**signature.inputs_to_parameters, **signature.inputs_to_buffers}
    state = program.state_dict
    weight_uses: dict[str, int] = {}
    for node in program.graph.nodes:
        if node.op == "call_function" and aten_name(node.target) in LAYER_OPS and len(node.args) > 1:
            weight_uses[str(node.args[1])] = weight_uses.get(str(node.args[1]), 0) + 1
    stats: BatchNormStats = {}
    for bn in program.graph.nodes:
        if bn.op != "call_function" or aten_name(bn.target) not in BATCH_NORM_OPS:
            continue
        layer = bn.args[0]
        if (getattr(layer, "op", None) != "call_function" or aten_name(layer.target) not in LAYER_OPS
                or len(layer.users) != 1 or len(layer.args) < 2 or is_training(bn)):
            continue
        weight = str(layer.args[1])
        if weight not in params or weight_uses.get(weight) != 1:
            continue
        gamma = _value(bn.args[1], params, state)
        beta = _value(bn.args[2], params, state)
        channels = int(_value(bn.args[3], params, state).shape[0])
        gamma = np.ones(channels) if gamma is None else gamma
        beta = np.zeros(channels) if beta is None else beta
        stats[params[weight]] = (tuple(map(float, beta)), tuple(map(float, np.abs(gamma))))
    return stats


def with_stats(model: onnx.ModelProto, stats: BatchNormStats) -> onnx.ModelProto:
    """``model`` (modified in place and returned) carrying ``stats`` in its metadata."""
    if stats:
        entry = model.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = json.dumps({k: {"beta": b, "gamma": g} for k, (b, g) in stats.items()})
    return model


def attach_stats(graph: Graph, model: onnx.ModelProto) -> Graph:
    """``graph`` with the statistics of ``model``'s metadata on the Conv/Gemm nodes reading those weights.

    A node already carrying statistics, one whose output still feeds a BatchNormalization, or one whose
    output channel count differs from the statistics' is left as it is.
    """
    table = next((json.loads(p.value) for p in model.metadata_props if p.key == METADATA_KEY), None)
    if not table:
        return graph
    nodes = []
    for node in graph.nodes:
        nodes.append(_with_node_stats(node, graph, table) if node.op in ("Conv", "ConvTranspose", "Gemm") else node)
    return graph.replace(nodes=tuple(nodes))


def _with_node_stats(node: Any, graph: Graph, table: Mapping[str, Mapping[str, list[float]]]) -> Any:
    entry = table.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if entry is None or "bn_beta" in node.attrs:
        return node
    if any(c.op == "BatchNormalization" for c in graph.consumers(node.outputs[0])):
        return node
    if len(entry["beta"]) != graph.shape(node.outputs[0])[1]:
        return node
    return node.with_(attrs={"bn_beta": tuple(entry["beta"]), "bn_gamma": tuple(entry["gamma"])})


def aten_name(target: Any) -> str:
    """``conv2d`` for ``torch.ops.aten.conv2d.default``; '' for anything that is not an aten op."""
    name = getattr(target, "__name__", "")
    namespace = getattr(target, "namespace", "")
    return name.split(".")[0] if namespace == "aten" else ""


def is_training(bn: Any) -> bool:
    """Whether a batch-norm call normalizes with batch statistics (aten.batch_norm's ``training`` arg)."""
    return aten_name(bn.target) == "batch_norm" and len(bn.args) > 5 and bool(bn.args[5])


def _value(arg: Any, params: Mapping[str, str], state: Mapping[str, Any]) -> np.ndarray | None:
    if arg is None:
        return None
    return state[params[str(arg)]].detach().cpu().numpy().astype(np.float64)
