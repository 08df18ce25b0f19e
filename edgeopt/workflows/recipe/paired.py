"""The drop from fp32 measured on the same samples (a paired difference) and its standard error.

The accuracy of one program on ``n`` samples has a binomial standard error ``100 sqrt(p (1 - p) / n)``
(1.8 points at 80 % on 500 samples). The recipe's budget is on the *difference* between fp32 and int8 on
the same samples, and samples that both get right (or both wrong) add nothing to it: per sample
``d_i = fp32_i - int8_i`` is -1, 0 or 1, the drop is ``100 mean(d)`` and its standard error
``100 std(d) / sqrt(n)``, which depends only on the samples where the two disagree. With int8 flipping
the answer on 5 % of the samples it is 1.0 point on 500 samples instead of 1.8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDrop:
    """fp32 minus int8 accuracy on the same ``samples`` (points), and one standard error of it."""

    samples: int
    drop: float
    se: float

    def to_json(self) -> dict:
        return {"samples": self.samples, "drop": round(self.drop, 4), "drop_se": round(self.se, 4)}


def hits(out: np.ndarray, labels: np.ndarray | None, fp32_out: np.ndarray) -> np.ndarray:
    """Per sample, whether ``out`` is right: its top-1 is the label, or without labels fp32's top-1."""
    n = len(out)
    predicted = out.reshape(n, -1).argmax(1)
    reference = labels.reshape(n) if labels is not None else fp32_out.reshape(n, -1).argmax(1)
    return predicted == reference


def paired_drop(fp32_hits: np.ndarray, int8_hits: np.ndarray) -> PairedDrop:
    """The drop ``100 mean(fp32_hits - int8_hits)`` and its standard error ``100 std(d, ddof=1) / sqrt(n)``
    (0 below two samples)."""
    d = fp32_hits.astype(np.float64) - int8_hits.astype(np.float64)
    n = len(d)
    se = 100.0 * float(np.std(d, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return PairedDrop(n, 100.0 * float(d.mean()) if n else 0.0, se)
