"""MAC counts of the compute ops beyond the first set (SOFTMAX, TRANSPOSE_CONV, BATCH_MATMUL and the float
ops of float islands), registered into ``cost.MAC_COUNTERS``."""
from __future__ import annotations

import math

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.cost import MAC_COUNTERS


@MAC_COUNTERS.register("TRANSPOSE_CONV")
def transpose_conv_macs(op: QOp, program: QProgram) -> int:
    """Input elements x KH x KW x Co, with ``w[Co, KH, KW, Ci]``: each input scatters a KHxKWxCo patch."""
    co, kh, kw, _ = program.tensor(op.inputs[1]).shape
    return math.prod(program.tensor(op.inputs[2]).shape) * kh * kw * co


@MAC_COUNTERS.register("SOFTMAX")
def softmax_macs(op: QOp, program: QProgram) -> int:
    """One multiply per element for the normalisation (the exponentials are table or polynomial work,
    counted as memory traffic)."""
    return math.prod(program.tensor(op.outputs[0]).shape)


@MAC_COUNTERS.register("BATCH_MATMUL")
def batch_matmul_macs(op: QOp, program: QProgram) -> int:
    """Output elements x K, with ``lhs[..., M, K]``."""
    return math.prod(program.tensor(op.outputs[0]).shape) * program.tensor(op.inputs[0]).shape[-1]
