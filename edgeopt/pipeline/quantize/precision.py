"""Mixed precision: which nodes run with int16 activations (TFLite's 16x8 mode, A16W8), and the encodings
and requantizations that follows from that choice.

A precision plan is plain data, ``{node name: "int8" | "int16"}``: ``precision_plan`` computes it from
``--precision`` (``w8a8``: every node int8; ``w8a16``: every node whose TFLite lowering has a 16x8 kernel
here, ``int16_support``) and per-node or per-op-type overrides. A device profile's rules can restrict it
before use (a dict comprehension over the plan), and ``apply_precision`` realises whatever plan it gets.

``apply_precision`` re-encodes the activations of int16 nodes (symmetric, zero point 0, from the same
calibration ranges), gives their weighted ops int64 biases, and where a tensor written in one precision
is read in the other it inserts a requantizing node, an ``Identity`` whose output carries the reader's
encoding, lowered to TFLite's QUANTIZE (int8 <-> int16), as TensorFlow's converter joins mixed
precisions. Graph inputs stay int8 (the program's input type); outputs keep their producer's dtype.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Literal, get_args

from edgeopt.errors import OptionError, UnsupportedOpError
from edgeopt.ir import Graph, Node, QParams, QuantizedGraph, TensorInfo, topological_order
from edgeopt.pipeline.calibrate import TensorStats
from edgeopt.pipeline.optimize.fuse_activation import activation_kind
from edgeopt.pipeline.quantize.encodings import activation_qparams, bias_qparams
from edgeopt.pipeline.quantize.float_plan import keep_in_float
from edgeopt.pipeline.quantize.spec import CONSTANT_OPERAND_OPS, FIXED_OUTPUT, SHARED_SCALE_OPS, WEIGHTED_OPS
from edgeopt.pipeline.quantize.shared_ranges import unify_concat_ranges

Precision = Literal["w8a8", "w8a16"]
ActivationDtype = Literal["int8", "int16", "float"]  # "float": a float island (quantize.float_plan)
PrecisionPlan = dict[str, ActivationDtype]
PRECISIONS: dict[str, ActivationDtype] = {"w8a8": "int8", "w8a16": "int16"}
REQUANTIZE_OP = "Identity"  # the node apply_precision inserts; lowered to QUANTIZE

_MOVEMENT = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "AveragePool", "GlobalAveragePool",
                       "MaxPool", "Concat", "Relu", "ReduceMean", "Transpose"})
# LiteRT's int16 kernels for these are lookup tables / fixed-point recipes not reproduced here yet.
_NO_16X8_YET = {"Softmax": "SOFTMAX", "Sigmoid": "LOGISTIC", "Tanh": "TANH", "HardSwish": "HARD_SWISH"}


def int16_support(node: Node, graph: Graph) -> str | None:
    """None when ``node`` lowers to ops with a 16x8 kernel here, else why not (for the error or report)."""
    if node.op in _MOVEMENT:  # ReduceMean: AVERAGE_POOL_2D over H and W, MEAN otherwise; both 16x8
        return None
    if node.op == "Conv":
        groups, c_in = node.attrs.get("group", 1), graph.shape(node.inputs[0])[1]
        return None if groups in (1, c_in) else "no 16x8 kernel for a grouped CONV_2D"
    if node.op in ("Gemm", "Add"):  # Add: a constant operand is re-encoded as int16 too
        return None
    if node.op == "Clip":
        kind = activation_kind(node, graph)
        return None if kind is not None else "no 16x8 kernel for RELU_N1_TO_1 or other Clip bounds (LiteRT has none)"
    if node.op == "Pad":
        return None if node.attrs.get("mode", "constant") == "constant" else "no 16x8 kernel for MIRROR_PAD"
    if node.op in _NO_16X8_YET:
        return f"no 16x8 kernel for {_NO_16X8_YET[node.op]} here (LiteRT's int16 form is not reproduced yet)"
    return f"no 16x8 kernel for {node.op} here (16x8 ops: Conv (not grouped), Gemm, Add, Relu, Clip to ReLU/ReLU6, " \
           "MaxPool, AveragePool, GlobalAveragePool, ReduceMean, Concat, Pad, Transpose, Reshape, Flatten, " \
           "Squeeze, Unsqueeze)"


def precision_plan(graph: Graph, precision: Precision = "w8a8",
                   overrides: Mapping[str, ActivationDtype] | None = None) -> PrecisionPlan:
    """The activation dtype of every node.

    Args:
        graph: the float graph.
        precision: ``"w8a8"`` (all int8) or ``"w8a16"`` (int16 wherever ``int16_support`` allows).
        overrides: node name or ONNX op type → dtype, applied after ``precision`` (a name wins over a type);
            ``"float"`` keeps the node in float32 (``quantize.float_plan.keep_in_float``).

    Returns:
        ``{node name: "int8" | "int16"}`` for every node.

    Raises:
        UnsupportedOpError: an override asks for int16 on a node without a 16x8 lowering, or a dtype
            or precision is unknown.
        OptionError: an override names neither a node nor an op type of ``graph``.
    """
    if precision not in PRECISIONS:
        raise UnsupportedOpError("precision", precision, f"unknown precision (known: {', '.join(PRECISIONS)})")
    overrides = dict(overrides or {})
    check_override_names(graph, overrides)
    plan: PrecisionPlan = {}
    for node in graph.nodes:
        why = int16_support(node, graph)
        wanted = overrides.get(node.name, overrides.get(node.op))
        if wanted is None:
            plan[node.name] = "int16" if PRECISIONS[precision] == "int16" and why is None else "int8"
            continue
        if wanted not in get_args(ActivationDtype):
            raise UnsupportedOpError(node.op, node.name, f"precision override {wanted!r} is not int8, int16 or float")
        if wanted == "int16" and why is not None:
            raise UnsupportedOpError(node.op, node.name, f"int16 activations requested, but {why}")
        plan[node.name] = wanted
    return plan


def check_override_names(graph: Graph, overrides: Mapping[str, str]) -> None:
    """Fail on an override that names neither a node nor an ONNX op type of ``graph`` (a typo would
    otherwise leave the precision it asked for silently unapplied).

    Raises:
        OptionError: naming the override, the graph's op types and the node names closest to it.
    """
    names = [n.name for n in graph.nodes]
    ops = sorted({n.op for n in graph.nodes})
    for key in overrides:
        if key in ops or key in names:
            continue
        close = difflib.get_close_matches(key, [*names, *ops], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        # Node names are the optimized graph's: folded BatchNormalization and fused Relu/Clip nodes are gone.
        raise OptionError(f"precision override '{key}' names no node or op type of the optimized graph "
                            f"'{graph.name}' (op types: {', '.join(ops)}; batch norms and activations fused into "
                            f"their producer have no node of their own){hint}")


def apply_precision(qgraph: QuantizedGraph, stats: Mapping[str, TensorStats], plan: Mapping[str, str]) -> QuantizedGraph:
    """``qgraph`` with the int16 encodings, int64 biases and requantizing nodes ``plan`` asks for.

    Args:
        qgraph: the int8 quantized graph from ``quantize_minmax``.
        stats: the calibration ranges it was made from.
        plan: ``{node name: "int8" | "int16" | "float"}`` (nodes not named stay int8; ``"float"`` nodes
            keep int8 encodings at their edges and join ``float_nodes``, ``quantize.float_plan``).

    Returns:
        ``qgraph`` itself when every node is int8; else a new QuantizedGraph.
    """
    if all(plan.get(n.name, "int8") != "int16" for n in qgraph.graph.nodes):
        return keep_in_float(qgraph, plan)
    graph = qgraph.graph
    stats = unify_concat_ranges(graph, stats, SHARED_SCALE_OPS, FIXED_OUTPUT)
    enc: dict[str, QParams] = dict(qgraph.encodings)
    tensors = dict(graph.tensors)
    copies: dict[tuple[str, str], str] = {}
    nodes: list[Node] = []

    def in_dtype(tensor: str, dtype: str) -> str:
        """``tensor`` as ``dtype``: itself, or the output of a requantizing node (made once per dtype)."""
        if tensor in graph.initializers or not tensor or tensor not in enc or enc[tensor].dtype == dtype:
            # (no encoding: an integer tensor, token ids or a mask, which no precision changes)
            return tensor
        if (tensor, dtype) not in copies:
            copy = f"{tensor}/{dtype}"
            s = stats[tensor]
            enc[copy] = activation_qparams(s.min, s.max, dtype)
            tensors[copy] = TensorInfo(copy, graph.shape(tensor))
            nodes.append(Node(REQUANTIZE_OP, f"{tensor}/requantize_{dtype}", (tensor,), (copy,)))
            copies[tensor, dtype] = copy
        return copies[tensor, dtype]

    for node in graph.nodes:
        dtype = plan.get(node.name, "int8")
        dtype = "int8" if dtype == "float" else dtype  # a float island's edges are int8
        inputs = tuple(in_dtype(t, dtype) for t in node.inputs)
        node = node.with_(inputs=inputs) if inputs != node.inputs else node
        shared = node.op in SHARED_SCALE_OPS and inputs[0] not in graph.initializers and inputs[0] in enc
        for out in node.outputs:
            if shared:
                enc[out] = enc[inputs[0]]
            elif dtype == "int16" and out in enc:  # (an integer output, a mask's, has no encoding)
                enc[out] = activation_qparams(stats[out].min, stats[out].max, "int16")
        if dtype == "int16" and node.op in CONSTANT_OPERAND_OPS:  # a 16x8 ADD reads an int16 constant
            for name in filter(graph.initializers.__contains__, inputs):
                enc[name] = activation_qparams(graph.initializers[name].min(), graph.initializers[name].max(), "int16")
        if dtype == "int16" and node.op in WEIGHTED_OPS and len(inputs) > 2 and inputs[2]:
            enc[inputs[2]] = bias_qparams(enc[inputs[0]], enc[inputs[1]])
        nodes.append(node)
    available = [t.name for t in graph.inputs] + list(graph.initializers)
    new_graph = graph.replace(nodes=topological_order(nodes, available), tensors=tensors)
    return keep_in_float(QuantizedGraph(graph=new_graph, encodings=enc, float_nodes=qgraph.float_nodes), plan)
