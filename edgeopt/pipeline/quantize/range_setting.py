"""Range setting per tensor: the clipping range each activation encoding covers.

Methods (``RANGE_METHODS``):
    * ``minmax``: the global min/max over the calibration set (what ``calibrate`` records anyway).
    * ``percentile``: each tail clipped at ``percentile`` % of the values (default 99.99: the lowest
      0.01 % and the highest 0.01 % are clipped), read from the calibration histogram.
    * ``mse``: the range ``[a, b]`` that minimises the expected squared quantization error on the
      histogram: rounding noise ``s²/12`` per non-zero value inside the range (``s = (b - a) / 255``;
      exact zeros are representable and cost nothing) plus ``(x - b)²`` / ``(a - x)²`` for each clipped
      value.
    * ``sqnr``: AIMET's SQNR analyser ("tf_enhanced"): the same noise with clipping weighted by
      ``gamma`` (3, AIMET's default), which maximises signal-to-quantization-noise ratio while
      distrusting clipping more than rounding (the signal power is fixed per tensor, so maximising
      SQNR is minimising that weighted noise; with ``gamma = 1`` it is ``mse``).

The searches are exact over a grid of ``CANDIDATES`` thresholds per side (both sides searched jointly
for tensors with both signs; one side for ReLU outputs): each candidate costs O(1) with prefix sums
over the bins. The result is a min/max pair per tensor, so ``quantize_minmax`` still applies every
TFLite rule on top of it: ranges widened to include 0, shared encodings of data-movement ops,
concatenation groups, fixed encodings of softmax/logistic/tanh (which win over any range set here).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgeopt.errors import DataError, InternalError
from edgeopt.pipeline.calibrate import TensorStats
from edgeopt.pipeline.calibrate import Histogram

RANGE_METHODS = ("minmax", "percentile", "mse", "sqnr")
CANDIDATES = 200
SQNR_GAMMA = 3.0
DEFAULT_PERCENTILE = 99.99


def set_ranges(stats: Mapping[str, TensorStats], method: str, *, bits: int = 8,
               percentile: float = DEFAULT_PERCENTILE, keep: frozenset[str] = frozenset()) -> dict[str, TensorStats]:
    """Clipping ranges for every tensor of ``stats`` by ``method``.

    Args:
        stats: calibration statistics; all methods but ``minmax`` need their histograms
            (``calibrate(..., histograms=True)``).
        method: one of ``RANGE_METHODS``.
        bits: activation bit width the noise model assumes.
        percentile: the kept percentile of each tail for ``percentile``.
        keep: tensors that keep their min/max whatever the method (e.g. the logits, whose top value
            decides top-1).

    Returns:
        New statistics (min/max only) for the same tensors.

    Raises:
        DataError: ``method`` is unknown.
        InternalError: a histogram is missing.
    """
    if method not in RANGE_METHODS:
        raise DataError(f"unknown range method '{method}': choose one of {', '.join(RANGE_METHODS)}")
    if method == "minmax":
        return {k: TensorStats(s.min, s.max) for k, s in stats.items()}
    out = {}
    for name, s in stats.items():
        if name in keep:
            out[name] = TensorStats(s.min, s.max)
            continue
        if s.histogram is None:
            raise InternalError(f"range method '{method}' needs a histogram of '{name}': calibrate with histograms=True")
        if method == "percentile":
            out[name] = percentile_range(s.histogram, percentile)
        else:
            out[name] = search_range(s.histogram, bits, gamma=1.0 if method == "mse" else SQNR_GAMMA)
    return out


def percentile_range(hist: Histogram, percentile: float) -> TensorStats:
    """``[lo, hi]`` with ``100 - percentile`` % of the values below ``lo`` and as many above ``hi``."""
    if hist.width == 0.0:
        return TensorStats(hist.min, hist.max)
    cum = np.cumsum(hist.counts)
    tail = cum[-1] * (100.0 - percentile) / 100.0
    edges = (np.arange(len(hist.counts)) + hist.first + 1) * hist.width  # upper edge of each bin
    lo_bin = int(np.searchsorted(cum, tail, side="right"))
    hi_bin = int(np.searchsorted(cum, cum[-1] - tail, side="left"))
    lo = max(hist.min, edges[lo_bin] - hist.width) if hist.min < 0 else hist.min
    hi = min(hist.max, edges[hi_bin]) if hist.max > 0 else hist.max
    return TensorStats(float(lo), float(hi))


def search_range(hist: Histogram, bits: int = 8, gamma: float = 1.0) -> TensorStats:
    """The range minimising ``rounding noise + gamma * clipping noise`` over the histogram."""
    if hist.width == 0.0:
        return TensorStats(hist.min, hist.max)
    c = hist.centers()
    n = hist.counts.astype(np.float64)
    # Prefix sums of n, n*c, n*c² give each tail's clipping error in O(1): Σ n (c - b)² = S2 - 2b S1 + b² S0.
    s0 = np.concatenate([[0.0], np.cumsum(n)])
    s1 = np.concatenate([[0.0], np.cumsum(n * c)])
    s2 = np.concatenate([[0.0], np.cumsum(n * c * c)])
    his = _candidates(hist.max)
    los = -_candidates(-hist.min)
    # Bins wholly above b (centre > b) are clipped to b; likewise below a.
    k_hi = np.searchsorted(c, his, side="right")  # first clipped bin index
    k_lo = np.searchsorted(c, los, side="left")  # bins [0, k_lo) are clipped
    up0, up1, up2 = s0[-1] - s0[k_hi], s1[-1] - s1[k_hi], s2[-1] - s2[k_hi]
    clip_hi = up2 - 2 * his * up1 + his ** 2 * up0
    dn0, dn1, dn2 = s0[k_lo], s1[k_lo], s2[k_lo]
    clip_lo = dn2 - 2 * los * dn1 + los ** 2 * dn0
    nonzero = s0[-1] - hist.zeros
    levels = 2 ** bits - 1
    # Grid (lo, hi): rounding noise of the values kept, clipping noise of the rest.
    step = (his[None, :] - los[:, None]) / levels
    kept = nonzero - up0[None, :] - dn0[:, None]
    noise = np.maximum(kept, 0.0) * step ** 2 / 12 + gamma * (clip_hi[None, :] + clip_lo[:, None])
    i, j = np.unravel_index(int(np.argmin(noise)), noise.shape)
    return TensorStats(float(los[i]), float(his[j]))


def _candidates(extent: float) -> np.ndarray:
    """Thresholds ``extent * k / CANDIDATES`` for k = 1..CANDIDATES, or just 0 when the side is empty."""
    if extent <= 0:
        return np.zeros(1)
    return extent * np.arange(1, CANDIDATES + 1) / CANDIDATES
