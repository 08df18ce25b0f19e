"""ResNet-20/32 for CIFAR-10 (He et al. 2016, option-A shortcuts), matching the checkpoints in ../shared/data."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINTS = {20: "12fca82f", 32: "d509ac18"}  # file-name hashes in ../shared/data/models/resnet_cifar10


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout // 4 if stride != 1 or cin != cout else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad)) if self.pad else x
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def load_checkpoint(path: Path, depth: int) -> CifarResNet:
    """ResNet-``depth`` (20 or 32) with the weights of a checkpoint from ../shared/data, in eval mode."""
    model = CifarResNet((depth - 2) // 6)
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return model.eval()


def write_resnet_files(folder: Path, depth: int, calib_size: int, samples: int | None = None
                       ) -> tuple[Path, Path, Path]:
    """Export ResNet-``depth``'s checkpoint from ../shared/data to ``folder/resnet{depth}.onnx`` and write
    CIFAR-10 test1000 (``x``, ``y``; the first ``samples``) and ``calib_size`` training images (``x``) beside it
    as ``test.npz`` and ``calib.npz``. Exits 0 (a skip) when the data is absent. Returns the three paths."""
    import numpy as np
    from shared_data import cifar10_nchw, require

    from edgeopt.pipeline.frontend.load import export_torch

    ckpt, test, calib = require(f"models/resnet_cifar10/resnet{depth}-{CHECKPOINTS[depth]}.th",
                                "cifar10/test1000_lossless.npz", "cifar10/calib_train5000_lossless.npz")
    model = folder / f"resnet{depth}.onnx"
    model.write_bytes(export_torch(load_checkpoint(ckpt, depth), torch.zeros(1, 3, 32, 32)).SerializeToString())
    x, y = cifar10_nchw(test, samples)
    np.savez(folder / "test.npz", x=x, y=y)
    np.savez(folder / "calib.npz", x=cifar10_nchw(calib, calib_size)[0])
    return model, folder / "test.npz", folder / "calib.npz"
