"""The device's weight scheme against the one the program carries, for the report.

Some devices quantize weights in a way a TFLite int8 program cannot carry: SNPE's DSP runtime uses one
asymmetric 8-bit grid per tensor (scale ``(max - min) / 255`` and an offset), while LiteRT's int8
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED take weights with zero point 0 only. Such a profile ships
symmetric weights (``params.is_symmetric = true``) and says what the device does
(``params.device_is_symmetric = false``); ``weight_scheme`` then measures, on the weights that ship,
the weight SQNR of each layer under both grids (min/max, at the profile's granularity), so the report
states the representation and its cost. The executed accuracy is the shipped program's.
"""
from __future__ import annotations

import numpy as np

from edgeopt.device_profiles.quantization import Quantization
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.quantize.spec import WEIGHTED_OPS


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


def weight_scheme(qgraph: QuantizedGraph, rules: Quantization) -> dict | None:
    """The report's ``precision.weights`` entry when the device's weight symmetry differs from the
    program's (``device_is_symmetric`` set and unlike ``is_symmetric``), else None.

    Per-tensor layers only (the only kind such devices have): median weight SQNR over the int8 layers
    under the device's asymmetric grid and under the shipped symmetric one, and the largest loss of one
    layer.
    """
    params = rules.defaults.params
    if params.device_is_symmetric is None or params.device_is_symmetric == bool(params.is_symmetric):
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
             "accuracy_of": "shipped"}
    if device:
        loss = np.array(device) - np.array(shipped)
        entry["sqnr_db"] = {"device_median": round(float(np.median(device)), 3),
                            "shipped_median": round(float(np.median(shipped)), 3),
                            "worst_layer_loss": round(float(loss.max()), 3)}
    return entry
