"""calibrate: run the float Graph on calibration data and collect per-tensor statistics.

Ranges are the global min/max over the whole calibration set (never a moving average of per-batch
ranges, which loses accuracy with small batches), accumulated sample by sample so memory stays flat.
With ``histograms=True`` each tensor also gets a streaming histogram (``calibrate_histogram``) for the
range-setting methods of ``quantize.range_setting``; min/max alone stays as cheap as before.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeopt.errors import DataError
from edgeopt.ir import Graph
from edgeopt.pipeline.calibrate_histogram import Histogram
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.runtimes.onnxruntime import OnnxRuntime


@dataclass(frozen=True)
class TensorStats:
    """Observed range of one tensor over the calibration set."""

    min: float
    max: float
    histogram: Histogram | None = field(default=None, compare=False, repr=False)


def calibrate(graph: Graph, x: np.ndarray, histograms: bool = False) -> dict[str, TensorStats]:
    """Statistics of the graph input and of every node output of ``graph`` over the samples in ``x``.

    ``histograms``: also collect a histogram per tensor (for percentile/MSE/SQNR range setting).

    Raises:
        DataError: ``x`` is empty.
    """
    if len(x) == 0:
        raise DataError("the calibration set is empty")
    session = OnnxRuntime(graph_to_onnx(graph, expose_all=True))
    names = session.output_names
    lo = {name: np.inf for name in names}
    hi = {name: -np.inf for name in names}
    hists = {name: Histogram() for name in names} if histograms else {}
    for outputs in session.iter_run(x):
        for name, value in zip(names, outputs):
            lo[name] = min(lo[name], float(value.min()))
            hi[name] = max(hi[name], float(value.max()))
            if histograms:
                hists[name].add(value)
    stats = {name: TensorStats(lo[name], hi[name], hists.get(name)) for name in names}
    input_name = graph.inputs[0].name
    x_hist = None
    if histograms:
        x_hist = Histogram()
        for i in range(len(x)):
            x_hist.add(x[i])
    stats[input_name] = TensorStats(float(x.min()), float(x.max()), x_hist)
    return stats
