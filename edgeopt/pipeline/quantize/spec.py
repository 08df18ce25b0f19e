"""The op roles quantization follows, as frozen data: which ONNX ops share their input's encoding, carry
a weight, have an output encoding their TFLite int8 kernel fixes, or quantize their constant operands.

Every stage that encodes, re-encodes or simulates a quantized graph (``minmax``, ``precision``,
``profile_checks``, the QDQ reader, QuantSim) reads these, so they agree by construction; they are
immutable so that no importer can change them for the others.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from edgeopt.ir import QParams

# Ops that only move data (and average pooling, whose TFLite kernel requires it) run without
# requantizing: their output takes their input's encoding, as the TFLite spec demands.
SHARED_SCALE_OPS: frozenset[str] = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Pad", "Slice", "Split",
    "AveragePool", "GlobalAveragePool", "ReduceMean", "MaxPool",
    "Concat", "Resize",  # Concat: inputs and output share one range (quantize.shared_ranges)
    "Gather",  # TFLite's GATHER copies values: an embedding row keeps its table's encoding
    "Expand",  # BROADCAST_TO copies values
    "ReduceMax", "DepthToSpace", "SpaceToDepth",  # REDUCE_MAX, DEPTH_TO_SPACE, SPACE_TO_DEPTH copy values
    "Min",  # MINIMUM compares raw values: its operands share the output's encoding (SHARED_OPERAND_OPS)
})
# Means whose TFLite int8 form (MEAN) can requantize: a QDQ file's own output encoding for them is kept
# (``frontend.qdq_onnx``), and the lowering writes MEAN instead of AVERAGE_POOL_2D when it differs from the
# input's. Calibrated graphs still give them their input's encoding (SHARED_SCALE_OPS).
REQUANTIZING_MEAN_OPS: frozenset[str] = frozenset({"GlobalAveragePool", "ReduceMean"})
# Ops whose input 1 is a weight quantized per output channel (``ir.weight_out_axis``).
WEIGHTED_OPS: frozenset[str] = frozenset({"Conv", "Gemm", "ConvTranspose", "MatMul"})
# ONNX op → the output encoding its TFLite int8 kernel requires, whatever the calibration saw.
FIXED_OUTPUT: Mapping[str, QParams] = MappingProxyType({
    "Softmax": QParams(1.0 / 256, -128),  # int8 SOFTMAX (activations.cc SoftmaxPrepare)
    "Sigmoid": QParams(1.0 / 256, -128),  # int8 LOGISTIC (activations.cc SigmoidPrepare)
    "Tanh": QParams(1.0 / 128, 0),  # int8 TANH, as TensorFlow's converter fixes it
})
# Ops whose constant input 0 is a lookup table (an embedding): int8 per-tensor over the table's own range,
# which their output shares (SHARED_SCALE_OPS).
TABLE_OPS: frozenset[str] = frozenset({"Gather"})
# Constant operands of these ops become int8 per-tensor tensors over their own range, as the converter writes.
CONSTANT_OPERAND_OPS: frozenset[str] = frozenset({"Add", "Sub", "Mul"})
# Constant operands of these ops take the encoding of their activation operand (input 0): TFLite's int8
# MINIMUM compares raw values, so both operands and the output must share one encoding.
SHARED_OPERAND_OPS: frozenset[str] = frozenset({"Min"})
