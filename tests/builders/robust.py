"""Small models and data files for the robustness tests (bad input, output sets, collapse)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper

from tests.builders.onnx_models import conv_bn_relu6, model


def small_onnx(folder: Path) -> Path:
    """conv_bn_relu6 (input [N, 3, 8, 8], 10 classes) saved as ``small.onnx``."""
    path = folder / "small.onnx"
    path.write_bytes(conv_bn_relu6(np.random.default_rng(0)).SerializeToString())
    return path


def small_data(folder: Path, name: str = "d.npz", n: int = 32, **arrays: np.ndarray) -> Path:
    """An .npz of ``n`` inputs for ``small_onnx`` and labels 0..9, with ``arrays`` replacing or adding keys."""
    rng = np.random.default_rng(1)
    content = {"x": rng.normal(size=(n, 3, 8, 8)).astype(np.float32), "y": rng.integers(0, 10, n), **arrays}
    np.savez(folder / name, **content)
    return folder / name


def depthwise_collapse_onnx(folder: Path) -> Path:
    """A depthwise model that per-tensor weights destroy: channel 0's filter is 10^4 times the others' (and
    its ReLU output always 0), so with one weight scale the other filters quantize to zero and every int8
    logit ties, while fp32 picks among channels 1..3. Input [N, 4, 8, 8], 4 classes."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.01, (4, 1, 3, 3)).astype(np.float32)
    w[0] = 100.0
    inits = {"w": w, "b": np.array([-1e3, 0, 0, 0], np.float32), "fc_w": np.eye(4, dtype=np.float32),
             "fc_b": np.zeros(4, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1)]
    path = folder / "dw.onnx"
    path.write_bytes(model(nodes, inits, ["N", 4, 8, 8], ["N", 4]).SerializeToString())
    return path
