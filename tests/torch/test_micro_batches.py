"""Fine-tuning in micro-batches: the same training as whole batches, with a micro-batch sized to a memory budget."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edgeopt.torch import finetune
from edgeopt.torch.distill import fit_outputs
from tests.builders.compress_models import tiny_resnet_graph


def _trained(micro_batch: int | None) -> list[torch.Tensor]:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x, wanted = torch.randn(40, 6), torch.randn(40, 3)
    fit_outputs(student, lambda idx: (x[idx], wanted[idx]), len(x), epochs=3, batch=16, lr=1e-2, what="test",
                progress=None, micro_batch=micro_batch)
    return [p.detach().clone() for p in student.parameters()]


@pytest.mark.parametrize("micro_batch", [3, 5])
def test_micro_batches_train_as_whole_batches(micro_batch: int) -> None:
    """Steps of 16 (the last of 8) in parts of 3 or 5: the summed gradients are the step's, up to rounding."""
    whole, parts = _trained(None), _trained(micro_batch)
    assert any((a != b).any() for a, b in zip(whole, parts))  # really another computation
    for a, b in zip(whole, parts):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_micro_batch_fits_the_activation_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = tiny_resnet_graph()
    per_sample = 4 * finetune.SAVED_PER_ACTIVATION * sum(math.prod(graph.shape(n.outputs[0])[1:]) for n in graph.nodes)
    monkeypatch.setattr(finetune, "ACTIVATION_BYTES", 5 * per_sample + 1)
    assert finetune.micro_batch(graph) == 5
    monkeypatch.setattr(finetune, "ACTIVATION_BYTES", per_sample // 2)
    assert finetune.micro_batch(graph) == 1
