"""MAC counts of the float-island ops without an int8 counterpart in ``cost.MAC_COUNTERS`` (GELU,
SQUARED_DIFFERENCE, RSQRT). ``cost`` prices every op whose output is float32 at the fp32 rate; QUANTIZE,
DEQUANTIZE and the float ADD, SUB, MUL and MEAN share the int8 kinds' counters (no MACs)."""
from __future__ import annotations

import math

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.cost import MAC_COUNTERS


@MAC_COUNTERS.register("GELU", "SQUARED_DIFFERENCE")
def elementwise_multiply_macs(op: QOp, program: QProgram) -> int:
    """One multiply per output element (GELU's erfc or tanh polynomial counted as one, as SOFTMAX's
    exponentials are)."""
    return math.prod(program.tensor(op.outputs[0]).shape)


@MAC_COUNTERS.register("RSQRT")
def rsqrt_macs(op: QOp, program: QProgram) -> int:
    """None: one square root and division per element, priced by the bytes it moves."""
    return 0
