"""Graph → ONNX: the float model, or the quantized model in QDQ form (QuantizeLinear/DequantizeLinear).

Fused activations are written back as their own Relu/Clip node, so the float file computes exactly what
the Graph means. In QDQ form every weight and bias is an int8/int32 initializer behind a
DequantizeLinear, and every activation tensor passes through QuantizeLinear → DequantizeLinear with the
encodings the int8 program uses: the same integers as the .tflite file, in the form ONNX Runtime and
other QDQ tools (AIMET, NNCF) read.

Nodes that the int8 program runs in float islands (``pipeline.quantize.float_plan``) stay float
here too: their weights and biases are the float initializers, with no Q/DQ, and a tensor passing from
one float node to another is not quantized; a float node's output is quantized (Q → DQ, with its
calibrated encoding) only where an integer node reads it or it is a graph output, as the island's QUANTIZE.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeopt.fileio import atomic_write_bytes
from edgeopt.ir import EDGEOPT_ATTRS, Graph, QParams, QuantizedGraph
from edgeopt.pipeline.quantize.float_plan import float_node_names

PRODUCER = "edgeopt"
# The newest IR version that ONNX Runtime 1.31 reads; onnx 1.23 would stamp a newer one by default.
IR_VERSION = 10


def graph_to_onnx(graph: Graph, *, expose_all: bool = False) -> onnx.ModelProto:
    """The float Graph as an ONNX model; ``expose_all`` also makes every intermediate tensor an output."""
    nodes, inits = _float_nodes(graph), _float_initializers(graph, graph.initializers)
    outputs = [t.name for t in graph.outputs]
    if expose_all:
        outputs += [t for n in graph.nodes for t in n.outputs if t not in outputs]
    return _model(graph, nodes, inits, outputs)


def quantized_to_onnx(qgraph: QuantizedGraph) -> onnx.ModelProto:
    """The quantized model as a QDQ ONNX model (runs in ONNX Runtime, which fuses it into int8 ops)."""
    graph = qgraph.graph
    enc = {k: q for k, q in qgraph.encodings.items() if not _float_only(graph, k, float_node_names(qgraph))}
    nodes = _float_nodes(graph)
    float_weights = {k: v for k, v in graph.initializers.items() if k not in enc}
    inits = _float_initializers(graph, float_weights)
    qdq: list[onnx.NodeProto] = []
    for name, arr in graph.initializers.items():
        if name in enc:
            q = enc[name]
            q = _int32_bias(q)  # DequantizeLinear takes at most int32: a 16x8 int64 bias saturates to it
            inits.append(numpy_helper.from_array(q.quantize(arr), f"{name}__q"))
            inits += _scale_zp(name, q)
            qdq.append(_dq(f"{name}__q", name, q.axis))
    input_names = {t.name for t in graph.inputs}
    for tensor in [t.name for t in graph.inputs] + [t for n in graph.nodes for t in n.outputs]:
        if tensor not in enc:
            continue
        inits += _scale_zp(tensor, enc[tensor])
        if tensor in input_names:
            src, dst = tensor, f"{tensor}__dq"
            nodes = [_renamed_inputs(n, tensor, dst) for n in nodes]
        else:
            src, dst = f"{tensor}__f", tensor
            nodes = [_renamed_output(n, tensor, src) for n in nodes]
        qdq.append(helper.make_node("QuantizeLinear", [src, f"{tensor}__scale", f"{tensor}__zp"],
                                    [f"{tensor}__q"], name=f"{tensor}__quantize"))
        qdq.append(_dq(f"{tensor}__q", dst, None))
    model = _model(graph, qdq + nodes, inits, [t.name for t in graph.outputs], topo_sort=True)
    if any(q.dtype == "int16" for q in enc.values()):  # int16 Q/DQ needs opset 21
        model.opset_import[0].version = max(model.opset_import[0].version, 21)
    return model


def _float_only(graph: Graph, tensor: str, float_nodes: frozenset[str]) -> bool:
    """Whether ``tensor`` stays float: only float nodes read it (a weight), or a float node writes it and
    only float nodes read it (inside an island)."""
    readers = graph.consumers(tensor)
    if not readers or not all(r.name in float_nodes for r in readers):
        return False
    if tensor in graph.initializers:
        return True
    producer = graph.producer(tensor)
    return producer is not None and producer.name in float_nodes and not graph.is_output(tensor)


def _int32_bias(q: QParams) -> QParams:
    return QParams(q.scale, q.zero_point, "int32", q.axis) if q.dtype == "int64" else q


def write_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``model`` atomically."""
    return atomic_write_bytes(path, model.SerializeToString())


def _float_nodes(graph: Graph) -> list[onnx.NodeProto]:
    protos = []
    for node in graph.nodes:
        attrs = {k: v for k, v in node.attrs.items() if k not in EDGEOPT_ATTRS}
        act = node.attrs.get("fused_activation")
        outs = [f"{node.outputs[0]}__preact", *node.outputs[1:]] if act else list(node.outputs)
        protos.append(helper.make_node(node.op, list(node.inputs), outs, name=node.name, **attrs))
        if act == "Relu":
            protos.append(helper.make_node("Relu", [outs[0]], [node.outputs[0]], name=f"{node.name}__relu"))
        elif act == "Relu6":
            protos.append(helper.make_node("Clip", [outs[0], "edgeopt__zero", "edgeopt__six"],
                                           [node.outputs[0]], name=f"{node.name}__relu6"))
    return protos


def _float_initializers(graph: Graph, arrays: Mapping[str, np.ndarray]) -> list[onnx.TensorProto]:
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in arrays.items()]
    if any(n.attrs.get("fused_activation") == "Relu6" for n in graph.nodes):
        inits += [numpy_helper.from_array(np.array(0, np.float32), "edgeopt__zero"),
                  numpy_helper.from_array(np.array(6, np.float32), "edgeopt__six")]
    return inits


def _scale_zp(name: str, q: QParams) -> list[onnx.TensorProto]:
    per_tensor = q.axis is None
    scale = q.scale.reshape(()) if per_tensor else q.scale
    zp = q.zero_point.astype(q.dtype)
    zp = zp.reshape(()) if per_tensor else zp
    return [numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}__scale"),
            numpy_helper.from_array(np.asarray(zp), f"{name}__zp")]


def _dq(src: str, dst: str, axis: int | None) -> onnx.NodeProto:
    base = src.removesuffix("__q")
    kwargs = {} if axis is None else {"axis": axis}
    return helper.make_node("DequantizeLinear", [src, f"{base}__scale", f"{base}__zp"], [dst],
                            name=f"{base}__dequantize", **kwargs)


def _renamed_inputs(node: onnx.NodeProto, old: str, new: str) -> onnx.NodeProto:
    if old in node.input:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        node.input[:] = [new if t == old else t for t in node.input]
    return node


def _renamed_output(node: onnx.NodeProto, old: str, new: str) -> onnx.NodeProto:
    if old in node.output:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        node.output[:] = [new if t == old else t for t in node.output]
    return node


def _model(graph: Graph, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], outputs: list[str],
           topo_sort: bool = False) -> onnx.ModelProto:
    if topo_sort:
        nodes = _topo(nodes, {t.name for t in graph.inputs} | {i.name for i in inits})
    info = {t.name: t for t in list(graph.tensors.values())}
    value = lambda name: helper.make_tensor_value_info(  # noqa: E731
        name, helper.np_dtype_to_tensor_dtype(np.dtype(info[name].dtype)), info[name].shape)
    onnx_graph = helper.make_graph(nodes, graph.name, [value(t.name) for t in graph.inputs],
                                   [value(o) for o in outputs], initializer=inits)
    model = helper.make_model(onnx_graph, producer_name=PRODUCER,
                              opset_imports=[helper.make_opsetid("", max(graph.opset, 13))])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _topo(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    ready, pending, ordered = set(available) | {""}, list(nodes), []
    while pending:
        node = next(n for n in pending if all(t in ready for t in n.input))
        ordered.append(node)
        ready.update(node.output)
        pending.remove(node)
    return ordered
