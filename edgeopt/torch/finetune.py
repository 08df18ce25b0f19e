"""Quantization-aware fine-tuning by distillation: the int8 program's simulation (``QuantSimModule``,
whose forward equals the integer program) learns to reproduce the fp32 model's outputs on unlabelled
inputs (the calibration images), on the CPU.

The automatic recipe's last post-training resort (``workflows.recipe``): where equalization, bias
correction, range setting and AdaRound leave the int8 program short of the budget, the weights and biases
of every Conv/Gemm/MatMul are trained through the fake quantizers (straight-through estimator; weight
encodings recomputed from the current weights as ``Target.weight_encoding`` gives them, activation
encodings held) to minimise the mean squared error between the simulated int8 outputs and the fp32
model's (label-free distillation, as ``torch.distill`` does for compressed float models). The result is
a float Graph with the trained weights, which the recipe quantizes again with the same activation ranges.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.target import Target
from edgeopt.torch.distill import FloatGraphModule
from edgeopt.torch.quantsim import QuantSimModule

log = logging.getLogger(__name__)


def finetune_quantized(qgraph: QuantizedGraph, teacher: Graph, x: np.ndarray, target: Target, *,
                       epochs: int = 2, batch: int = 16, lr: float = 1e-5, threads: int = 1,
                       progress: Callable[[str], None] | None = None) -> Graph:
    """Fine-tune the weights of ``qgraph``'s simulation towards ``teacher``'s first output on ``x``.

    Args:
        qgraph: the int8 quantized graph to start from (its activation encodings are kept fixed).
        teacher: the fp32 model (same input and first output).
        x: unlabelled inputs (the calibration set).
        target: the device's rules: weight grids and the requantization rounding the simulation follows.
        epochs: passes over ``x``.
        batch: samples per Adam step.
        lr: Adam's initial learning rate (cosine-annealed to 0).
        threads: torch intra-op threads while training (restored afterwards).
        progress: told the epoch and the loss after each epoch.

    Returns:
        ``qgraph``'s float graph with the trained weights and biases.
    """
    torch.manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        student = QuantSimModule(qgraph.graph, target=target, rounding=target.rounding)
        student.load_encodings(qgraph)
        reference = FloatGraphModule(teacher).eval()
        data = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        with torch.no_grad():
            targets = torch.cat([reference(data[i:i + batch]) for i in range(0, len(data), batch)])
        steps = epochs * math.ceil(len(data) / batch)
        params = [p for p in student.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        start = time.perf_counter()
        student.train()
        for epoch in range(epochs):
            order = torch.randperm(len(data))
            total = 0.0
            for i in range(0, len(data), batch):
                idx = order[i:i + batch]
                out = student(data[idx])
                out = out[0] if isinstance(out, tuple) else out
                loss = torch.mean((out - targets[idx]) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            message = f"quantization-aware fine-tuning epoch {epoch + 1}/{epochs}: loss {total / len(data):.4g} " \
                      f"({time.perf_counter() - start:.0f} s)"
            log.info(message)
            if progress:
                progress(message)
        return student.current_graph()
    finally:
        torch.set_num_threads(previous)
