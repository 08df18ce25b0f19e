"""Transformer blocks as exporters write them deploy bit-exact with LiteRT 2.3's reference kernels.

A tiny ViT (patch embedding, class token, fused QKV projection split by ``qkv[0..2]``, attention heads
as 4-D ``[B, H, S, D]`` MatMuls with a softmax over the last axis, LayerNorms, GELU MLP, the class
token's ``x[:, 0]`` into the head) and a ConvNeXt block (depthwise conv, permute to channels-last,
LayerNorm, 4-D Linear layers, GELU, permute back, residual) go through the TorchScript exporter at
opsets 13 (LayerNorm and GELU written out as elementwise chains) and 17; each deploys to the Cortex-A78
profile, and the executor (double rounding) equals LiteRT BUILTIN_REF element for element. A division
by a computed tensor and a square root run as DIV and SQRT float islands, bit-exact too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import helper
from torch import nn

from edgeopt.pipeline.evaluate import dequantize_output, quantize_input
from tests.builders.onnx_models import model as onnx_model
from tests.builders.torch_export import deployed, export, normal_data, run_bitexact

PROFILE = "arm-cortex-a78-xnnpack"


class TinyViT(nn.Module):
    """timm's ViT block structure at toy size: 4x4 patches of a 3x8x8 image, 2 heads of 8."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 5, dim) * 0.1)
        self.ln1, self.ln2, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        b, n, c = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        x = x + self.mlp(self.ln2(x))
        return self.head(self.norm(x)[:, 0])


class ConvNeXtBlock(nn.Module):
    """torchvision's CNBlock at toy size: the MLP runs on ``[B, H, W, C]`` tensors."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.fc2(nn.functional.gelu(self.fc1(y)))
        return x + y.permute(0, 3, 1, 2)


def _trained_norms(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return module.eval()


MODELS = {"vit": (TinyViT, (1, 3, 8, 8)), "convnext": (ConvNeXtBlock, (1, 8, 4, 4))}


@pytest.mark.parametrize("exporter", ["torchscript13", "torchscript17"])
@pytest.mark.parametrize("name", list(MODELS))
def test_block_deploys_bit_exact_with_litert_reference(name: str, exporter: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    build, shape = MODELS[name]
    module = _trained_norms(build())
    result, program = deployed(export(module, shape, exporter), normal_data(0, 16, shape), tmp_path, PROFILE)
    kinds = [op.kind for op in program.ops]
    assert kinds.count("DEQUANTIZE") >= 2  # LayerNorm (and GELU) islands
    if name == "vit":
        assert kinds.count("BATCH_MATMUL") == 2 and "SOFTMAX" in kinds and "STRIDED_SLICE" in kinds
        assert all(len(program.tensor(op.inputs[0]).shape) == 4 for op in program.ops if op.kind == "BATCH_MATMUL")
    else:
        assert kinds.count("FULLY_CONNECTED") == 2
    x_test = normal_data(1, 16, shape)
    got = run_bitexact(result, program, quantize_input(program, x_test))
    with torch.no_grad():
        fp32 = module(torch.from_numpy(x_test)).numpy()
    out = dequantize_output(program, got).reshape(fp32.shape)
    assert np.corrcoef(out.ravel(), fp32.ravel())[0, 1] > 0.97


def test_division_by_a_computed_tensor_and_sqrt_run_as_float_islands(tmp_path: Path) -> None:
    """``x / sqrt(relu(x) + 1)``: TFLite's DIV and SQRT have no int8 kernel, so both run in float32."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "one"], ["a"]),
             helper.make_node("Sqrt", ["a"], ["s"], name="root"), helper.make_node("Div", ["x", "s"], ["y"], name="ratio")]
    shape = (1, 4, 3, 5)
    result, program = deployed(onnx_model(nodes, {"one": np.float32(1)}, list(shape), list(shape)),
                               normal_data(0, 16, shape) * 2, tmp_path, PROFILE)
    assert [op.kind for op in program.ops] == ["RELU", "ADD", "DEQUANTIZE", "SQRT", "DEQUANTIZE", "DIV", "QUANTIZE"]
    run_bitexact(result, program, quantize_input(program, normal_data(1, 32, shape) * 2))
