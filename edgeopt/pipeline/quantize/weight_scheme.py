"""The device's weight scheme against the one the program carries, for the report.

Some devices quantize weights in a way a TFLite int8 program cannot carry: SNPE's DSP runtime uses one
asymmetric 8-bit grid per tensor (scale ``(max - min) / 255`` and an offset), while LiteRT's int8
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED take weights with zero point 0 only. Such a profile ships
symmetric weights (``params.is_symmetric = true``) and says what the device does
(``params.device_is_symmetric = false``); ``weight_scheme`` then measures, on the weights that ship,
the weight SQNR of each layer under both grids (min/max, at the profile's granularity), so the report
states the representation and its cost.

``device_weights`` gives the quantized graph of the device's own scheme: every per-tensor int8 weight of a
Conv, Gemm or MatMul re-encoded on the asymmetric grid (``asymmetric_weight_qparams``), its bias on the new
weight scale. Its program (``Target.device_program``) carries weights with a zero point, which the integer
executor runs (``weights_offset``, TFLite's legacy uint8 filter offset) and the TFLite writer refuses;
``deploy`` reports that program's accuracy beside the shipped one's. Its weights are rounded to nearest from
the graph's float weights (those AdaRound or fine-tuning left on the symmetric grid are re-rounded), with
the min/max range SNPE's default quantizer uses; ConvTranspose weights stay symmetric (LiteRT's
TRANSPOSE_CONV has no filter offset here), and int16 and float layers are left as they are.

``device_weights_program`` does the same to a program read from a ``.tflite`` (``emulate``), whose float
weights are gone: the file's per-tensor int8 weights, dequantized, are rounded once more onto the device's
grid, which is what the device makes of that file.
"""
from __future__ import annotations

import numpy as np

from edgeopt.device_profiles.quantization import Quantization
from edgeopt.ir import QParams, QuantizedGraph
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.pipeline.quantize.spec import WEIGHTED_OPS
from edgeopt.qprogram import QProgram, QTensor, op_mode

# The weighted ops whose int8 kernels take a weight zero point, in the graph and in the program.
OFFSET_OPS = frozenset({"Conv", "Gemm", "MatMul"})
OFFSET_KINDS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
# The bias stays within half of int32, as ``encodings.weight_qparams_for_bias`` keeps it.
BIAS_LIMIT = 2.0**30


def _sqnr_db(w: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((w - got) ** 2))
    return float(10 * np.log10(max(float(np.sum(w ** 2)), 1e-30) / max(noise, 1e-30)))


def asymmetric_sqnr_db(w: np.ndarray) -> float:
    """Weight SQNR (dB) on one asymmetric 8-bit grid over ``[min(w, 0), max(w, 0)]`` (SNPE's, TF1's)."""
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zp = np.round(-lo / scale)
    return _sqnr_db(w, (np.clip(np.round(w / scale) + zp, 0, 255) - zp) * scale)


def symmetric_sqnr_db(w: np.ndarray) -> float:
    """Weight SQNR (dB) on one symmetric int8 grid ``max|w| / 127`` (TFLite's, per tensor)."""
    scale = float(np.abs(w).max()) / 127 or 1.0
    return _sqnr_db(w, np.clip(np.round(w / scale), -127, 127) * scale)


def _differs(rules: Quantization) -> bool:
    """Whether the device's weight symmetry is recorded and unlike the program's."""
    params = rules.defaults.params
    return params.device_is_symmetric is not None and params.device_is_symmetric != bool(params.is_symmetric)


def asymmetric_weight_qparams(w: np.ndarray, min_scale: float = 0.0) -> QParams:
    """One int8 grid over ``[min(w, 0), max(w, 0)]`` (SNPE's and TF1's asymmetric 8-bit weights, as int8):
    scale ``max((hi - lo) / 255, min_scale)`` (1 for all-zero weights), zero point ``round(-128 - lo /
    scale)``, so that 0 is on the grid and ``real = scale * (q - zero_point)``."""
    lo, hi = min(float(np.min(w)), 0.0), max(float(np.max(w)), 0.0)
    scale = float(np.float32(max((hi - lo) / 255, min_scale) or 1.0))
    return QParams(np.float32(scale), int(np.clip(np.round(-128 - lo / scale), -128, 127)))


def device_weights(qgraph: QuantizedGraph, rules: Quantization) -> QuantizedGraph | None:
    """``qgraph`` with the device's weight encodings where its scheme differs from the program's (see the
    module), else None.

    Each int8 per-tensor weight of a Conv, Gemm or MatMul (not a float or int16 layer) gets
    ``asymmetric_weight_qparams``, its scale raised where the layer's int32 bias would use more than half
    of int32; the bias is re-encoded on ``input_scale * weight_scale``.
    """
    if not _differs(rules):
        return None
    g, enc = qgraph.graph, dict(qgraph.encodings)
    for node in g.nodes:
        w_name = node.inputs[1] if len(node.inputs) > 1 else ""
        if node.op not in OFFSET_OPS or node.name in qgraph.float_nodes or w_name not in g.initializers \
                or w_name not in enc or enc[w_name].per_channel or enc[node.inputs[0]].dtype != "int8":
            continue
        input_q = enc[node.inputs[0]]
        b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] in g.initializers else ""
        bias = np.abs(np.asarray(g.initializers[b_name], np.float64)).max(initial=0.0) if b_name else 0.0
        enc[w_name] = asymmetric_weight_qparams(g.initializers[w_name],
                                                bias / (float(input_q.scale[0]) * BIAS_LIMIT))
        if b_name:
            enc[b_name] = bias_qparams(input_q, enc[w_name])
    return QuantizedGraph(graph=g, encodings=enc, float_nodes=qgraph.float_nodes)


def _real(tensor: QTensor) -> np.ndarray:
    """A quantized constant's real values, in float64."""
    q = tensor.qparams
    return (tensor.data.astype(np.float64) - float(q.zero_point[0])) * q.scale.astype(np.float64)


def device_weights_program(program: QProgram, rules: Quantization) -> QProgram | None:
    """``program`` with each symmetric per-tensor int8 weight of its int8 CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED ops re-quantized on ``asymmetric_weight_qparams``' grid (from the stored integers: a
    second rounding) and its bias re-encoded on ``input_scale * weight_scale``, where the device's weight
    scheme differs from the program's; None when it does not, or when no weight is re-encoded."""
    if not _differs(rules):
        return None
    tensors = dict(program.tensors)
    for op in program.ops:
        if op.kind not in OFFSET_KINDS or op_mode(op, program) != "int8":
            continue
        w = program.tensor(op.inputs[1])
        if not w.is_constant or w.dtype != "int8" or w.qparams is None or w.qparams.scale.size != 1 \
                or np.any(w.qparams.zero_point):
            continue
        s_in = float(program.tensor(op.inputs[0]).qparams.scale[0])
        b = program.tensor(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else None
        bias = _real(b) if b is not None else np.zeros(1)
        w_q = asymmetric_weight_qparams(_real(w), float(np.abs(bias).max()) / (s_in * BIAS_LIMIT))
        tensors[w.name] = QTensor(w.name, w.shape, "int8", w_q, w_q.quantize(_real(w)))
        if b is not None:
            b_q = QParams(np.float32(np.float64(s_in) * np.float64(w_q.scale[0])), 0, b.dtype)
            tensors[b.name] = QTensor(b.name, b.shape, b.dtype, b_q, b_q.quantize(bias))
    if all(tensors[name] is t for name, t in program.tensors.items()):
        return None
    return program.replace(tensors=tensors, ops=tuple(op.with_params({}) for op in program.ops))


def weight_scheme(qgraph: QuantizedGraph, rules: Quantization) -> dict | None:
    """The report's ``precision.weights`` entry when the device's weight symmetry differs from the
    program's (``device_is_symmetric`` set and unlike ``is_symmetric``), else None.

    Per-tensor layers only (the only kind such devices have): median weight SQNR over the int8 layers
    under the device's asymmetric grid and under the shipped symmetric one, and the largest loss of one
    layer.
    """
    if not _differs(rules):
        return None
    g = qgraph.graph
    device, shipped = [], []
    for node in g.nodes:
        if node.op not in WEIGHTED_OPS or node.name in qgraph.float_nodes or node.inputs[1] not in g.initializers \
                or rules.per_channel(node.op):
            continue
        w = np.asarray(g.initializers[node.inputs[1]], np.float64)
        device.append(asymmetric_sqnr_db(w))
        shipped.append(symmetric_sqnr_db(w))
    entry = {"device": "asymmetric 8-bit per tensor (scale and offset)", "shipped": "symmetric int8 per tensor "
             "(zero point 0: LiteRT's int8 kernels take no weight offset)", "layers": len(device),
             "accuracy_of": "shipped", "device_accuracy": "accuracy.device_scheme: the device's asymmetric weights "
             "run by the integer executor (emulated; no file carries them)"}
    if device:
        loss = np.array(device) - np.array(shipped)
        entry["sqnr_db"] = {"device_median": round(float(np.median(device)), 3),
                            "shipped_median": round(float(np.median(shipped)), 3),
                            "worst_layer_loss": round(float(loss.max()), 3)}
    return entry
