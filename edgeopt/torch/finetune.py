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

import math
from collections.abc import Callable

import numpy as np
import torch

from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.target import Target
from edgeopt.torch.distill import FloatGraphModule, fit_outputs, outputs_of
from edgeopt.torch.quantsim import QuantSimModule

ACTIVATION_BYTES = 1 << 30
"""What a training step's forward and backward passes may hold; larger batches run in micro-batches."""
SAVED_PER_ACTIVATION = 8
"""Bytes autograd holds per activation element of the graph and sample, over 4 (float32): the QuantSim's fake
quantizers save several tensors each (measured on EfficientNet-Lite0 at 224x224: 194 MB a sample for
26.5 MB of float32 activations, a factor of 7.3)."""


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
        targets = outputs_of(reference, data, batch)
        student.train()
        fit_outputs(student, lambda idx: (data[idx], targets[idx]), len(data), epochs=epochs, batch=batch, lr=lr,
                    what="quantization-aware fine-tuning", progress=progress, micro_batch=micro_batch(qgraph.graph))
        return student.current_graph()
    finally:
        torch.set_num_threads(previous)


def micro_batch(graph: Graph) -> int:
    """Samples per forward and backward pass such that autograd holds about ``ACTIVATION_BYTES``: the sum of
    the graph's activation elements per sample, times 4 bytes and ``SAVED_PER_ACTIVATION``."""
    per_sample = 4 * SAVED_PER_ACTIVATION * sum(math.prod(graph.shape(n.outputs[0])[1:]) for n in graph.nodes)
    return max(1, ACTIVATION_BYTES // max(per_sample, 1))
