"""Label-free distillation: the torch module equals the Graph, and fine-tuning brings a compressed model's
outputs closer to the uncompressed model's on held-out inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeopt.errors import OptionError
from edgeopt.ir import Graph
from edgeopt.pipeline.compress.channel_pruning import prune_input_channels
from edgeopt.pipeline.compress.layers import outputs
from edgeopt.pipeline.compress.svd import decompose
from edgeopt.pipeline.optimize.fold_batch_norm import fold_batch_norm
from edgeopt.torch.distill import FloatGraphModule, distill, residual_stream
from edgeopt.torch.views import augmented
from tests.builders.compress_models import data, residual_chain_graph, tiny_resnet_graph


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


def _stream_error(student: Graph, teacher: Graph, x: np.ndarray) -> float:
    """Mean over the residual stream's tensors of their squared error over the teacher's mean square."""
    taps = residual_stream(student, teacher)
    with torch.no_grad():
        got = FloatGraphModule(student, taps)(torch.from_numpy(x))[1:]
        want = FloatGraphModule(teacher, taps)(torch.from_numpy(x))[1:]
    return float(np.mean([torch.mean((g - w) ** 2) / torch.mean(w ** 2) for g, w in zip(got, want)]))


def test_residual_stream_is_the_add_outputs_of_equal_shape() -> None:
    teacher = fold_batch_norm(residual_chain_graph())
    adds = [n.outputs[0] for n in teacher.nodes if n.op == "Add"]
    assert residual_stream(teacher, teacher) == tuple(adds) and len(adds) == 5
    relu = next(n for n in teacher.nodes if n.inputs and n.inputs[0] == adds[3])
    reader = next(n for n in teacher.nodes if n.op == "Conv" and n.inputs[0] == relu.outputs[0])
    pruned = prune_input_channels(teacher, reader.name, 12, data(32))  # the 16-channel stream, to 12
    kept = residual_stream(pruned, teacher)
    assert kept and set(kept) < set(adds)
    assert all(pruned.shape(t) == teacher.shape(t) for t in kept)


def test_feature_matching_brings_the_stream_closer_than_logits_alone() -> None:
    teacher = fold_batch_norm(residual_chain_graph())
    student = decompose(decompose(teacher, _convs(teacher)[1], 2), _convs(teacher)[5], 2)
    held_out = data(64, seed=11)
    errors = {w: _stream_error(distill(student, teacher, data(128, seed=3), epochs=3, lr=1e-3, features=w), teacher,
                               held_out) for w in (0.0, 1.0)}
    assert errors[1.0] < 0.8 * errors[0.0]


def _convs(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes if n.op == "Conv"]


def test_unknown_mix_is_an_option_error() -> None:
    graph = tiny_resnet_graph()
    with pytest.raises(OptionError, match="cutmix"):
        distill(graph, graph, data(4), mix="mixin")
