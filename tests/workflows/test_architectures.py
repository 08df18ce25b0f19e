"""Whole architectures, random weights: MobileNetV2, MobileNetV3, EfficientNet-Lite and ResNet styles.

Each is a torch module (seeded weights; BatchNorm with random running statistics) exported to ONNX and
taken through load → optimize → calibrate (random normal data) → quantize_minmax → lower(double
rounding) → .tflite. For each: the file loads in LiteRT with the reference and the default kernels,
the executor's outputs equal LiteRT BUILTIN_REF's element for element, the op list is a clean int8
model (int8 input and output, per-channel weights, no QUANTIZE/DEQUANTIZE/TRANSPOSE), and the int8
logits track the float model's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input
from edgeopt.pipeline.frontend.load import export_torch, load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program

CLASSES = 10


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
            act: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act) if act is not None else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 / EfficientNet-Lite MBConv: 1x1 expand, kxk depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, k: int = 3) -> None:
        super().__init__()
        mid = cin * expand
        layers = [conv_bn(cin, mid, 1, act=nn.ReLU6())] if expand != 1 else []
        layers += [conv_bn(mid, mid, k, stride, groups=mid, act=nn.ReLU6()), conv_bn(mid, cout, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.ReLU6()),
            InvertedResidual(16, 16, 1, 1),
            InvertedResidual(16, 24, 2, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 32, 2, 6),
            InvertedResidual(32, 32, 1, 6),
            conv_bn(32, 64, 1, act=nn.ReLU6()),
        )
        self.classifier = nn.Linear(64, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: global mean, 1x1 reduce + ReLU, 1x1 expand + hard-sigmoid, channel gate."""

    def __init__(self, c: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(s))))


class V3Block(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int, se: bool) -> None:
        super().__init__()
        self.expand = conv_bn(cin, mid, 1, act=nn.Hardswish())
        self.dw = conv_bn(mid, mid, k, stride, groups=mid, act=nn.Hardswish())
        self.se = SqueezeExcite(mid, max(8, mid // 4)) if se else nn.Identity()
        self.project = conv_bn(mid, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.Hardswish()),
            V3Block(16, 32, 16, 3, 1, se=True),
            V3Block(16, 48, 24, 3, 2, se=False),
            V3Block(24, 72, 24, 5, 1, se=True),
            V3Block(24, 96, 40, 5, 2, se=True),
            conv_bn(40, 96, 1, act=nn.Hardswish()),
        )
        self.head = nn.Sequential(nn.Linear(96, 64), nn.Hardswish(), nn.Linear(64, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: MBConv without squeeze-excite, ReLU6 everywhere, 3x3 and 5x5 depthwise."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.ReLU6()),
            InvertedResidual(16, 16, 1, 1),
            InvertedResidual(16, 24, 2, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 40, 2, 6, k=5),
            InvertedResidual(40, 40, 1, 6, k=5),
            conv_bn(40, 80, 1, act=nn.ReLU6()),
        )
        self.classifier = nn.Linear(80, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride, act=nn.ReLU())
        self.conv2 = conv_bn(cout, cout, 3)
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 7, 2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2))
        self.fc = nn.Linear(64, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


def randomize_batch_norms(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random affine parameters and running statistics, as a trained network would carry."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=generator)
            m.bias.data = 0.2 * torch.randn(c, generator=generator)
            m.running_mean = 0.2 * torch.randn(c, generator=generator)
            m.running_var = 0.5 + torch.rand(c, generator=generator)
    return module.eval()


ARCHITECTURES = {
    "mobilenet_v2": (MobileNetV2, 32),
    "mobilenet_v3": (MobileNetV3, 32),
    "efficientnet_lite": (EfficientNetLite, 32),
    "resnet": (ResNet, 64),
}
# Weighted ops and the axis of their per-channel weight scales (TFLite's quantized_dimension).
PER_CHANNEL_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}


def _convert(name: str, tmp_path: Path) -> tuple[QProgram, bytes, nn.Module, int]:
    cls, size = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = randomize_batch_norms(cls(), torch.Generator().manual_seed(1))
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(export_torch(model, torch.zeros(1, 3, size, size)).SerializeToString())
    graph = optimize(load(str(path)).graph)
    x_cal = np.random.default_rng(2).normal(size=(64, 3, size, size)).astype(np.float32)
    program = lower(quantize_minmax(graph, calibrate(graph, x_cal)), rounding="double")
    return program, program_to_tflite(program), model, size


def _assert_clean_int8(program: QProgram, tflite: bytes) -> None:
    kinds = [op.kind for op in program.ops]
    assert not {"QUANTIZE", "DEQUANTIZE", "TRANSPOSE"} & set(kinds), kinds
    assert all(program.tensor(t).dtype == "int8" for t in (*program.inputs, *program.outputs))
    for op in program.ops:
        if op.kind in PER_CHANNEL_AXIS:
            w = program.tensor(op.inputs[1])
            axis = PER_CHANNEL_AXIS[op.kind]
            assert w.dtype == "int8" and (w.qparams.axis or 0) == axis
            assert w.qparams.scale.size == w.shape[axis] > 1
            assert program.tensor(op.inputs[2]).dtype == "int32"
    for kernels in ("reference", "default"):
        runtime = LiteRT(tflite, kernels=kernels)
        assert [d.dtype for d in runtime.input_details + runtime.output_details] == [np.dtype(np.int8)] * 2


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_is_bitexact_with_litert_and_tracks_float(name: str, tmp_path: Path) -> None:
    program, tflite, model, size = _convert(name, tmp_path)
    _assert_clean_int8(program, tflite)
    x = np.random.default_rng(3).normal(size=(32, 3, size, size)).astype(np.float32)
    q = quantize_input(program, x)
    (ours,) = run_program(program, [q])
    (reference,) = LiteRT(tflite, kernels="reference").run([q])
    np.testing.assert_array_equal(ours, reference)
    (default,) = LiteRT(tflite, kernels="default").run([q])
    assert default.shape == ours.shape
    # XNNPACK rounds once (and ties its own way): it may differ from the reference by a step or so.
    assert np.abs(default.astype(int) - ours.astype(int)).max() <= 3
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = dequantize_output(program, ours)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
