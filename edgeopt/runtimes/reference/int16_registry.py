"""Registries of TFLite's 16x8 kernels (int16 activations, int8 weights): their Prepare and integer kernels.

An op runs in 16x8 mode when one of its activation tensors (an input or output that is not a constant)
is int16: TFLite's kernels pick their int16 path from the tensor types, as ``runs_in_int16`` does here.
``prepare.prepare_program`` and the executor dispatch such ops to these registries instead of the int8
ones, so a kind appears here only once its int16 arithmetic is reproduced (a program with an int16 op of
another kind is refused by name instead of being run by an int8 kernel).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.registry import OpRegistry, Registry
from edgeopt.runtimes.reference.registry import Kernel

INT16_PREPARERS: Registry[Callable[[QOp, QProgram], dict[str, Any]]] = OpRegistry("int16 (16x8) prepare")
INT16_KERNELS: Registry[Kernel] = OpRegistry("int16 (16x8) integer kernel")


def runs_in_int16(op: QOp, program: QProgram) -> bool:
    """Whether ``op`` reads or writes an int16 activation (constants do not count)."""
    names = (*op.inputs, *op.outputs)
    return any(n and program.tensor(n).dtype == "int16" and not program.tensor(n).is_constant for n in names)


def prepare_int16(op: QOp, program: QProgram) -> dict[str, Any]:
    """The 16x8 Prepare of ``op``.

    Raises:
        UnsupportedOpError: no int16 kernel of that kind is reproduced here.
    """
    if op.kind not in INT16_PREPARERS:
        raise UnsupportedOpError(op.kind, op.source, f"no int16 (16x8) kernel (supported: {', '.join(INT16_PREPARERS)})")
    return INT16_PREPARERS.get(op.kind)(op, program)
