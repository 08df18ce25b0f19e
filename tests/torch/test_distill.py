"""Label-free distillation: the torch module equals the Graph, and fine-tuning brings a compressed model's
outputs closer to the uncompressed model's on held-out inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeopt.pipeline.compress.layers import outputs
from edgeopt.pipeline.compress.svd import decompose
from edgeopt.torch.distill import FloatGraphModule, augmented, distill
from tests.builders.compress_models import data, tiny_resnet_graph


def _sqnr(y: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((y - ref) ** 2)))


def test_module_computes_the_graph() -> None:
    graph = tiny_resnet_graph()
    x = data(4)
    with torch.no_grad():
        got = FloatGraphModule(graph)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, outputs(graph, x), atol=1e-4)


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_distillation_recovers_a_decomposed_model(augment: bool) -> None:
    teacher = tiny_resnet_graph()
    student = decompose(decompose(teacher, "/mix/Conv", 4), "/block1/conv2/Conv", 4)
    held_out = data(64, seed=11)
    ref = outputs(teacher, held_out)
    before = _sqnr(outputs(student, held_out), ref)
    tuned = distill(student, teacher, data(256, seed=3), epochs=3, lr=1e-3, augment=augment)
    assert [n.name for n in tuned.nodes] == [n.name for n in student.nodes]
    assert _sqnr(outputs(tuned, held_out), ref) > before + 3


def test_augmented_views_are_flips_and_shifts_of_the_inputs() -> None:
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16) + 1
    views = augmented(x, torch.Generator().manual_seed(1))
    assert views.shape == x.shape
    for view, image in zip(views, x):
        found = False
        for candidate in (image, image.flip(2)):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    shifted = torch.zeros_like(candidate)
                    src = candidate[:, max(0, dy):16 + min(0, dy), max(0, dx):16 + min(0, dx)]
                    shifted[:, max(0, -dy):16 + min(0, -dy), max(0, -dx):16 + min(0, -dx)] = src
                    found = found or bool(torch.equal(shifted, view))
        assert found
