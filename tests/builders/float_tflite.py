"""Float32 ``.tflite`` files shaped like TensorFlow's converter writes Keras models, built without TensorFlow.

``FloatTFLiteBuilder`` assembles a float32 program (NHWC, TFLite ops and options, random weights) and
writes it with edgeopt's own TFLite writer, which writes float32 versions of every op of the table.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from tests.builders.converter_files import add_operator, edit_model, tensor_name

from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import QOp, QProgram, QTensor


def _out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    return math.ceil(size / stride) if padding == "SAME" else (size - kernel) // stride + 1


class FloatTFLiteBuilder:
    """Ops appended in order; each method returns its output tensor's name."""

    def __init__(self, rng: np.random.Generator, name: str = "keras_like") -> None:
        self.rng = rng
        self.name = name
        self.tensors: dict[str, QTensor] = {}
        self.ops: list[QOp] = []
        self.inputs: list[str] = []
        self._divisions: list[str] = []  # MULs to rewrite as DIV (edgeopt's writer has no DIV)

    def shape(self, t: str) -> tuple[int, ...]:
        return self.tensors[t].shape

    def _tensor(self, base: str, shape: Sequence[int], data: np.ndarray | None = None, dtype: str = "float32") -> str:
        name = f"{base}_{len(self.tensors)}"
        self.tensors[name] = QTensor(name, tuple(int(d) for d in shape), dtype, None, data)
        return name

    def _weight(self, base: str, shape: Sequence[int], fan_in: int) -> str:
        value = self.rng.normal(0.0, 1.0 / math.sqrt(fan_in), shape).astype(np.float32)
        return self._tensor(base, shape, value)

    def const(self, base: str, value: np.ndarray) -> str:
        value = np.asarray(value)
        return self._tensor(base, value.shape, value, str(value.dtype))

    def op(self, kind: str, inputs: Sequence[str], out_shape: Sequence[int], **options: Any) -> str:
        y = self._tensor(kind.lower(), out_shape)
        self.ops.append(QOp(kind, tuple(inputs), (y,), options, source=y))
        return y

    def input(self, shape: Sequence[int], dtype: str = "float32") -> str:
        x = self._tensor("input", shape, dtype=dtype)
        self.inputs.append(x)
        return x

    def conv(self, x: str, cout: int, kernel: int = 3, stride: int = 1, padding: str = "SAME",
             activation: str = "NONE") -> str:
        n, h, w, c = self.shape(x)
        weight = self._weight("conv/w", (cout, kernel, kernel, c), kernel * kernel * c)
        bias = self.const("conv/b", self.rng.normal(0, 0.1, cout).astype(np.float32))
        out = (n, _out_size(h, kernel, stride, padding), _out_size(w, kernel, stride, padding), cout)
        return self.op("CONV_2D", [x, weight, bias], out, padding=padding, stride_h=stride, stride_w=stride,
                       dilation_h_factor=1, dilation_w_factor=1, fused_activation_function=activation)

    def depthwise(self, x: str, kernel: int = 3, stride: int = 1, padding: str = "SAME", multiplier: int = 1,
                  activation: str = "NONE") -> str:
        n, h, w, c = self.shape(x)
        weight = self._weight("dw/w", (1, kernel, kernel, c * multiplier), kernel * kernel)
        bias = self.const("dw/b", self.rng.normal(0, 0.1, c * multiplier).astype(np.float32))
        out = (n, _out_size(h, kernel, stride, padding), _out_size(w, kernel, stride, padding), c * multiplier)
        return self.op("DEPTHWISE_CONV_2D", [x, weight, bias], out, padding=padding, stride_h=stride,
                       stride_w=stride, dilation_h_factor=1, dilation_w_factor=1, depth_multiplier=multiplier,
                       fused_activation_function=activation)

    def fully_connected(self, x: str, units: int, activation: str = "NONE") -> str:
        k = self.shape(x)[-1]
        weight = self._weight("dense/w", (units, k), k)
        bias = self.const("dense/b", self.rng.normal(0, 0.1, units).astype(np.float32))
        return self.op("FULLY_CONNECTED", [x, weight, bias], (math.prod(self.shape(x)) // k, units),
                       fused_activation_function=activation, keep_num_dims=False)

    def pool(self, kind: str, x: str, size: int, stride: int, padding: str = "VALID") -> str:
        n, h, w, c = self.shape(x)
        out = (n, _out_size(h, size, stride, padding), _out_size(w, size, stride, padding), c)
        return self.op(kind, [x], out, padding=padding, stride_h=stride, stride_w=stride, filter_height=size,
                       filter_width=size, fused_activation_function="NONE")

    def mean(self, x: str, axes: Sequence[int], keep_dims: bool) -> str:
        shape = self.shape(x)
        out = [1 if a in axes else d for a, d in enumerate(shape)] if keep_dims else \
            [d for a, d in enumerate(shape) if a not in axes]
        return self.op("MEAN", [x, self.const("mean/axes", np.array(axes, np.int32))], out, keep_dims=keep_dims)

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        return self.op("RESHAPE", [x, self.const("reshape/shape", np.array(shape, np.int32))], shape,
                       new_shape=list(shape))

    def binary(self, kind: str, a: str, b: str, activation: str = "NONE") -> str:
        shape = np.broadcast_shapes(self.shape(a), self.shape(b))
        return self.op(kind, [a, b], shape, fused_activation_function=activation)

    def div(self, a: str, b: str) -> str:
        """DIV, written as MUL and turned into DIV in the flatbuffer by ``build``."""
        y = self.binary("MUL", a, b)
        self._divisions.append(y)
        return y

    def unary(self, kind: str, x: str, **options: Any) -> str:
        return self.op(kind, [x], self.shape(x), **options)

    def pad(self, x: str, paddings: Sequence[tuple[int, int]]) -> str:
        shape = [d + a + b for d, (a, b) in zip(self.shape(x), paddings)]
        return self.op("PAD", [x, self.const("pad/paddings", np.array(paddings, np.int32))], shape)

    def concat(self, xs: Sequence[str], axis: int) -> str:
        shape = list(self.shape(xs[0]))
        shape[axis] = sum(self.shape(x)[axis] for x in xs)
        return self.op("CONCATENATION", xs, shape, axis=axis, fused_activation_function="NONE")

    def strided_slice(self, x: str, begin: Sequence[int], end: Sequence[int], strides: Sequence[int]) -> str:
        shape = [len(range(b, e, s)) for b, e, s in zip(begin, end, strides)]
        consts = [self.const(f"slice/{k}", np.array(v, np.int32)) for k, v in (("begin", begin), ("end", end),
                                                                             ("strides", strides))]
        return self.op("STRIDED_SLICE", [x, *consts], shape, begin_mask=0, end_mask=0)

    def build(self, outputs: Sequence[str]) -> bytes:
        """The ``.tflite`` bytes of the program so far with ``outputs``."""
        used = {t for op in self.ops for t in (*op.inputs, *op.outputs)} | set(self.inputs)
        program = QProgram(name=self.name, tensors={k: v for k, v in self.tensors.items() if k in used},
                           ops=tuple(self.ops), inputs=tuple(self.inputs), outputs=tuple(outputs), rounding="double",
                           input_layouts=(None,) * len(self.inputs), output_layouts=(None,) * len(outputs))
        return edit_model(program_to_tflite(program), self._as_div) if self._divisions else program_to_tflite(program)

    def _as_div(self, model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        subgraph.operators = [
            add_operator(model, schema.BuiltinOperator.DIV, op.inputs, op.outputs, schema.BuiltinOptions.DivOptions,
                         schema.DivOptionsT())
            if tensor_name(subgraph.tensors[op.outputs[0]]) in self._divisions else op
            for op in subgraph.operators]


def keras_like_cnn(rng: np.random.Generator, flatten: bool = False) -> bytes:
    """A MobileNet-style classifier on ``[1, 16, 16, 3]``: PAD → CONV_2D stride 2 (RELU6) → DEPTHWISE (RELU6)
    → CONV_2D 1x1 → HARD_SWISH → squeeze-excite (MEAN keep_dims → CONV_2D RELU → CONV_2D → LOGISTIC → MUL)
    → residual ADD → CONCATENATION with a MAX_POOL_2D branch → then either MEAN over H, W (``flatten``
    False) or AVERAGE_POOL_2D → RESHAPE [1, -1] of a 2x2 map (Keras ``Flatten``) → FULLY_CONNECTED →
    SOFTMAX."""
    b = FloatTFLiteBuilder(rng, "keras_flatten" if flatten else "keras_mean")
    x = b.input((1, 16, 16, 3))
    x = b.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)])
    x = b.conv(x, 8, stride=2, padding="VALID", activation="RELU6")
    y = b.depthwise(x, activation="RELU6")
    y = b.conv(y, 8, kernel=1)
    y = b.unary("HARD_SWISH", y)
    se = b.mean(y, [1, 2], keep_dims=True)
    se = b.conv(se, 4, kernel=1, activation="RELU")
    se = b.unary("LOGISTIC", b.conv(se, 8, kernel=1))
    y = b.binary("MUL", y, se)
    x = b.binary("ADD", x, y)
    pooled = b.pool("MAX_POOL_2D", x, 3, 1, padding="SAME")
    x = b.concat([x, pooled], axis=3)
    if flatten:
        x = b.pool("AVERAGE_POOL_2D", x, 4, 4)
        x = b.reshape(x, (1, math.prod(b.shape(x)[1:])))
    else:
        x = b.mean(x, [1, 2], keep_dims=False)
    logits = b.fully_connected(x, 10)
    return b.build([b.unary("SOFTMAX", logits, beta=1.0)])
