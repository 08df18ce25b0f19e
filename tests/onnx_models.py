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
