"""The simulation of a quantized graph next to its integer execution, for the QuantSim tests."""
from __future__ import annotations

import numpy as np
import torch

from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.evaluate import run_int8
from edgeopt.qprogram import QProgram
from edgeopt.torch.quantsim import QuantSimModule, simulate


def sim_and_executor(qgraph: QuantizedGraph | QuantSimModule, program: QProgram,
                     x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(simulated outputs, executed outputs, |difference| in output quantization steps) on ``x``."""
    module = qgraph if isinstance(qgraph, QuantSimModule) else simulate(qgraph, rounding=program.rounding)
    with torch.no_grad():
        simulated = module(torch.from_numpy(x)).numpy()
    executed = run_int8(program, x)
    steps = np.abs(simulated - executed) / float(program.tensor(program.outputs[0]).qparams.scale[0])
    return simulated, executed, steps
