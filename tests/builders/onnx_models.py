"""Small ONNX models built node by node, for frontend, pass and lowering tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], input_shape: list, output_shape: list,
          output: str = "y", opset: int = 18) -> onnx.ModelProto:
    """A one-input, one-output float model; shapes may hold a symbolic batch like "N"."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def conv_bn_relu6(rng: np.random.Generator, cin: int = 3, cout: int = 8, batch: str | int = "N") -> onnx.ModelProto:
    """Conv → BatchNormalization → Clip(0, 6) → GlobalAveragePool → Flatten → Gemm."""
    inits = {
        "w": rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32),
        "b": rng.normal(0, 0.1, cout).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, cout).astype(np.float32),
        "beta": rng.normal(0, 0.2, cout).astype(np.float32),
        "mean": rng.normal(0, 0.2, cout).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, cout).astype(np.float32),
        "lo": np.array(0, np.float32), "hi": np.array(6, np.float32),
        "fc_w": rng.normal(0, 0.3, (10, cout)).astype(np.float32),
        "fc_b": rng.normal(0, 0.1, 10).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["act"], name="relu6"),
        helper.make_node("GlobalAveragePool", ["act"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    return model(nodes, inits, [batch, cin, 8, 8], [batch, 10])


def two_conv_model(rng: np.random.Generator, *, huge_bias: float = 0.0, outlier: float = 1.0):
    """conv1 (3→4) → conv2 (4→8) + Relu → GlobalAveragePool → Flatten → Gemm.

    ``huge_bias``: conv1's channel 0 gets this bias and conv2 ignores that channel, so conv1's output
    range is huge while the model's output does not depend on it: only quantizing that activation hurts.
    ``outlier``: conv2's output channel 0 weights are scaled by this (kills per-tensor weight scales).
    """
    w1 = rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32)
    b1 = np.zeros(4, np.float32)
    b1[0] = huge_bias
    w2 = rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)
    w2[:, 0] = 0
    w2[0] *= outlier
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": np.zeros(8, np.float32),
             "fc_w": rng.normal(0, 0.3, (10, 8)).astype(np.float32), "fc_b": np.zeros(10, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    return model(nodes, inits, ["N", 3, 8, 8], ["N", 10])
