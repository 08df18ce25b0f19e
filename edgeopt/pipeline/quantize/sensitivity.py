"""Per-layer quantization sensitivity, like AIMET's QuantAnalyzer: one layer quantized, the rest float.

For each Conv/Gemm/MatMul/ConvTranspose weight, and for each node's output activation, the model is run
with only that tensor quantized (its encoding's quantize-dequantize, rounding as TFLite does) on a small
slice of data, and its outputs are compared with the float model's: output SQNR in dB (all outputs
together) and top-1 agreement (first output). The lowest SQNR marks the layer whose quantization costs
the most on its own.

Why it is fast: the float model runs once, keeping every intermediate tensor; each probe then runs only
the part of the graph downstream of its tensor (an ONNX Runtime session over that suffix, fed from the
float run), so nothing upstream is recomputed and no Q/DQ model is built. Samples go through in chunks
that bound the memory the intermediate tensors take.

Why memory stays bounded: at most ``PROBE_SESSIONS`` suffix sessions exist at once (one per probe for
the whole run held about 4.4 GB on EfficientNet-Lite0's 111 probes); the probes go through in groups, each
group's sessions created, run on every chunk and released. With one chunk (the usual 64 samples) the float
run's tensors are kept across groups, so nothing runs twice; with several, each group reruns the float model.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeopt.errors import DataError
from edgeopt.ir import Graph, Node, QParams, QuantizedGraph, input_arrays
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.pipeline.quantize.spec import WEIGHTED_OPS
from edgeopt.progress import counter
from edgeopt.runtimes.onnxruntime import OnnxRuntime

DEFAULT_SAMPLES = 64
CHUNK_BYTES = 256 << 20  # the float run's intermediate tensors held at once
PROBE_SESSIONS = 8  # suffix sessions alive at once
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


def sensitivity_of(qgraph: QuantizedGraph, x: np.ndarray, *, samples: int = DEFAULT_SAMPLES) -> list[LayerSensitivity]:
    """Sensitivity of each layer under ``qgraph``'s own encodings, sorted by SQNR (lowest first).

    Raises:
        DataError: ``x`` is empty.
    """
    if len(x) == 0:
        raise DataError("sensitivity analysis needs data: pass --data DATA.npz or --calib CALIB.npz")
    x = x[:samples]
    graph = qgraph.graph
    probed = list(_probed(qgraph))
    full = OnnxRuntime(graph_to_onnx(graph, expose_all=True))
    per_sample = sum(4 * math.prod(graph.shape(t)[1:]) for t in full.output_names)
    chunk = max(1, CHUNK_BYTES // max(per_sample, 1))
    starts = range(0, len(x), chunk)
    kept: dict[str, np.ndarray] | None = None  # the float run's tensors, when one chunk holds every sample

    def float_run(part: np.ndarray) -> dict[str, np.ndarray]:
        fed = dict(zip(full.input_names, input_arrays(part, full.input_names)))
        return {**fed, **dict(zip(full.output_names, full.run(list(fed.values()))))}

    signal = 0.0
    noise = np.zeros(len(probed))
    agree = np.zeros(len(probed))
    tick = counter("sensitivity (probe runs: layers x samples)", len(probed) * len(x))
    done = 0
    for first in range(0, len(probed), PROBE_SESSIONS):
        probes = [_Probe(graph, qgraph.encodings, node, kind, tensors)
                  for node, kind, tensors in probed[first:first + PROBE_SESSIONS]]
        for i in starts:
            part = x[i:i + chunk]
            values = kept if kept is not None else float_run(part)
            if len(starts) == 1:
                kept = values
            reference = [values[t.name] for t in graph.outputs]
            ref = _flat(reference)
            if first == 0:
                signal += float(np.sum(ref ** 2))
            for j, probe in enumerate(probes, first):
                got = probe.outputs(values)
                noise[j] += float(np.sum((_flat(got) - ref) ** 2))
                agree[j] += int(np.sum(_top1(reference[0]) == _top1(got[0])))
                done += len(part)
                tick(done)
        del probes, probe  # their sessions go before the next group's are made
    results = [LayerSensitivity(node.name, kind, _db(signal, noise[j]), float(agree[j] / len(x) * 100))
               for j, (node, kind, _) in enumerate(probed)]
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


def sqnr_db(reference: np.ndarray, noisy: np.ndarray) -> float:
    """``10 log10(sum(reference^2) / sum((reference - noisy)^2))``; ``inf`` when they are equal (an
    all-zero reference counts as the smallest positive double, so the result stays finite)."""
    return _db(float(np.sum(reference ** 2)), float(np.sum((reference - noisy) ** 2)))


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, np.finfo(np.float64).tiny) / noise)


def _probed(qgraph: QuantizedGraph) -> Iterator[tuple[Node, Kind, list[str]]]:
    """Each tensor set quantized alone: a weighted node's weights, and each node's encoded outputs."""
    enc = qgraph.encodings
    for node in qgraph.graph.nodes:
        if node.op in WEIGHTED_OPS and len(node.inputs) > 1 and node.inputs[1] in enc:
            yield node, "weights", [node.inputs[1]]
        outputs = [t for t in node.outputs if t in enc]
        if outputs:
            yield node, "activation", outputs


def _fake_quant(values: np.ndarray, q: QParams) -> np.ndarray:
    return q.dequantize(q.quantize(values))


class _Probe:
    """The float model with one tensor set quantized, run from the float model's intermediate tensors:
    only the nodes downstream of the quantized tensors run (in one ONNX Runtime session)."""

    def __init__(self, graph: Graph, enc: Mapping[str, QParams], node: Node, kind: Kind, tensors: list[str]) -> None:
        self.node, self.kind, self.outputs_of = node.name, kind, [t.name for t in graph.outputs]
        initializers = dict(graph.initializers)
        if kind == "weights":
            self.quantized: dict[str, QParams] = {}
            initializers[tensors[0]] = _fake_quant(initializers[tensors[0]], enc[tensors[0]])
            start = {node.name}
        else:
            self.quantized = {t: enc[t] for t in tensors}
            start = {c.name for t in tensors for c in graph.consumers(t)}
        nodes = _downstream(graph, start)
        produced = {t for n in nodes for t in n.outputs}
        self.feeds = list(dict.fromkeys(t for n in nodes for t in n.inputs
                                        if t and t not in initializers and t not in produced))
        self.computed = [t for t in self.outputs_of if t in produced]
        self.session = None
        if nodes:
            used = {t for n in nodes for t in n.inputs}
            suffix = graph.replace(nodes=nodes, inputs=tuple(graph.tensors[t] for t in self.feeds),
                                   outputs=tuple(graph.tensors[t] for t in self.computed),
                                   initializers={k: v for k, v in initializers.items() if k in used})
            # One thread: a suffix run on one sample is too small to split, and idle worker threads spin
            # (twice the CPU time for the same wall time, measured on ResNet-20).
            self.session = OnnxRuntime(graph_to_onnx(suffix), num_threads=1)

    def outputs(self, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The graph outputs with this probe's tensors quantized, from the float run's ``values``."""
        fed = {t: _fake_quant(values[t], self.quantized[t]) if t in self.quantized else values[t] for t in self.feeds}
        got = dict(zip(self.computed, self.session.run([fed[t] for t in self.feeds]))) if self.session else {}
        return [got[t] if t in got else _fake_quant(values[t], self.quantized[t]) if t in self.quantized
                else values[t] for t in self.outputs_of]


def _downstream(graph: Graph, start: set[str]) -> tuple[Node, ...]:
    """The nodes named in ``start`` and every node that reads their outputs, transitively, in graph order."""
    reached: set[str] = set()
    nodes = []
    for node in graph.nodes:  # topological order: producers come first
        if node.name in start or any(t in reached for t in node.inputs):
            nodes.append(node)
            reached.update(node.outputs)
    return tuple(nodes)


def _flat(outputs: list[np.ndarray]) -> np.ndarray:
    n = len(outputs[0])
    return np.concatenate([o.reshape(n, -1) for o in outputs], axis=1).astype(np.float64)


def _top1(output: np.ndarray) -> np.ndarray:
    return output.reshape(len(output), -1).argmax(1)
