"""``depth_to_space_as_dcr``: a sub-pixel convolution (Conv → ReLU → Conv → ``nn.PixelShuffle``, as ESPCN
writes it) exported by torch's TorchScript exporter keeps its float outputs with the second Conv's output
channels reordered and the DepthToSpace in TensorFlow's DCR mode; a CRD DepthToSpace whose input has
another reader, or comes from a grouped Conv, is left as it is."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeopt.pipeline.evaluate import run_float
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.optimize.depth_to_space_as_dcr import crd_channels
from tests.builders.torch_export import export, normal_data

SHAPE = (1, 3, 5, 4)


class SubPixel(nn.Module):
    """ESPCN's tail at toy size; ``shared``: the upscaled features are also pooled into the output;
    ``groups``: the last Conv is grouped."""

    def __init__(self, shared: bool = False, groups: int = 1) -> None:
        super().__init__()
        self.shared = shared
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.tail = nn.Conv2d(6, 3 * 3 * 3, 3, padding=1, groups=groups)
        self.shuffle = nn.PixelShuffle(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.tail(self.body(x))
        y = torch.sigmoid(self.shuffle(features))
        return y + features.mean(dim=(1, 2, 3), keepdim=True) if self.shared else y


def test_crd_channel_order() -> None:
    # C_out 2, block 2: DCR channel (i * 2 + j) * 2 + c holds CRD channel c * 4 + i * 2 + j.
    assert crd_channels(8, 2).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("shared, groups, mode", [(False, 1, "DCR"), (True, 1, "CRD"), (False, 3, "CRD")])
def test_sub_pixel_conv_becomes_dcr_and_keeps_its_float_outputs(shared: bool, groups: int, mode: str) -> None:
    torch.manual_seed(0)
    module = SubPixel(shared, groups).eval()
    graph = onnx_to_graph(export(module, SHAPE, "torchscript17"), "espcn")
    before = {k: v.copy() for k, v in graph.initializers.items()}
    rewritten = optimize(graph)
    [node] = [n for n in rewritten.nodes if n.op == "DepthToSpace"]
    assert node.attrs.get("mode") == mode
    assert all(np.array_equal(before[k], graph.initializers[k]) for k in before)  # the input graph is untouched
    x = normal_data(1, 4, SHAPE)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_float(rewritten, x), expected, rtol=1e-4, atol=1e-5)
