"""Label-free fine-tuning of a compressed float Graph by knowledge distillation from the uncompressed one.

Hinton et al. 2015, "Distilling the knowledge in a neural network": the student (compressed) learns to
reproduce the teacher's (uncompressed) outputs on unlabelled inputs, here by the mean squared error of
the logits (equivalent to distillation at a high temperature), with Adam and a cosine learning rate.
With ``features`` the student also matches the teacher's residual stream (the outputs of the blocks'
Adds that both graphs compute at the same shape; Romero et al. 2015, "FitNets"), which tells it where
its error arises, not only that there is one. Only the weights and biases of Conv, Gemm and MatMul
nodes train; both graphs run as torch modules built from the IR's own ops (``edgeopt.torch.ops``), on
channels-last images. With ``augment`` (and ``mix``), every batch is seen through random flips and shifts
(and mixup or cutmix, ``edgeopt.torch.views``), and the teacher's targets are computed on that same view,
so a few thousand calibration images give many distinct training inputs without labels. Batch norms are
folded into their convs first (``fold_batch_norm``, exact), so there are no running statistics left to
re-estimate: the folded biases train instead. The result is a Graph with the same nodes and new weight
values.

Defaults, from ResNet-32 on CIFAR-10 compressed to 50 % of its MACs (README "Compression"): Adam at
3e-4 (1e-3 diverged, 1e-4 learnt slower); feature weight 10 (after 20 epochs on flips and shifts of
4000 training images, logit squared error 2.4 on 1000 others against 3.4 for logits alone; weights 1,
3, 10, 30 after 5 epochs: 3.9, 3.6, 3.3, 3.1); no mix (mixup: 2.6).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeopt.errors import OptionError
from edgeopt.ir import Graph
from edgeopt.pipeline.optimize.fold_batch_norm import fold_batch_norm
from edgeopt.torch.ops import TORCH_OPS
from edgeopt.torch.views import MIXES, view

log = logging.getLogger(__name__)

TRAINABLE_OPS = ("Conv", "Gemm", "MatMul")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": torch.relu, "Relu6": lambda t: torch.clamp(t, 0.0, 6.0)}


class FloatGraphModule(nn.Module):
    """A float Graph as a torch module: weights and biases of Conv/Gemm/MatMul are parameters; ``taps`` names
    intermediate tensors that ``forward`` returns after the first output."""

    def __init__(self, graph: Graph, taps: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.graph, self.taps = graph, taps
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

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The first output, or with ``taps`` the tuple of it and the tapped tensors."""
        env = {self.graph.inputs[0].name: x}
        for node in self.graph.nodes:
            args = [None if not t else env[t] if t in env else self.constant(t) for t in node.inputs]
            y = TORCH_OPS[node.op](node, args, self.graph)
            for out, value in zip(node.outputs, y if isinstance(y, tuple) else (y,)):
                if "fused_activation" in node.attrs:
                    value = ACTIVATIONS[node.attrs["fused_activation"]](value)
                env[out] = value
        output = env[self.graph.outputs[0].name]
        return (output, *(env[t] for t in self.taps)) if self.taps else output

    def to_graph(self) -> Graph:
        """The Graph with the module's current parameter values."""
        inits = dict(self.graph.initializers)
        for name, key in self.names.items():
            if key in self.params:
                inits[name] = self.params[key].detach().numpy().astype(np.float32)
        return self.graph.replace(initializers=inits)


def residual_stream(student: Graph, teacher: Graph) -> tuple[str, ...]:
    """The outputs of the teacher's Add nodes (a residual network's stream between blocks, before its
    activation) that the student computes under the same name and shape: the tensors feature matching
    compares. A stream whose channels were pruned has another shape in the student and is left out."""
    made = {out for node in student.nodes for out in node.outputs}
    return tuple(out for node in teacher.nodes if node.op == "Add" for out in node.outputs[:1]
                 if out in made and student.shape(out) == teacher.shape(out))


def distill(student: Graph, teacher: Graph, x: np.ndarray, *, epochs: int = 5, batch: int = 64,
            lr: float = 3e-4, augment: bool = False, mix: str | None = None, features: float = 10.0,
            progress: Callable[[str], None] | None = None) -> Graph:
    """Fine-tune ``student`` to reproduce ``teacher``'s first output on the unlabelled inputs ``x``.

    The loss is the mean squared error of the outputs over the mean square of the teacher's, plus, with
    ``features``, that weight times the mean over the residual stream's tensors (``residual_stream``) of
    each one's squared error over the teacher tensor's mean square (Romero et al. 2015, "FitNets": hints
    from intermediate layers; normalised so that every stage weighs alike). The mean squares are the
    teacher's on the first ``batch`` inputs, fixed for the whole run.

    Args:
        student: the compressed model (not modified).
        teacher: the uncompressed model.
        x: unlabelled inputs, a batch of the models' input.
        epochs: passes over ``x``.
        batch: samples per step.
        lr: Adam's initial learning rate (cosine-annealed to 0).
        augment: train on randomly flipped and shifted views of ``x`` (``views.augmented``); needs NCHW images.
        mix: also mix every view with another of the batch: ``"mixup"`` or ``"cutmix"`` (``views``), or None.
        features: weight of the residual-stream feature matching (0: logits alone).
        progress: told the epoch and the loss after each epoch.
    """
    if mix is not None and mix not in MIXES:
        raise OptionError(f"unknown mix {mix!r}: choose one of {', '.join(MIXES)}, or none")
    torch.manual_seed(0)
    folded_student, folded_teacher = fold_batch_norm(student), fold_batch_norm(teacher)
    taps = residual_stream(folded_student, folded_teacher) if features else ()
    model = FloatGraphModule(folded_student, taps)
    reference = FloatGraphModule(folded_teacher, taps).eval()
    data = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    generator = torch.Generator().manual_seed(0)
    fixed = augment or mix is not None

    def teacher_on(inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            out = reference(inputs)
        return out if isinstance(out, tuple) else (out,)

    scales = [torch.mean(t ** 2) for t in teacher_on(_channels_last(data[:batch]))]
    weights = [1.0] + [features / len(taps)] * len(taps) if taps else [1.0]
    targets = None if fixed else [torch.cat(t) for t in zip(*(teacher_on(_channels_last(data[i:i + batch]))
                                                           for i in range(0, len(data), batch)))]

    def batches(idx: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if targets is not None:
            return _channels_last(data[idx]), tuple(t[idx] for t in targets)
        inputs = _channels_last(view(data[idx], generator, augment=augment, mix=mix))
        return inputs, teacher_on(inputs)

    def loss(out: torch.Tensor | tuple[torch.Tensor, ...], wanted: tuple[torch.Tensor, ...]) -> torch.Tensor:
        out = out if isinstance(out, tuple) else (out,)
        return sum(w * torch.mean((o - t) ** 2) / s for w, o, t, s in zip(weights, out, wanted, scales))

    fit_outputs(model, batches, len(data), epochs=epochs, batch=batch, lr=lr, what="distillation", progress=progress,
                loss=loss)
    return model.to_graph()


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images in torch's channels-last layout (same values), where its CPU convolutions run about 1.5x as fast."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def outputs_of(module: nn.Module, data: torch.Tensor, batch: int) -> torch.Tensor:
    """``module``'s outputs on ``data``, computed ``batch`` samples at a time without gradients."""
    with torch.no_grad():
        return torch.cat([module(data[i:i + batch]) for i in range(0, len(data), batch)])


def mean_squared_error(out: torch.Tensor | tuple[torch.Tensor, ...], wanted: torch.Tensor) -> torch.Tensor:
    """The mean squared error of the first output (``out`` or ``out[0]``)."""
    return torch.mean(((out[0] if isinstance(out, tuple) else out) - wanted) ** 2)


def fit_outputs(student: nn.Module, batches: Callable[[torch.Tensor], tuple[torch.Tensor, Any]], n: int, *,
                epochs: int, batch: int, lr: float, what: str, progress: Callable[[str], None] | None,
                micro_batch: int | None = None,
                loss: Callable[[Any, Any], torch.Tensor] = mean_squared_error) -> None:
    """Train ``student``'s parameters that require gradients to reproduce wanted outputs: Adam with a cosine
    learning rate (to 0 over all steps) on ``loss(student(inputs), wanted)``, a mean over the samples (by
    default the mean squared error of the first output).

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
            part_size = len(idx) if micro_batch is None else micro_batch
            for j in range(0, len(idx), part_size):
                part = idx[j:j + part_size]
                inputs, wanted = batches(part)
                # The step's mean over all its samples: this part's mean weighted by its share of them.
                value = loss(student(inputs), wanted) * (len(part) / len(idx))
                value.backward()
                total += float(value.detach()) * len(idx)
            opt.step()
            sched.step()
        message = f"{what} epoch {epoch + 1}/{epochs}: loss {total / n:.4g} ({time.perf_counter() - start:.0f} s)"
        log.info(message)
        if progress:
            progress(message)
