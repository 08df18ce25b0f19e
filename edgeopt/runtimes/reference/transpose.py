"""TRANSPOSE: TFLite ``reference/transpose.h``."""
from __future__ import annotations

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, constant


def transpose(x: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """``out.shape[i] = x.shape[perm[i]]``, ``out[..., i_k, ...] = x[... i at axis perm[k] ...]``."""
    return np.ascontiguousarray(np.transpose(x, perm))


@KERNELS.register("TRANSPOSE")
def _run_transpose(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    perm = [int(a) for a in constant(args[1])]
    return transpose(args[0], (0, *(a + 1 for a in perm)))
