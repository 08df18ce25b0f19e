"""The reference executor's two registries, keyed by (op kind, mode), and the helpers kernels share.

``KERNELS`` holds one kernel per kind and mode of ``qprogram.OPS``; ``PREPARERS`` one Prepare per kind and
mode in its row's ``prepared``. Both refuse, when a module registers, a kind outside ``OPS`` or a mode
its row does not list; ``tests/runtimes/reference/test_op_registries.py`` checks that they cover the table. An op's mode is
``qprogram.op_mode``: TFLite's kernels pick their path from the tensor types the same way.

A kernel adapts a ``QOp`` to its arithmetic. It receives the op, the values of its inputs and the
program (for output shapes and the rounding mode). Every value carries a leading *run* axis in front of
the program's own shape: ``(N,) + shape`` for activations of a batch of N, ``(1,) + shape`` for
constants. It returns the op's output with the same leading run axis, or a tuple of them, one per
output in ``QOp.outputs`` order, for an op with several outputs (SPLIT, SPLIT_V).

Float32 kernels (float islands: an op whose output tensor is float32) compute in numpy float32 in the
order LiteRT 2.3's float reference kernels (``BUILTIN_REF``) compute in C++ float, and read their
options directly: they take no Prepare. Each one's docstring says where it is bit-exact.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import OPS, Mode, QOp, QProgram
from edgeopt.registry import OpModeRegistry

Kernel = Callable[[QOp, list[np.ndarray], QProgram], np.ndarray | tuple[np.ndarray, ...]]
Params = dict[str, Any]
"""What a Prepare computes (TFLite's ``*Params`` field names, snake_case); untyped for now."""
Preparer = Callable[[QOp, QProgram], Params]

KERNELS: OpModeRegistry[Kernel] = OpModeRegistry("kernel", column="modes")
PREPARERS: OpModeRegistry[Preparer] = OpModeRegistry("Prepare", column="prepared")

# How a missing kernel is named to the user, per mode.
_MODE_KERNEL = {"int8": "integer kernel", "16x8": "int16 (16x8) kernel", "float32": "float32 kernel"}

F32 = np.float32
# TFLite's float activation bounds (CalculateActivationRange<float>).
ACTIVATION_BOUNDS = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0),
                     "RELU_N1_TO_1": (-1.0, 1.0)}


def kernel_for(op: QOp, mode: Mode) -> Kernel:
    """The kernel of ``op`` in ``mode``.

    Raises:
        UnsupportedOpError: no kernel of that kind runs in that mode here.
    """
    if (op.kind, mode) not in KERNELS:
        supported = ", ".join(KERNELS.kinds(mode))
        raise UnsupportedOpError(op.kind, op.source, f"no {_MODE_KERNEL[mode]} (supported: {supported})")
    return KERNELS.get(op.kind, mode)


def needs_params(op: QOp, mode: Mode) -> bool:
    """Whether ``op``'s kernel in ``mode`` reads ``params`` from a Prepare (``OpKind.prepared``); a kind
    outside ``OPS`` counts as needing them, so that preparing it reports it."""
    row = OPS.get(op.kind)
    return row is None or mode in row.prepared


def fold_run_axis(value: np.ndarray) -> np.ndarray:
    """``(N, B, ...) -> (N * B, ...)``: the run axis joined with the program's batch axis."""
    return value.reshape((-1,) + value.shape[2:])


def constant(value: np.ndarray) -> np.ndarray:
    """The program-shaped value of a constant input (its run axis has length 1)."""
    return value[0]


def output_shape(op: QOp, program: QProgram) -> tuple[int, ...]:
    """The program's shape of the op's (single) output."""
    return program.tensor(op.outputs[0]).shape


def right_aligned(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two run-axis values with the program axes of the lower-rank one aligned to the right, after the
    run axis, so that numpy broadcasts them as it would the program shapes."""
    rank = max(a.ndim, b.ndim)
    a = a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:])
    b = b.reshape(b.shape[:1] + (1,) * (rank - b.ndim) + b.shape[1:])
    return a, b


def fused_activation_float(op: QOp, y: np.ndarray) -> np.ndarray:
    """``y`` clamped to the op's fused activation in float32 (``ActivationFunctionWithMinMax``)."""
    act = op.options.get("fused_activation_function", "NONE")
    if act not in ACTIVATION_BOUNDS:
        raise UnsupportedOpError(op.kind, op.source, f"fused activation {act} is not supported")
    lo, hi = ACTIVATION_BOUNDS[act]
    return y if act == "NONE" else np.clip(y, F32(lo), F32(hi)).astype(F32)


def float_bias(args: list[np.ndarray], index: int, channels: int) -> np.ndarray:
    """The float32 bias input, or zeros when it is left out (an empty optional input, which the
    executor does not pass)."""
    return constant(args[index]).astype(F32) if len(args) > index else np.zeros(channels, F32)
