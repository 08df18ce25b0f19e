"""A BatchNormalization no Conv/Gemm absorbs becomes Mul → Add and deploys as int8 MUL and ADD.

DenseNet's batch norm reads a Concat and RepVGG's identity-branch batch norm reads the block input, so
``fold_batch_norm`` has no producer to fold them into. ``batch_norm_as_mul_add`` keeps the float outputs
(ONNX Runtime before and after), leaves a foldable batch norm to ``fold_batch_norm``, and a small torch
model of both shapes, exported by the TorchScript and dynamo exporters, deploys to the Cortex-A78 profile
as a .tflite that LiteRT's reference kernels run bit-exactly like the executor, close to fp32, and
QuantSim simulates it exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from edgeopt.pipeline.evaluate import dequantize_output, quantize_input, run_float, run_int8
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.torch.quantsim import QuantSim
from tests.builders.onnx_models import model as onnx_model
from tests.builders.torch_export import deployed, export, normal_data, run_bitexact

SHAPE = (1, 3, 8, 8)


def _bn_stats(rng: np.random.Generator, prefix: str, c: int) -> dict[str, np.ndarray]:
    return {f"{prefix}_gamma": rng.uniform(0.5, 1.5, c).astype(np.float32),
            f"{prefix}_beta": rng.normal(0, 0.3, c).astype(np.float32),
            f"{prefix}_mean": rng.normal(0, 0.3, c).astype(np.float32),
            f"{prefix}_var": rng.uniform(0.5, 2.0, c).astype(np.float32)}


def _bn(prefix: str, x: str, y: str) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in ("gamma", "beta", "mean", "var")],
                            [y], name=prefix, epsilon=1e-3)


def _concat_and_identity_branch() -> onnx.ModelProto:
    """conv_a → bn_folded (foldable); Concat(x, conv_a) → bn_concat → Relu → conv_b; conv_b + bn_identity(x)."""
    rng = np.random.default_rng(0)
    inits = {"wa": rng.normal(0, 0.3, (5, 3, 3, 3)).astype(np.float32),
             "wb": rng.normal(0, 0.3, (3, 8, 3, 3)).astype(np.float32),
             **_bn_stats(rng, "bn_folded", 5), **_bn_stats(rng, "bn_concat", 8), **_bn_stats(rng, "bn_identity", 3)}
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             _bn("bn_folded", "a", "a_bn"),
             helper.make_node("Concat", ["x", "a_bn"], ["cat"], name="concat", axis=1),
             _bn("bn_concat", "cat", "cat_bn"),
             helper.make_node("Relu", ["cat_bn"], ["cat_relu"], name="relu"),
             helper.make_node("Conv", ["cat_relu", "wb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
             _bn("bn_identity", "x", "x_bn"),
             helper.make_node("Add", ["b", "x_bn"], ["y"], name="residual")]
    return onnx_model(nodes, inits, list(SHAPE), list(SHAPE))


def test_float_outputs_are_kept_and_a_foldable_batch_norm_still_folds() -> None:
    graph = onnx_to_graph(_concat_and_identity_branch(), "bn")
    folded = optimize(graph, ["fold_batch_norm"])
    assert [n.name for n in folded.nodes if n.op == "BatchNormalization"] == ["bn_concat", "bn_identity"]
    rewritten = optimize(folded, ["batch_norm_as_mul_add"])
    assert "BatchNormalization" not in rewritten.ops() and "BatchNormalization" in folded.ops()  # input untouched
    assert rewritten.ops().count("Mul") == rewritten.ops().count("Add") - 1 == 2
    assert rewritten.shape("bn_concat.scale") == rewritten.shape("bn_concat.shift") == (8, 1, 1)
    x = np.random.default_rng(1).normal(size=(4, *SHAPE[1:])).astype(np.float32)
    np.testing.assert_allclose(run_float(rewritten, x), run_float(graph, x), rtol=1e-5, atol=1e-5)
    assert optimize(rewritten, ["batch_norm_as_mul_add"]) is rewritten  # nothing left to rewrite


def test_default_passes_fuse_the_relu_into_the_add() -> None:
    graph = optimize(onnx_to_graph(_concat_and_identity_branch(), "bn"))
    add = next(n for n in graph.nodes if n.name == "bn_concat.add")
    assert add.attrs["fused_activation"] == "Relu" and "Relu" not in graph.ops()


def test_a_training_mode_batch_norm_is_left_alone() -> None:
    rng = np.random.default_rng(2)
    graph = onnx_to_graph(onnx_model([_bn("g", "x", "y")], _bn_stats(rng, "g", 3), list(SHAPE), list(SHAPE)), "train")
    training = graph.replace(nodes=tuple(n.with_(attrs={"training_mode": 1}) for n in graph.nodes))
    assert optimize(training, ["batch_norm_as_mul_add"]) is training
    assert optimize(graph, ["batch_norm_as_mul_add"]).ops() == ["Mul", "Add"]


class DenseRepBlock(nn.Module):
    """A DenseNet-style Conv → Concat → BN → ReLU → Conv beside a RepVGG-style identity-branch BN."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.grow = nn.Conv2d(8, 4, 3, padding=1)
        self.transition = nn.Sequential(nn.BatchNorm2d(12), nn.ReLU(), nn.Conv2d(12, 8, 1))
        self.dense = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.identity = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.transition(torch.cat([x, self.grow(x)], dim=1))
        x = torch.relu(self.dense(x) + self.identity(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _module() -> nn.Module:
    torch.manual_seed(0)
    module = DenseRepBlock()
    for m in module.modules():  # statistics away from the identity, so the affine map matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return module.eval()


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_torch_model_deploys_bitexact_with_litert(exporter: str, tmp_path: Path) -> None:
    module = _module()
    model = export(module, SHAPE, exporter)
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) >= 2  # the exporter left them
    graph = optimize(onnx_to_graph(model, "dense_rep"))
    assert "BatchNormalization" not in graph.ops()
    x = normal_data(1, 8, SHAPE)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_float(graph, x), expected, rtol=1e-4, atol=1e-5)

    result, program = deployed(model, normal_data(0, 32, SHAPE), tmp_path)
    kinds = [op.kind for op in program.ops]
    assert kinds.count("MUL") == 2 and {"ADD", "CONCATENATION", "CONV_2D"} <= set(kinds)
    out = run_bitexact(result, program, quantize_input(program, normal_data(2, 16, SHAPE)))
    with torch.no_grad():
        fp32 = module(torch.from_numpy(normal_data(2, 16, SHAPE))).numpy()
    step = float(program.tensor(program.outputs[0]).qparams.scale[0])
    assert np.abs(dequantize_output(program, out) - fp32).max() <= 4 * step


def test_quantsim_runs_the_rewritten_batch_norms_like_the_integer_executor() -> None:
    """QuantSim's Mul/Add read the scale and shift as the program's int8 constants."""
    sim = QuantSim(_module(), torch.from_numpy(normal_data(0, 1, SHAPE)))
    assert "BatchNormalization" not in sim.graph.ops()
    sim.compute_encodings(normal_data(0, 32, SHAPE))
    x = normal_data(3, 16, SHAPE)
    for rounding in ("single", "double"):
        sim.model.rounding = rounding
        with torch.no_grad():
            simulated = sim.model(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(simulated, run_int8(sim.program(rounding), x), err_msg=rounding)
