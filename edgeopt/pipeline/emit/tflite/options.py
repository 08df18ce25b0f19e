"""The per-op half of the TFLite writer: ``OP_WRITERS`` and the helpers its writers share.

One writer per op kind maps ``QOp.options`` to the op's builtin options and picks the op version the
converter assigns (``tensorflow/lite/tools/versioning/op_version.cc``) for the types a QProgram holds:
int8 activations and weights, or float32 for a float island (16x8 versions are raised afterwards by
``int16.int16_encoding``). Kinds and ranks that op_version.cc does not raise stay at version 1, as the
converter leaves them. The writers live in one module per op family beside this one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ai_edge_litert import schema_py_generated as schema

from edgeopt.errors import InternalError, UnsupportedOpError
from edgeopt.qprogram import FUSED_ACTIVATIONS, QOp, QProgram
from edgeopt.registry import OpRegistry, Registry


@dataclass(frozen=True)
class OpEncoding:
    """How one QOp appears in the flatbuffer: builtin code, op version and builtin options."""

    code: int
    version: int
    options_type: int
    options: Any


OpWriter = Callable[[QOp, QProgram], OpEncoding]
OP_WRITERS: Registry[OpWriter] = OpRegistry("TFLite op writer")

# Marks an option with no TFLite default: a lowering that leaves it out has a bug, hence InternalError.
REQUIRED = object()


def option(op: QOp, key: str, default: Any = REQUIRED) -> Any:
    """``op.options[key]``, or ``default`` when absent.

    Raises:
        InternalError: the option is absent and ``default`` is ``REQUIRED``.
    """
    if key in op.options:
        return op.options[key]
    if default is REQUIRED:
        raise InternalError(f"{op.kind} op '{op.source}' lacks option '{key}'")
    return default


def enum_option(op: QOp, key: str, enum: type, allowed: tuple[str, ...], default: Any = REQUIRED) -> int:
    """The schema's integer for an option held as an enum name (``"SAME"`` → ``schema.Padding.SAME``).

    Raises:
        UnsupportedOpError: the value is not one of ``allowed``.
        InternalError: the option is absent and ``default`` is ``REQUIRED``.
    """
    value = option(op, key, default)
    if value not in allowed:
        raise UnsupportedOpError(op.kind, op.source, f"{key} {value!r} is not one of {', '.join(allowed)}")
    return int(getattr(enum, value))


def padding(op: QOp) -> int:
    """The op's ``padding`` (SAME or VALID) as ``schema.Padding``."""
    return enum_option(op, "padding", schema.Padding, ("SAME", "VALID"))


def activation(op: QOp) -> int:
    """The op's ``fused_activation_function`` (NONE when absent) as ``schema.ActivationFunctionType``."""
    return enum_option(op, "fused_activation_function", schema.ActivationFunctionType, FUSED_ACTIVATIONS, "NONE")


def input_dtype(program: QProgram, op: QOp, i: int) -> str:
    """The dtype of the op's ``i``-th input."""
    return program.tensors[op.inputs[i]].dtype


def input_rank(program: QProgram, op: QOp) -> int:
    """The rank of the op's first input."""
    return len(program.tensors[op.inputs[0]].shape)


def reads_int8(program: QProgram, op: QOp) -> bool:
    """Whether the op runs on int8 data (its first input), the case that raises most op versions."""
    return input_dtype(program, op, 0) == "int8"


def int8_version(program: QProgram, op: QOp) -> int:
    """Version 2 on int8 data, 1 on float32: the rule op_version.cc applies to most kinds."""
    return 2 if reads_int8(program, op) else 1


def require_same_encoding(op: QOp, program: QProgram) -> None:
    """Refuse an op that TFLite runs on raw int8 values (AVERAGE_POOL_2D, data movement) but whose output
    encoding differs from its input's.

    The reference kernels then silently ignore the output encoding and XNNPACK refuses the op (PAD,
    TRANSPOSE), so such a program must not be written.

    Raises:
        InternalError: the encodings differ.
    """
    x, y = program.tensors[op.inputs[0]].qparams, program.tensors[op.outputs[0]].qparams
    if x is not None and y is not None and not x.same_as(y):
        raise InternalError(f"{op.kind} op '{op.source}' has an output encoding different from its input's")
