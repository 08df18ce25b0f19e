"""A Concat of an input whose int8 encoding is fixed (a Sigmoid's 1/256) with others: the fixed input is
requantized to the concat's encoding by an int8 QUANTIZE (YOLOv8's head concatenates box logits with class
sigmoids), bit-exact with LiteRT's reference kernels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeopt.pipeline.evaluate import quantize_input
from tests.builders.torch_export import deployed, export, normal_data, run_bitexact


class DetectHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.box = nn.Conv2d(4, 6, 3, padding=1)
        self.cls = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.box(x) * 4.0, self.cls(x).sigmoid()], dim=1)


def test_sigmoid_input_of_a_concat_is_requantized(tmp_path: Path) -> None:
    torch.manual_seed(0)
    shape = (1, 4, 5, 5)
    result, program = deployed(export(DetectHead().eval(), shape, "torchscript"), normal_data(0, 16, shape), tmp_path)
    kinds = [op.kind for op in program.ops]
    concat = next(op for op in program.ops if op.kind == "CONCATENATION")
    requantize = next(op for op in program.ops if op.kind == "QUANTIZE")
    assert requantize.outputs[0] in concat.inputs and "DEQUANTIZE" not in kinds
    sigmoid_q = program.tensor(requantize.inputs[0]).qparams
    assert sigmoid_q.scale[0] == np.float32(1 / 256) and not sigmoid_q.same_as(program.tensor(concat.outputs[0]).qparams)
    run_bitexact(result, program, quantize_input(program, normal_data(1, 64, shape) * 2))
