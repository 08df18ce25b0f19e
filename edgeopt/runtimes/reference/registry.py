"""The integer kernel registry: one entry per TFLite op kind, filled by the kernel modules.

A registered entry adapts a ``QOp`` to its kernel. It receives the op, the values of its inputs and
the program (for output shapes and the rounding mode). Every value carries a leading *run* axis in
front of the program's own shape: ``(N,) + shape`` for activations of a batch of N, ``(1,) + shape``
for constants. It returns the op's output with the same leading run axis, or a tuple of them, one
per output in ``QOp.outputs`` order, for an op with several outputs (SPLIT, SPLIT_V).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.registry import OpRegistry, Registry

Kernel = Callable[[QOp, list[np.ndarray], QProgram], np.ndarray | tuple[np.ndarray, ...]]

KERNELS: Registry[Kernel] = OpRegistry("integer kernel")


def fold_run_axis(value: np.ndarray) -> np.ndarray:
    """``(N, B, ...) -> (N * B, ...)``: the run axis joined with the program's batch axis."""
    return value.reshape((-1,) + value.shape[2:])


def constant(value: np.ndarray) -> np.ndarray:
    """The program-shaped value of a constant input (its run axis has length 1)."""
    return value[0]


def output_shape(op: QOp, program: QProgram) -> tuple[int, ...]:
    """The program's shape of the op's (single) output."""
    return program.tensor(op.outputs[0]).shape
