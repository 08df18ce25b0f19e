"""Per-layer quantization sensitivity, like AIMET's QuantAnalyzer: one layer quantized, the rest float.

For each Conv/Gemm/MatMul/ConvTranspose weight, and for each node's output activation, a QDQ model is
built whose encodings hold only that tensor (``quantized_to_onnx`` writes Q/DQ only for tensors with an
encoding), and run in ONNX Runtime on a small slice of data. Its outputs are compared with the float
model's: output SQNR in dB (all outputs together) and top-1 agreement (first output). The lowest SQNR
marks the layer whose quantization costs the most on its own.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeopt.device_profiles.schema import DeviceProfile
from edgeopt.errors import DataError
from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.calibrate import TensorStats
from edgeopt.pipeline.emit.onnx import graph_to_onnx, quantized_to_onnx
from edgeopt.pipeline.quantize import quantize_minmax
from edgeopt.pipeline.quantize.minmax import WEIGHTED_OPS
from edgeopt.pipeline.quantize.profile_rules import profile_weights
from edgeopt.runtimes.onnxruntime import OnnxRuntime

DEFAULT_SAMPLES = 64
Kind = Literal["weights", "activation"]


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer's weights or output activation quantized alone.

    ``sqnr_db``: output SQNR against the float model (``math.inf`` when the outputs are identical);
    ``agreement``: % of samples whose top-1 matches the float model's.
    """

    node: str
    kind: Kind
    sqnr_db: float
    agreement: float

    def to_json(self) -> dict:
        """The report.json entry (an infinite SQNR is written as null: JSON has no infinity)."""
        sqnr = round(self.sqnr_db, 3) if math.isfinite(self.sqnr_db) else None
        return {"node": self.node, "kind": self.kind, "sqnr_db": sqnr, "agreement": round(self.agreement, 3)}


def sensitivity(graph: Graph, stats: Mapping[str, TensorStats], x: np.ndarray, profile: DeviceProfile, *,
                samples: int = DEFAULT_SAMPLES) -> list[LayerSensitivity]:
    """Sensitivity of each layer of ``graph`` under min/max encodings from ``stats`` and the profile's
    weight rules (per-tensor weights where ``profile`` asks for them), most sensitive first.

    Args:
        graph: the optimized float graph.
        stats: calibration statistics of every tensor (``calibrate.calibrate``).
        x: model-ready inputs; the first ``samples`` are used.
        profile: the device profile whose quantization rules the encodings follow.
        samples: how many samples of ``x`` to measure on.
    """
    qgraph = profile_weights(quantize_minmax(graph, stats), profile.quantization)
    return sensitivity_of(qgraph, x, samples=samples)


def sensitivity_of(qgraph: QuantizedGraph, x: np.ndarray, *, samples: int = DEFAULT_SAMPLES) -> list[LayerSensitivity]:
    """Sensitivity of each layer under ``qgraph``'s own encodings, sorted by SQNR (lowest first).

    Raises:
        DataError: ``x`` is empty.
    """
    if len(x) == 0:
        raise DataError("sensitivity analysis needs data: pass --data DATA.npz or --calib CALIB.npz")
    x = x[:samples]
    graph, enc = qgraph.graph, qgraph.encodings
    reference = OnnxRuntime(graph_to_onnx(graph)).run([x])
    results = []
    for node in graph.nodes:
        if node.op in WEIGHTED_OPS and len(node.inputs) > 1 and node.inputs[1] in enc:
            results.append(_measure(qgraph, node.name, "weights", [node.inputs[1]], x, reference))
        outputs = [t for t in node.outputs if t in enc]
        if outputs:
            results.append(_measure(qgraph, node.name, "activation", outputs, x, reference))
    return sorted(results, key=lambda r: r.sqnr_db)


def sensitive_data(*candidates: np.ndarray | None) -> np.ndarray:
    """The first non-empty array among ``candidates`` (e.g. the evaluation data, then the calibration set).

    Raises:
        DataError: all are empty or None.
    """
    for x in candidates:
        if x is not None and len(x):
            return x
    raise DataError("sensitivity analysis needs data: pass --data DATA.npz or --calib CALIB.npz")


def _measure(qgraph: QuantizedGraph, node: str, kind: Kind, tensors: list[str], x: np.ndarray,
             reference: list[np.ndarray]) -> LayerSensitivity:
    alone = QuantizedGraph(graph=qgraph.graph, encodings={t: qgraph.encodings[t] for t in tensors})
    outputs = OnnxRuntime(quantized_to_onnx(alone)).run([x])
    n = len(x)
    ref = np.concatenate([r.reshape(n, -1) for r in reference], axis=1).astype(np.float64)
    got = np.concatenate([o.reshape(n, -1) for o in outputs], axis=1).astype(np.float64)
    agree = float(np.mean(reference[0].reshape(n, -1).argmax(1) == outputs[0].reshape(n, -1).argmax(1)) * 100)
    return LayerSensitivity(node=node, kind=kind, sqnr_db=sqnr_db(ref, got), agreement=agree)


def sqnr_db(reference: np.ndarray, noisy: np.ndarray) -> float:
    """``10 log10(sum(reference^2) / sum((reference - noisy)^2))``; ``inf`` when they are equal (an
    all-zero reference counts as the smallest positive double, so the result stays finite)."""
    noise = float(np.sum((reference - noisy) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, np.finfo(np.float64).tiny) / noise)
