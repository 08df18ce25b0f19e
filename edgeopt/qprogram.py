"""The lowered int8 program: TFLite builtin ops on NHWC tensors with precomputed integer parameters.

Every backend reads this one structure: the integer reference executor runs it, the TFLite writer
serialises it, and the cost model prices it. A reader of ``.tflite`` files produces the same structure.

Op kinds, their inputs and ``options`` (TFLite's builtin option names, snake_case; enums as strings):

========================  ==================================  ============================================
kind                      inputs                              options
========================  ==================================  ============================================
CONV_2D                   x[N,H,W,Ci], w[Co,KH,KW,Ci], b[Co]   padding SAME|VALID, stride_h, stride_w,
                                                              dilation_h_factor, dilation_w_factor,
                                                              fused_activation_function
DEPTHWISE_CONV_2D         x, w[1,KH,KW,Co], b[Co]              same as CONV_2D + depth_multiplier
CONV_2D (grouped)         x[..,Ci], w[Co,KH,KW,Ci/groups], b   as CONV_2D (op version 6)
TRANSPOSE_CONV            out_shape (int32 [4]), w[Co,KH,KW,   padding SAME|VALID (of the output size),
                          Ci], x[N,H,W,Ci], b[Co]             stride_h, stride_w, fused_activation_function
FULLY_CONNECTED           x[N,Ci] (or [B,S,Ci]), w[Co,Ci],     fused_activation_function, keep_num_dims
                          b[Co]
BATCH_MATMUL              a[..,M,K], b[..,K,N] (activations)   adj_x, adj_y (always False here)
SOFTMAX                   x (last axis; output 1/256 zp -128)  beta
ADD, SUB, MUL             a, b (numpy broadcasting; either     fused_activation_function
                          may be an int8 constant)
RELU, RELU6, RELU_N1_TO_1 x (requantized to the output)      -
HARD_SWISH                x                                  -
LOGISTIC, TANH            x (output 1/256 zp -128; 1/128 0)  -
AVERAGE_POOL_2D           x                                    padding, stride_h, stride_w, filter_height,
                                                              filter_width, fused_activation_function
RESHAPE                   x, shape (int32 constant)            new_shape
PAD                       x, paddings (int32 [rank,2])         -
STRIDED_SLICE             x, begin, end, strides (int32)       begin_mask (0 here), end_mask (set for a
                                                              negative stride running through index 0)
TRANSPOSE                 x, perm (int32)                      -
CONCATENATION             x1, x2, ... (one shared encoding)    axis (program layout),
                                                              fused_activation_function (NONE)
MAX_POOL_2D               x                                    same as AVERAGE_POOL_2D
RESIZE_NEAREST_NEIGHBOR   x, size (int32 [2]: H, W)            align_corners, half_pixel_centers
RESIZE_BILINEAR           x, size (int32 [2]: H, W)            align_corners, half_pixel_centers
PADV2                     x, paddings, value (int8 scalar)     -
SPLIT                     axis (int32 scalar), x → y1..yn      num_splits (equal pieces)
SPLIT_V                   x, size_splits, axis → y1..yn        num_splits
MEAN                      x, axis (int32 [k])                  keep_dims
MIRROR_PAD                x, paddings                          mode REFLECT|SYMMETRIC
DEQUANTIZE                x int8 → float32 (enters an island)  -
QUANTIZE                  x float32 → int8 (leaves an island)  -
GELU (float32)            x                                    approximate (bool)
SQUARED_DIFFERENCE (f32)  a, b                                 -
RSQRT (float32)           x                                    -
========================  ==================================  ============================================

Float islands: an op whose output tensor is float32 (GELU, SQUARED_DIFFERENCE, RSQRT, DEQUANTIZE, and the
float32 form of any op above for a node of ``QuantizedGraph.float_nodes``) computes in float32
(``runtimes.reference.float_ops``, ``float_compute``, ``float_movement``, ``float_activations``) and has
no ``params``.

16x8 mode (``--precision w8a16``, ``pipeline.quantize.precision``): CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, PAD, RESHAPE, TRANSPOSE and STRIDED_SLICE may instead run on int16
activations (symmetric, zero point 0) with int64 biases; QUANTIZE int8 <-> int16 joins them to int8 ops.
Their Prepare and kernels are in ``runtimes.reference.int16_registry`` (``conv_16x8``, ``elementwise_16x8``).

``fused_activation_function`` is one of NONE, RELU, RELU6, RELU_N1_TO_1. Weights are int8 symmetric
per-channel (axis 0, or 3 for depthwise), biases int32 with scale ``input_scale * weight_scale`` and
zero point 0, activations int8 asymmetric per-tensor. ``params`` holds what TFLite's Prepare computes
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
