"""calibrate: run the float Graph on calibration data and collect per-tensor statistics.

Ranges are the global min/max over the whole calibration set (never a moving average of per-batch
ranges, which loses accuracy with small batches), accumulated sample by sample so memory stays flat.
With ``histograms=True`` each tensor also gets a streaming histogram (``Histogram``) for the
range-setting methods of ``quantize.range_setting``; min/max alone stays as cheap as before.

``Histogram`` keeps memory flat however many samples are added: bins have a width ``w`` anchored at 0
(bin ``i`` holds ``[i*w, (i+1)*w)``), and when the observed range no longer fits in ``max_bins`` bins the
width doubles, which merges bins ``2j`` and ``2j+1`` into bin ``j`` exactly (no counts are smeared,
because the anchor stays at 0). The resolution is therefore always between ``span/max_bins`` and
``2*span/max_bins`` of the final range. Exact zeros (ReLU outputs, padding) are counted apart: zero is
exactly representable in every encoding the TFLite spec allows, so range setting gives them no
rounding noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeopt.errors import DataError
from edgeopt.ir import Graph, input_arrays
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.progress import track
from edgeopt.runtimes.onnxruntime import OnnxRuntime


@dataclass(frozen=True)
class TensorStats:
    """Observed range of one tensor over the calibration set."""

    min: float
    max: float
    histogram: Histogram | None = field(default=None, compare=False, repr=False)


def calibrate(graph: Graph, x: np.ndarray, histograms: bool = False) -> dict[str, TensorStats]:
    """Statistics of the float graph inputs and of every float node output of ``graph`` over the samples
    in ``x`` (several inputs: ``ir.input_arrays``).

    Integer and boolean tensors (token ids, attention masks and what is computed from them) get none: they
    are never quantized.

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
    for outputs in track(session.iter_run(x), "calibrate (samples)", len(x)):
        for name, value in zip(names, outputs):
            if not np.issubdtype(value.dtype, np.floating):
                continue
            lo[name] = min(lo[name], float(value.min()))
            hi[name] = max(hi[name], float(value.max()))
            if histograms:
                hists[name].add(value)
    stats = {name: TensorStats(lo[name], hi[name], hists.get(name)) for name in names if lo[name] <= hi[name]}
    for info, values in zip(graph.inputs, input_arrays(x, [t.name for t in graph.inputs])):
        if not info.is_float:
            continue
        x_hist = None
        if histograms:
            x_hist = Histogram()
            for i in range(len(values)):
                x_hist.add(values[i])
        stats[info.name] = TensorStats(float(values.min()), float(values.max()), x_hist)
    return stats


DEFAULT_BINS = 8192


class Histogram:
    """Counts of a tensor's values in bins of a common width anchored at zero, plus its exact min/max."""

    def __init__(self, max_bins: int = DEFAULT_BINS) -> None:
        self.max_bins = max_bins
        self.width = 0.0
        self.first = 0  # index of counts[0]: it holds [first*width, (first+1)*width)
        self.counts = np.zeros(0, np.int64)
        self.zeros = 0
        self.min = np.inf
        self.max = -np.inf

    @property
    def total(self) -> int:
        """How many values were added."""
        return int(self.counts.sum()) if self.width else self.zeros

    def add(self, x: np.ndarray) -> None:
        """Count the values of ``x`` (any shape)."""
        x = np.asarray(x, np.float64).ravel()
        if x.size == 0:
            return
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        self.zeros += int(np.count_nonzero(x == 0))
        if self.width == 0.0:
            span = max(self.max, 0.0) - min(self.min, 0.0)
            if span == 0.0:  # only zeros so far: no width to choose yet, ``zeros`` holds them
                return
            # Half the bins at first leaves room to grow before the first merge.
            self.width = span / (self.max_bins // 2)
            self.first = self._index(min(self.min, 0.0))
            self.counts = np.zeros(self._index(max(self.max, 0.0)) - self.first + 1, np.int64)
            self.counts[-self.first] += self.zeros - int(np.count_nonzero(x == 0))  # the earlier zeros
        lo_i, hi_i = self._index(self.min), self._index(self.max)
        while max(hi_i, self.last) - min(lo_i, self.first) + 1 > self.max_bins:
            self._merge_pairs()
            lo_i, hi_i = self._index(self.min), self._index(self.max)
        self._extend(lo_i, hi_i)
        idx = np.floor(x / self.width).astype(np.int64) - self.first
        self.counts += np.bincount(idx, minlength=len(self.counts))

    @property
    def last(self) -> int:
        """Index of the last bin."""
        return self.first + len(self.counts) - 1

    def centers(self) -> np.ndarray:
        """The centre of every bin, in the order of ``counts``."""
        return (np.arange(len(self.counts)) + self.first + 0.5) * self.width

    def _index(self, v: float) -> int:
        return int(np.floor(v / self.width))

    def _merge_pairs(self) -> None:
        idx = np.arange(len(self.counts)) + self.first
        new_first = self.first // 2  # floor division: exact for negative indices too
        merged = np.bincount(idx // 2 - new_first, weights=self.counts)
        self.counts, self.first, self.width = np.rint(merged).astype(np.int64), new_first, self.width * 2

    def _extend(self, lo_i: int, hi_i: int) -> None:
        new_lo, new_hi = min(lo_i, self.first), max(hi_i, self.last)
        if (new_lo, new_hi) != (self.first, self.last):
            grown = np.zeros(new_hi - new_lo + 1, np.int64)
            grown[self.first - new_lo: self.first - new_lo + len(self.counts)] = self.counts
            self.first, self.counts = new_lo, grown
