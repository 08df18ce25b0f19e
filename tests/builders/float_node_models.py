"""A small ONNX model with one node of each op family the int8 lowering handles, for float island tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from tests.builders.onnx_models import model


def op_zoo(rng: np.random.Generator) -> onnx.ModelProto:
    """x (1, 3, 8, 8) → convolutions (plain, depthwise with explicit padding, grouped), HardSwish, Sigmoid,
    max and average pooling, Add, Concat, Clip (RELU6), Pad, Tanh, Resize (nearest, bilinear),
    ReduceMean (over H and W, and over other axes), Mul, Transpose, Relu, Flatten, Gemm, Softmax → y (1, 10)."""
    def w(*shape: int, s: float = 0.3) -> np.ndarray:
        return rng.normal(0, s, shape).astype(np.float32)

    inits = {
        "w1": w(8, 3, 3, 3), "b1": w(8, s=0.1), "wdw": w(8, 1, 3, 3), "bdw": w(8, s=0.1),
        "wg": w(8, 4, 3, 3), "lo": np.array(0, np.float32), "hi": np.array(6, np.float32),
        "pads": np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64), "scales": np.array([1, 1, 2, 2], np.float32),
        "hw": np.array([2, 3], np.int64), "ax12": np.array([1, 2], np.int64), "ax1": np.array([1], np.int64),
        "wfc": w(10, 64, s=0.2), "bfc": w(10, s=0.1), "wfc2": w(10, 16, s=0.2),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["a"], name="conv_relu"),
        n("Conv", ["a", "wdw", "bdw"], ["b"], name="depthwise", group=8, strides=[2, 2], pads=[1, 1, 1, 1]),
        n("HardSwish", ["b"], ["hs"], name="hard_swish"),
        n("Conv", ["hs", "wg"], ["g"], name="grouped", group=2, pads=[0, 1, 0, 1]),
        n("Sigmoid", ["g"], ["sg"], name="sigmoid"),
        n("MaxPool", ["a"], ["mp"], name="max_pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("AveragePool", ["a"], ["ap"], name="avg_pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Add", ["mp", "ap"], ["s"], name="add"),
        n("Concat", ["hs", "s"], ["cat"], name="concat", axis=1),
        n("Clip", ["cat", "lo", "hi"], ["cl"], name="relu6"),
        n("Pad", ["cl", "pads"], ["pd"], name="pad"),
        n("Tanh", ["pd"], ["th"], name="tanh"),
        n("Resize", ["sg", "", "scales"], ["up"], name="resize_nearest", mode="nearest",
          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        n("Resize", ["sg", "", "scales"], ["upb"], name="resize_bilinear", mode="linear"),
        n("ReduceMean", ["up", "hw"], ["m1"], name="mean_hw"),
        n("ReduceMean", ["upb", "hw"], ["m2"], name="mean_hw_2"),
        n("Mul", ["m1", "m2"], ["mm"], name="mul"),
        n("Transpose", ["th"], ["tt"], name="transpose", perm=[0, 2, 3, 1]),
        n("Relu", ["tt"], ["tr"], name="relu"),
        n("ReduceMean", ["tr", "ax12"], ["tm"], name="mean", keepdims=0),
        n("Flatten", ["sg"], ["fl"], name="flatten"),
        n("Gemm", ["fl", "wfc", "bfc"], ["fc"], name="fc", transB=1),
        n("Gemm", ["tm", "wfc2"], ["fc2"], name="fc2", transB=1),
        n("Flatten", ["mm"], ["mf"], name="flatten_2"),
        n("ReduceMean", ["mf", "ax1"], ["ms"], name="mean_channels"),
        n("Add", ["fc", "fc2"], ["s2"], name="add_2"),
        n("Add", ["s2", "ms"], ["s3"], name="add_3"),
        n("Softmax", ["s3"], ["y"], name="softmax", axis=-1),
    ]
    return model(nodes, inits, [1, 3, 8, 8], [1, 10])
