"""A QDQ ``.onnx`` (ONNX Runtime's ``quantize_static``, or any tool writing QuantizeLinear/DequantizeLinear)
→ QuantizedGraph, with the encodings taken from the file rather than calibrated again.

* ``DequantizeLinear`` of a constant (int8 weights, int32 biases) becomes the float32 constant it
  stands for plus that constant's encoding. ``QParams.quantize`` of it gives back the file's integers:
  an int8 times a float32 scale is exact in float32, and an int32 ``q`` comes back from ``float32(q *
  s) / s`` within ``|q| * 2**-24`` of itself, which rounds to ``q`` for ``|q| < 2**23`` (a larger bias
  is checked and reported).
* A ``QuantizeLinear`` → ``DequantizeLinear`` pair on an activation disappears; its parameters become
  the activation's encoding. uint8 activations become int8 exactly: ``clamp(round(x/s) + zp, 0, 255) -
  128 = clamp(round(x/s) + zp - 128, -128, 127)``, so the zero point moves by -128 and nothing else.
* ``QuantizeLinear`` of a float constant (weights quantized "on the fly") is folded first, rounding
  half to even as ONNX specifies.

What is left is a float ONNX graph, read by the one ONNX frontend. TFLite's int8 kernels then constrain
some encodings (shared input/output scale for pooling and data movement, fixed output encodings for
softmax-like ops; a mean keeps its own output encoding, which MEAN requantizes to): where the file's encodings break such a rule, the rule wins and a warning says so.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from edgeopt.errors import ModelLoadError, UnsupportedOpError
from edgeopt.ir import Graph, QParams, QuantizedGraph
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.pipeline.quantize.spec import FIXED_OUTPUT, REQUANTIZING_MEAN_OPS, SHARED_SCALE_OPS, WEIGHTED_OPS

log = logging.getLogger(__name__)

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_QUANTIZED_DTYPES = {"int8", "uint8", "int32"}


def qdq_to_quantized_graph(model: onnx.ModelProto, name: str | None = None) -> QuantizedGraph:
    """Strip the Q/DQ nodes of a QDQ model into encodings on a float Graph.

    Args:
        model: the QDQ ONNX model (not modified).
        name: the graph's name (default: the ONNX graph's).

    Returns:
        The float Graph (activations fused as ``optimize``'s ``fuse_activation`` does) with encodings for
        its activations, weights and biases.

    Raises:
        ModelLoadError: a float model (no Q/DQ nodes), or Q/DQ parameters that are not constants.
        UnsupportedOpError: a Q/DQ form with no int8 TFLite equivalent (e.g. int16, or quantized graph
            inputs and outputs).
    """
    name = name or model.graph.name or "model"
    nodes = list(model.graph.node)
    if not any(n.op_type in QDQ_OPS for n in nodes):
        raise ModelLoadError(f"'{name}' is a float model (no QuantizeLinear/DequantizeLinear nodes); "
                             "quantize and convert it with `edgeopt deploy`")
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in nodes:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    enc: dict[str, QParams] = {}
    alias: dict[str, str] = {}
    kept: list[onnx.NodeProto] = []
    q_params: dict[str, tuple[str, QParams]] = {}  # Q output -> (Q input, encoding)

    for n in nodes:
        if n.op_type == "QuantizeLinear":
            qp = _qparams(n, consts, name)
            if n.input[0] in consts:
                consts[n.output[0]] = _quantize_half_even(consts[n.input[0]], qp)
            else:
                source = alias.get(n.input[0], n.input[0])  # a Q right after a DQ quantizes the same tensor
                if n.input[0] in alias and not enc[source].same_as(_signed(qp)):
                    raise UnsupportedOpError("QuantizeLinear", n.name or n.output[0],
                                             "requantizing a tensor to other parameters (DequantizeLinear → "
                                             "QuantizeLinear) is not supported yet")
                q_params[n.output[0]] = (source, qp)
        elif n.op_type == "DequantizeLinear":
            qp = _qparams(n, consts, name)
            if n.input[0] in consts:
                consts[n.output[0]] = _dequantize(consts[n.input[0]], qp, n)
                enc[n.output[0]] = _signed(qp)
            elif n.input[0] in q_params:
                source, q_qp = q_params[n.input[0]]
                if not q_qp.same_as(qp):
                    raise UnsupportedOpError("DequantizeLinear", n.name or n.output[0],
                                             "its parameters differ from its QuantizeLinear's")
                alias[n.output[0]] = source
                _merge(enc, source, _signed(qp), n)
            else:
                raise UnsupportedOpError("DequantizeLinear", n.name or n.output[0],
                                         f"its input '{n.input[0]}' is neither a constant nor a QuantizeLinear "
                                         "output (quantized graph inputs are not supported)")
        else:
            kept.append(n)

    outputs = {o.name for o in model.graph.output}
    if any(o in q_params for o in outputs):
        raise UnsupportedOpError("QuantizeLinear", next(o for o in outputs if o in q_params),
                                 "quantized graph outputs are not supported; end the model with a DequantizeLinear")
    rename = _representatives(alias, outputs | {i.name for i in model.graph.input})
    enc = {rename.get(k, k): v for k, v in enc.items()}
    graph = onnx_to_graph(_float_model(model, kept, consts, rename), name)
    graph = optimize(graph, ("fuse_activation",))
    return QuantizedGraph(graph=graph, encodings=_tflite_rules(graph, enc))


def _qparams(node: onnx.NodeProto, consts: Mapping[str, np.ndarray], name: str) -> QParams:
    """The (scale, zero point, dtype, axis) of a QuantizeLinear/DequantizeLinear, from constants."""
    where = node.name or node.output[0]
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedOpError(f"{node.domain}.{node.op_type}", where, "only the default-domain Q/DQ ops are read")
    if len(node.input) < 2 or node.input[1] not in consts:
        raise ModelLoadError(f"'{name}': {node.op_type} '{where}' has no constant scale")
    scale = np.asarray(consts[node.input[1]], dtype=np.float32).reshape(-1)
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in consts:
            raise ModelLoadError(f"'{name}': {node.op_type} '{where}' has no constant zero point")
        zp_arr = consts[node.input[2]]
        dtype = zp_arr.dtype.name
        zero_point = zp_arr.astype(np.int64).reshape(-1)
    else:  # ONNX's default: uint8, or a DequantizeLinear's input type
        x = consts.get(node.input[0])
        dtype = x.dtype.name if node.op_type == "DequantizeLinear" and x is not None else "uint8"
        zero_point = np.zeros(scale.shape, np.int64)
    if dtype not in _QUANTIZED_DTYPES:
        raise UnsupportedOpError(node.op_type, where, f"{dtype} quantization has no int8 TFLite form")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "block_size" in attrs and attrs["block_size"]:
        raise UnsupportedOpError(node.op_type, where, "blocked quantization is not supported")
    axis = None
    if scale.size > 1:
        axis = int(attrs.get("axis", 1))
        if axis < 0 and node.input[0] in consts:
            axis += consts[node.input[0]].ndim
    return QParams(scale, zero_point, dtype, axis)


def _signed(qp: QParams) -> QParams:
    """uint8 → int8 with the zero point moved by -128 (the same real values, exactly)."""
    if qp.dtype != "uint8":
        return qp
    return QParams(qp.scale, qp.zero_point - 128, "int8", qp.axis)


def _bcast(qp: QParams, a: np.ndarray, ndim: int) -> np.ndarray:
    if qp.axis is None:
        return a.reshape(())
    shape = [1] * ndim
    shape[qp.axis] = -1
    return a.reshape(shape)


def _dequantize(q: np.ndarray, qp: QParams, node: onnx.NodeProto) -> np.ndarray:
    """The float32 constant a DequantizeLinear stands for, checked to quantize back to ``q``."""
    values = ((q.astype(np.int64) - _bcast(qp, qp.zero_point, q.ndim)) * _bcast(qp, qp.scale, q.ndim)
              ).astype(np.float32)
    if not np.array_equal(qp.quantize(values).astype(np.int64), q.astype(np.int64)):
        log.warning("DequantizeLinear '%s': some values (|q| >= 2**23) do not survive float32 exactly",
                    node.name or node.output[0])
    return values


def _quantize_half_even(x: np.ndarray, qp: QParams) -> np.ndarray:
    """ONNX QuantizeLinear: ``saturate(round_half_even(x / scale) + zero_point)``."""
    q = np.rint(np.asarray(x, np.float32) / _bcast(qp, qp.scale, x.ndim)) + _bcast(qp, qp.zero_point, x.ndim)
    return np.clip(q, qp.qmin, qp.qmax).astype(qp.dtype)


def _merge(enc: dict[str, QParams], tensor: str, qp: QParams, node: onnx.NodeProto) -> None:
    if tensor in enc and not enc[tensor].same_as(qp):
        raise UnsupportedOpError("QuantizeLinear", node.name or node.output[0],
                                 f"tensor '{tensor}' is quantized twice with different parameters")
    enc[tensor] = qp


def _representatives(alias: Mapping[str, str], keep: set[str]) -> dict[str, str]:
    """Each dequantized name → the one name its group of equal tensors keeps (a graph input or output
    name when the group has one, so the model's interface keeps its names; else the float source)."""
    groups: dict[str, set[str]] = {}
    for dq, source in alias.items():
        groups.setdefault(source, {source}).add(dq)
    rename: dict[str, str] = {}
    for source, members in groups.items():
        named = sorted(members & keep)
        if len(named) > 1:
            raise UnsupportedOpError("DequantizeLinear", named[0],
                                     f"graph inputs/outputs {', '.join(named)} are the same tensor")
        target = named[0] if named else source
        rename.update({m: target for m in members if m != target})
    return rename


def _float_model(model: onnx.ModelProto, nodes: list[onnx.NodeProto], consts: Mapping[str, np.ndarray],
                 rename: Mapping[str, str]) -> onnx.ModelProto:
    """The model without Q/DQ nodes: tensors renamed, dequantized constants as float initializers."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    del graph.node[:]
    for n in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.input[:] = [rename.get(t, t) for t in n.input]
        copy.output[:] = [rename.get(t, t) for t in n.output]
        graph.node.append(copy)
    used = {t for n in graph.node for t in n.input}
    del graph.initializer[:]
    for key in sorted(used & set(consts)):
        value = consts[key]
        graph.initializer.append(numpy_helper.from_array(value, key))
    del graph.value_info[:]
    return out


def _tflite_rules(graph: Graph, enc: Mapping[str, QParams]) -> dict[str, QParams]:
    """The file's encodings, adjusted where TFLite's int8 kernels demand it (see the module docstring)."""
    out = dict(enc)
    for node in graph.nodes:
        if node.op in SHARED_SCALE_OPS and node.op not in REQUANTIZING_MEAN_OPS and node.inputs[0] in out:
            for y in node.outputs:
                if y in out and not out[y].same_as(out[node.inputs[0]]):
                    log.warning("%s '%s': output encoding replaced by its input's (TFLite's int8 kernel does not "
                                "requantize)", node.op, node.name)
                out[y] = out[node.inputs[0]]
        elif node.op in FIXED_OUTPUT:
            for y in node.outputs:
                if y in out and not out[y].same_as(FIXED_OUTPUT[node.op]):
                    log.warning("%s '%s': output encoding set to TFLite's fixed one", node.op, node.name)
                out[y] = FIXED_OUTPUT[node.op]
        if node.op in WEIGHTED_OPS and len(node.inputs) > 2 and node.inputs[2] and node.inputs[0] in out \
                and node.inputs[1] in out:
            # TFLite reads an int32 bias at scale input_scale * weight_scale: keep the file's bias encoding
            # only where it is that one (an input encoding replaced above changes it).
            wanted = bias_qparams(out[node.inputs[0]], out[node.inputs[1]])
            have = out.get(node.inputs[2])
            if have is None or not np.allclose(have.scale, wanted.scale, rtol=1e-6, atol=0):
                out[node.inputs[2]] = wanted
    return out
