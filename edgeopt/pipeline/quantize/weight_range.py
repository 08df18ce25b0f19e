"""Weight range setting by MSE: the per-tensor weight scale that minimises the weights' own quantization
error, instead of the min/max scale ``max|w| / qmax``.

Under one scale per tensor, a layer whose channels differ widely (a MobileNet depthwise layer after batch
norm folding) spends its 255 levels on its largest channel: the min/max grid rounds the small channels
to a few levels or to zero. Clipping the largest weights (a smaller scale) trades their clipping error
for a finer grid for every other weight. ``mse_weight_scale`` tries ``CANDIDATES`` scales from
``MIN_FRACTION`` to 1 times the min/max scale and keeps the one with the least squared error
``sum (w - s * clip(round(w / s), qmin, qmax))^2`` (AIMET's and MQBench's MSE weight observers search the
same way). Used by ``Target.weight_encoding`` when its ``weight_range_method`` is ``"mse"``.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import QParams

WEIGHT_RANGE_METHODS = ("minmax", "mse")
CANDIDATES = 100
MIN_FRACTION = 0.05


def mse_weight_scale(weight: np.ndarray, w_q: QParams, qmin: int, qmax: int) -> QParams:
    """``w_q`` (a per-tensor weight encoding, zero point 0) with its scale replaced by the candidate of least
    squared quantization error of ``weight`` on the integer range ``[qmin, qmax]``; ``w_q`` itself when
    it is per-channel or the weight is all zeros."""
    if w_q.per_channel or not np.any(weight):
        return w_q
    w = np.asarray(weight, np.float64).reshape(-1)
    base = float(w_q.scale[0])
    best, best_err = base, np.inf
    for fraction in np.linspace(MIN_FRACTION, 1.0, CANDIDATES):
        s = float(np.float32(base * fraction))
        err = float(np.sum((w - s * np.clip(np.round(w / s), qmin, qmax)) ** 2))
        if err < best_err:
            best, best_err = s, err
    return QParams(np.float32(best), 0, w_q.dtype)
