"""Label-free fine-tuning of a compressed float Graph by knowledge distillation from the uncompressed one.

Hinton et al. 2015, "Distilling the knowledge in a neural network": the student (compressed) learns to
reproduce the teacher's (uncompressed) outputs on unlabelled inputs, here by the mean squared error of
the logits (equivalent to distillation at a high temperature), with Adam and a cosine learning rate.
Only the weights and biases of Conv, Gemm and MatMul nodes train; both graphs run as torch modules
built from the IR's own ops (``edgeopt.torch.ops``). With ``augment``, every batch is seen through a random
horizontal flip and a random translation of up to an eighth of its height and width (zero fill), and
the teacher's targets are computed on that same view, so a few hundred calibration images give many
distinct training inputs (the usual CIFAR/ImageNet augmentations, which need no labels). Batch norms are folded into their convs first
(``fold_batch_norm``, exact), so there are no running statistics left to re-estimate: the folded
biases train instead. The result is a Graph with the same nodes and new weight values.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from edgeopt.ir import Graph
from edgeopt.pipeline.optimize.fold_batch_norm import fold_batch_norm
from edgeopt.torch.ops import TORCH_OPS

log = logging.getLogger(__name__)

TRAINABLE_OPS = ("Conv", "Gemm", "MatMul")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": torch.relu, "Relu6": lambda t: torch.clamp(t, 0.0, 6.0)}


class FloatGraphModule(nn.Module):
    """A float Graph as a torch module: weights and biases of Conv/Gemm/MatMul are parameters."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        trained = {t for n in graph.nodes if n.op in TRAINABLE_OPS for t in n.inputs[1:3] if t in graph.initializers}
        self.names = {name: f"p{i}" for i, name in enumerate(graph.initializers)}
        self.params = nn.ParameterDict({self.names[k]: nn.Parameter(torch.from_numpy(np.array(v, np.float32)))
                                        for k, v in graph.initializers.items() if k in trained})
        for k, v in graph.initializers.items():
            if k not in trained:
                self.register_buffer(self.names[k], torch.from_numpy(np.array(v)), persistent=False)

    def constant(self, name: str) -> torch.Tensor:
        key = self.names[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.graph.inputs[0].name: x}
        for node in self.graph.nodes:
            args = [None if not t else env[t] if t in env else self.constant(t) for t in node.inputs]
            y = TORCH_OPS[node.op](node, args, self.graph)
            for out, value in zip(node.outputs, y if isinstance(y, tuple) else (y,)):
                if "fused_activation" in node.attrs:
                    value = ACTIVATIONS[node.attrs["fused_activation"]](value)
                env[out] = value
        return env[self.graph.outputs[0].name]

    def to_graph(self) -> Graph:
        """The Graph with the module's current parameter values."""
        inits = dict(self.graph.initializers)
        for name, key in self.names.items():
            if key in self.params:
                inits[name] = self.params[key].detach().numpy().astype(np.float32)
        return self.graph.replace(initializers=inits)


def augmented(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with each sample flipped left-right with probability 1/2 and shifted by up to
    H/8 rows and W/8 columns (zero fill), the flips and shifts drawn from ``generator``."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    dy = torch.randint(0, 2 * ph + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pw + 1, (n,), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def distill(student: Graph, teacher: Graph, x: np.ndarray, *, epochs: int = 5, batch: int = 64,
            lr: float = 1e-4, augment: bool = False, progress: Callable[[str], None] | None = None) -> Graph:
    """Fine-tune ``student`` to reproduce ``teacher``'s first output on the unlabelled inputs ``x``.

    Args:
        student: the compressed model (not modified).
        teacher: the uncompressed model.
        x: unlabelled inputs, a batch of the models' input.
        epochs: passes over ``x``.
        batch: samples per step.
        lr: Adam's initial learning rate (cosine-annealed to 0).
        augment: train on randomly flipped and shifted views of ``x`` (``augmented``); needs NCHW images.
        progress: told the epoch and the loss after each epoch.
    """
    torch.manual_seed(0)
    model, reference = FloatGraphModule(fold_batch_norm(student)), FloatGraphModule(fold_batch_norm(teacher)).eval()
    data = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    generator = torch.Generator().manual_seed(0)
    targets = None if augment else outputs_of(reference, data, batch)

    def batches(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if targets is not None:
            return data[idx], targets[idx]
        inputs = augmented(data[idx], generator)
        with torch.no_grad():
            return inputs, reference(inputs)

    fit_outputs(model, batches, len(data), epochs=epochs, batch=batch, lr=lr, what="distillation", progress=progress)
    return model.to_graph()


def outputs_of(module: nn.Module, data: torch.Tensor, batch: int) -> torch.Tensor:
    """``module``'s outputs on ``data``, computed ``batch`` samples at a time without gradients."""
    with torch.no_grad():
        return torch.cat([module(data[i:i + batch]) for i in range(0, len(data), batch)])


def fit_outputs(student: nn.Module, batches: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], n: int, *,
                epochs: int, batch: int, lr: float, what: str, progress: Callable[[str], None] | None,
                micro_batch: int | None = None) -> None:
    """Train ``student``'s parameters that require gradients to reproduce wanted outputs: Adam with a cosine
    learning rate (to 0 over all steps) on the mean squared error of the first output.

    Each epoch draws a fresh permutation of the ``n`` samples; ``batches(indices)`` gives each step's inputs
    and wanted outputs. After each epoch, the mean loss is logged and told to ``progress`` as ``what``'s epoch.
    ``micro_batch``: run each step's forward and backward passes this many samples at a time and sum their
    gradients before the step (the same loss and gradient, up to float rounding): memory then holds one
    micro-batch's activations, not the step's.
    """
    params = [p for p in student.parameters() if p.requires_grad]
    steps = epochs * math.ceil(n / batch)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n)
        total = 0.0
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            if micro_batch is None or micro_batch >= len(idx):
                inputs, wanted = batches(idx)
                out = student(inputs)
                loss = torch.mean(((out[0] if isinstance(out, tuple) else out) - wanted) ** 2)
                loss.backward()
                total += float(loss.detach()) * len(idx)
            else:
                for j in range(0, len(idx), micro_batch):
                    part = idx[j:j + micro_batch]
                    inputs, wanted = batches(part)
                    out = student(inputs)
                    # The step's mean over all its samples: this part's sum of squares over the step's count.
                    loss = torch.sum(((out[0] if isinstance(out, tuple) else out) - wanted) ** 2)
                    loss = loss / (wanted.numel() // len(part) * len(idx))
                    loss.backward()
                    total += float(loss.detach()) * len(idx)
            opt.step()
            sched.step()
        message = f"{what} epoch {epoch + 1}/{epochs}: loss {total / n:.4g} ({time.perf_counter() - start:.0f} s)"
        log.info(message)
        if progress:
            progress(message)
