"""The lowered int8 program: TFLite builtin ops on NHWC tensors with precomputed integer parameters.

Every backend reads this one structure: the integer reference executor runs it, the TFLite writer
serialises it, and the cost model prices it. A reader of ``.tflite`` files produces the same structure.

Op kinds: ``OPS`` below is the closed table of every kind a program may hold, with its inputs, its
``options`` (TFLite's builtin option names, snake_case; enums as strings) and the modes it runs in
(``op_mode``). Every registry keyed by op kind (kernels, Prepare, writers, shape rules, MAC counts)
refuses a kind that is not in it, and a test checks that each covers every kind and mode of it.

Float islands: an op whose output tensor is float32 (GELU, SQUARED_DIFFERENCE, RSQRT, DIV, SQRT, DEQUANTIZE, and the
float32 form of any other kind for a node of ``QuantizedGraph.float_nodes``) runs in mode ``float32`` and
has no ``params``.

16x8 mode (``--precision w8a16``, ``pipeline.quantize.precision``): the kinds with mode ``16x8`` may
instead run on int16 activations (symmetric, zero point 0) with int64 biases; QUANTIZE int8 <-> int16
joins them to int8 ops.

``fused_activation_function`` is one of NONE, RELU, RELU6, RELU_N1_TO_1. Weights are int8 symmetric
per-channel (axis 0, or 3 for depthwise), biases int32 with scale ``input_scale * weight_scale`` and
zero point 0, activations int8 asymmetric per-tensor. A device's own scheme (``Target.device_program``)
may give CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED per-tensor weights with a zero point, which the
executor runs (``weights_offset``) and the TFLite writer refuses. ``params`` holds what TFLite's Prepare computes
from those scales (multipliers, shifts, offsets, clamp bounds); see ``runtimes.reference.prepare``.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from edgeopt.ir import QParams, frozen_array

Rounding = Literal["single", "double"]
# Ops that only convert between precisions (float32 <-> int8/int16, int8 <-> int16): no layer of their own.
CONVERSION_KINDS = frozenset({"QUANTIZE", "DEQUANTIZE"})
FullyConnectedRequantization = Literal["double_precision", "fixed_point"]
FUSED_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
Mode = Literal["int8", "16x8", "float32"]
"""How an op computes: int8 activations, int16 activations with int8 weights (TFLite's 16x8), or float32."""
MODES: tuple[Mode, ...] = ("int8", "16x8", "float32")
Dtype = Literal["int8", "int16", "fp16", "fp32"]
"""The precision an op computes in: ``int8`` (w8a8), ``int16`` (16-bit activations, w8a16), ``fp16``, ``fp32``."""


@dataclass(frozen=True, eq=False)
class QTensor:
    """A tensor of the program. ``data`` is set for constants (weights, biases, shapes, paddings)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    qparams: QParams | None = None
    data: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.data is not None:
            object.__setattr__(self, "data", frozen_array(np.asarray(self.data, dtype=self.dtype)))

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class QOp:
    """One TFLite builtin op. ``source`` names the IR node(s) it came from, for the report."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def with_params(self, params: Mapping[str, Any]) -> QOp:
        return replace(self, params=params)


@dataclass(frozen=True)
class QProgram:
    """An int8 program: tensors by name, ops in execution order, graph inputs/outputs, rounding mode.

    ``input_layouts`` records, per graph input, the permutation that turns the source model's layout
    into this program's (``(0, 2, 3, 1)`` for an NCHW model whose program input is NHWC), so that
    callers can feed data prepared for the source model.

    ``fully_connected_requantization`` says how the emulated runtime's FULLY_CONNECTED scales its
    accumulator, which varies by runtime version rather than by rounding mode: ``"double_precision"``
    (``round(double(acc) * scale)``, ai-edge-litert 2.3's reference kernel) or ``"fixed_point"``
    (``MultiplyByQuantizedMultiplier`` with ``rounding``, as tflite-runtime 2.14's reference kernel).
    """

    name: str
    tensors: Mapping[str, QTensor]
    ops: tuple[QOp, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    rounding: Rounding = "single"
    input_layouts: tuple[tuple[int, ...] | None, ...] = ()
    output_layouts: tuple[tuple[int, ...] | None, ...] = ()
    fully_connected_requantization: FullyConnectedRequantization = "double_precision"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tensors", MappingProxyType(dict(self.tensors)))
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    def replace(self, **changes: Any) -> QProgram:
        return replace(self, **changes)

    def tensor(self, name: str) -> QTensor:
        return self.tensors[name]

@dataclass(frozen=True)
class OpKind:
    """One row of ``OPS``: a TFLite builtin op kind as programs here hold it.

    ``modes``: the modes a program may run it in. ``prepared``: the modes whose kernel reads ``params``
    computed by a Prepare (TFLite's ``Prepare``: multipliers, shifts, offsets, clamp bounds); data
    movement and float32 kernels need none. ``inputs`` and ``options`` document the operands and options.
    """

    modes: frozenset[Mode]
    prepared: frozenset[Mode]
    inputs: str
    options: str = "-"

    def __post_init__(self) -> None:
        if not self.prepared <= self.modes:
            raise ValueError(f"prepared modes {sorted(self.prepared)} not among modes {sorted(self.modes)}")


def _kind(modes: str, prepared: str, inputs: str, options: str = "-") -> OpKind:
    return OpKind(frozenset(modes.split()), frozenset(prepared.split()), inputs, options)  # type: ignore[arg-type]


_ALL, _INT8_FLOAT = "int8 16x8 float32", "int8 float32"
_CONV_OPTIONS = ("padding SAME|VALID, stride_h, stride_w, dilation_h_factor, dilation_w_factor, "
                 "fused_activation_function")
_POOL_OPTIONS = "padding, stride_h, stride_w, filter_height, filter_width, fused_activation_function"
_BINARY = "a, b (numpy broadcasting; either may be a constant)"
_RESIZE = "align_corners, half_pixel_centers"
OPS: Mapping[str, OpKind] = MappingProxyType({
    "CONV_2D": _kind(_ALL, "int8 16x8", "x[N,H,W,Ci], w[Co,KH,KW,Ci/groups], b[Co]", _CONV_OPTIONS),
    "DEPTHWISE_CONV_2D": _kind(_ALL, "int8 16x8", "x, w[1,KH,KW,Co], b[Co]", _CONV_OPTIONS + ", depth_multiplier"),
    "TRANSPOSE_CONV": _kind(_INT8_FLOAT, "int8", "out_shape (int32 [4]), w[Co,KH,KW,Ci], x[N,H,W,Ci], b[Co]",
                            "padding SAME|VALID (of the output size), stride_h, stride_w, fused_activation_function"),
    "FULLY_CONNECTED": _kind(_ALL, "int8 16x8", "x[N,Ci] (or [B,S,Ci]), w[Co,Ci], b[Co]",
                             "fused_activation_function, keep_num_dims"),
    "BATCH_MATMUL": _kind(_INT8_FLOAT, "int8", "a[..,M,K], b[..,K,N] (activations)", "adj_x, adj_y (always False here)"),
    "SOFTMAX": _kind(_INT8_FLOAT, "int8", "x (last axis; output 1/256 zp -128)", "beta"),
    "ADD": _kind(_ALL, "int8 16x8", _BINARY, "fused_activation_function"),
    "SUB": _kind(_INT8_FLOAT, "int8", _BINARY, "fused_activation_function"),
    "MUL": _kind(_INT8_FLOAT, "int8", _BINARY, "fused_activation_function"),
    "RELU": _kind(_ALL, "int8 16x8", "x (requantized to the output)"),
    "RELU6": _kind(_ALL, "int8 16x8", "x (requantized to the output)"),
    "RELU_N1_TO_1": _kind(_INT8_FLOAT, "int8", "x (requantized to the output)"),
    "HARD_SWISH": _kind(_INT8_FLOAT, "int8", "x"),
    "LOGISTIC": _kind(_INT8_FLOAT, "int8", "x (output 1/256 zp -128)"),
    "TANH": _kind(_INT8_FLOAT, "int8", "x (output 1/128 zp 0)"),
    "AVERAGE_POOL_2D": _kind(_ALL, "int8 16x8", "x", _POOL_OPTIONS),
    "MAX_POOL_2D": _kind(_ALL, "int8 16x8", "x", _POOL_OPTIONS),
    "MEAN": _kind(_ALL, "int8 16x8", "x, axis (int32 [k])", "keep_dims"),
    "RESHAPE": _kind(_ALL, "", "x, shape (int32 constant)", "new_shape"),
    "TRANSPOSE": _kind(_ALL, "", "x, perm (int32)"),
    "STRIDED_SLICE": _kind(_ALL, "", "x, begin, end, strides (int32)",
                           "begin_mask (0 here), end_mask (set for a negative stride running through index 0)"),
    "SPLIT": _kind(_INT8_FLOAT, "", "axis (int32 scalar), x -> y1..yn", "num_splits (equal pieces)"),
    "SPLIT_V": _kind(_INT8_FLOAT, "", "x, size_splits, axis -> y1..yn", "num_splits"),
    "CONCATENATION": _kind(_ALL, "int8 16x8", "x1, x2, ... (one shared encoding)",
                           "axis (program layout), fused_activation_function (NONE)"),
    "PAD": _kind(_ALL, "int8 16x8", "x, paddings (int32 [rank,2])"),
    "PADV2": _kind(_ALL, "int8 16x8", "x, paddings, value (a scalar of x's dtype)"),
    "MIRROR_PAD": _kind(_INT8_FLOAT, "int8", "x, paddings", "mode REFLECT|SYMMETRIC"),
    "RESIZE_NEAREST_NEIGHBOR": _kind(_INT8_FLOAT, "int8", "x, size (int32 [2]: H, W)", _RESIZE),
    "RESIZE_BILINEAR": _kind(_INT8_FLOAT, "int8", "x, size (int32 [2]: H, W)", _RESIZE),
    "QUANTIZE": _kind("int8 16x8", "int8 16x8", "x float32 -> int8 (leaves an island), or int8 <-> int16"),
    "DEQUANTIZE": _kind("float32", "", "x int8 -> float32 (enters an island)"),
    "GELU": _kind(_INT8_FLOAT, "int8", "x (int8: read from .tflite files)", "approximate (bool)"),
    "SQUARED_DIFFERENCE": _kind(_INT8_FLOAT, "int8", "a, b (int8: read from .tflite files)"),
    "RSQRT": _kind(_INT8_FLOAT, "int8", "x (int8: read from .tflite files)"),
    "TILE": _kind(_INT8_FLOAT, "", "x, multiples (int32 constant [rank])"),
    "UNPACK": _kind(_INT8_FLOAT, "", "x -> y1..yn (one per index along axis, which disappears)", "num, axis"),
    "LEAKY_RELU": _kind(_INT8_FLOAT, "int8", "x", "alpha"),
    "PRELU": _kind(_INT8_FLOAT, "int8", "x, alpha (constant, broadcast like numpy)"),
    "DEPTH_TO_SPACE": _kind(_INT8_FLOAT, "", "x[N,H,W,C]", "block_size"),
    "REDUCE_MAX": _kind(_INT8_FLOAT, "", "x, axis (int32 [k]); output: the input's encoding", "keep_dims"),
    "NEG": _kind("float32", "", "x (read from .tflite files: Keras LayerNormalization negates its mean in float)"),
    "DIV": _kind("float32", "", _BINARY, "fused_activation_function (NONE)"),
    "SQRT": _kind("float32", "", "x"),
    "GATHER": _kind(_INT8_FLOAT, "", "params (int8 table or activation, float32 in an island, int32/bool), "
                    "indices (int32, in [0, dim))", "axis, batch_dims (0 here)"),
    "CAST": _kind(_INT8_FLOAT, "", "x int32/bool -> int32/bool (mode int8: unquantized integers) or float32 "
                  "(mode float32: enters an island)"),
    "LOGICAL_AND": _kind("int8", "", "a, b bool (numpy broadcasting) -> bool (attention masks)"),
    "BROADCAST_TO": _kind(_INT8_FLOAT, "", "x, shape (int32 [rank]) (numpy broadcasting; copies values)"),
    "SELECT_V2": _kind("float32", "", "condition bool, x, y float32 (numpy broadcasting)"),
    "SPACE_TO_DEPTH": _kind(_INT8_FLOAT, "", "x[N,H,W,C]", "block_size"),
    "MINIMUM": _kind(_INT8_FLOAT, "", "a, b (numpy broadcasting; int8: a, b and the output share one encoding)"),
    "EQUAL": _kind("int8", "", "a, b int32/bool (numpy broadcasting) -> bool (masks such as ids == 0)"),
})
"""Every op kind a program may hold, by TFLite builtin name: the closed table the registries are checked against."""


def op_mode(op: QOp, program: QProgram) -> Mode:
    """The mode ``op`` runs in, read from its tensors as TFLite's kernels pick their path: ``float32`` when
    its (first) output is float32 (a float island), ``16x8`` when it reads or writes an int16 activation
    (constants do not count), else ``int8`` (which also covers ops on unquantized int32 and bool tensors:
    token ids, attention masks)."""
    if program.tensor(op.outputs[0]).dtype == "float32":
        return "float32"
    names = (*op.inputs, *op.outputs)
    if any(n and program.tensor(n).dtype == "int16" and not program.tensor(n).is_constant for n in names):
        return "16x8"
    return "int8"


@dataclass(frozen=True)
class OpPlacement:
    """Where one op runs. ``reason`` is empty on the preferred unit, else the rule(s) that sent it on."""

    kind: str
    source: str
    unit: str
    unit_kind: str
    dtype: Dtype
    reason: str = ""
    float_fallback: bool = False
    """No unit runs the op at its integer dtype, ``unit`` runs it in float32: its source node must become a
    float island (``deploy`` re-lowers with it in ``float_nodes``)."""


@dataclass(frozen=True)
class Placement:
    """The unit of every op of a program, in program order."""

    profile: str
    ops: tuple[OpPlacement, ...]

    def counts(self) -> dict[str, int]:
        """Ops per unit name, in first-use order."""
        return dict(Counter(p.unit for p in self.ops))

    def summary(self) -> str:
        """One line like ``NPU 58 ops | CPU 3 ops``."""
        return " | ".join(f"{unit.upper()} {n} op{'s' if n != 1 else ''}" for unit, n in self.counts().items())

    def float_fallbacks(self) -> dict[tuple[str, str], str]:
        """``(source node, op kind) → reason`` of the ops that must run in float32 (``float_fallback``)."""
        return {(p.source, p.kind): p.reason for p in self.ops if p.float_fallback}
