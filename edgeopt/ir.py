"""The float IR: a small graph with ONNX op names, attributes, numpy weights and the tensor names kept.

Stages are functions ``Graph -> Graph`` that never mutate their input: every dataclass here is frozen
and every weight array is read-only, so a pass that wants to change a weight must build a new array.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from edgeopt.errors import InternalError


def frozen_array(a: np.ndarray) -> np.ndarray:
    """A read-only copy-free view of ``a`` (a copy only if ``a`` is not already contiguous).

    Its rank is kept: ``np.ascontiguousarray`` alone would turn a scalar (a Gather's index) into shape
    ``[1]``, which changes what the op computes when the graph is written back to ONNX."""
    a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class TensorInfo:
    """Name, static shape and numpy dtype name of a tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def is_float(self) -> bool:
        """Whether the tensor holds real values (quantized in the int8 program), not indices, masks or flags."""
        return np.issubdtype(np.dtype(self.dtype), np.floating)


def input_arrays(x: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
    """The per-input arrays of a batch of model inputs, in the order of ``names``.

    A batch for a model with one input is that input's array; for several inputs it is a structured array
    with one field per input name (``pipeline.frontend.data.load_npz``), so that ``len(x)``, ``x[:n]`` and
    ``x[i:i + 1]`` count and slice samples of every input at once.

    Raises:
        InternalError: ``x`` does not hold the inputs ``names``.
    """
    if x.dtype.names is None:
        if len(names) != 1:
            raise InternalError(f"a batch for the {len(names)} inputs {list(names)} must be a structured array")
        return [x]
    if sorted(x.dtype.names) != sorted(names):
        raise InternalError(f"the batch holds {list(x.dtype.names)}, the model takes {list(names)}")
    return [np.ascontiguousarray(x[name]) for name in names]


EDGEOPT_ATTRS = frozenset({"fused_activation", "bn_beta", "bn_gamma"})  # not ONNX attributes


@dataclass(frozen=True)
class Node:
    """One operation. ``op`` is an ONNX op name; ``attrs`` holds ONNX attributes plus edgeopt's own.

    edgeopt's own attributes:
        ``fused_activation``: ``"Relu"`` or ``"Relu6"``, set by ``fuse_activation`` on the producing op.
        ``bn_beta``, ``bn_gamma``: per-channel mean and standard deviation (tuples of floats) of the
        output before its activation, from the batch norm that ``fold_batch_norm`` folded into the op.
    """

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    def with_(self, **changes: Any) -> Node:
        """A copy with ``changes`` applied; ``attrs`` given here are merged into the existing ones."""
        if "attrs" in changes:
            changes["attrs"] = {**self.attrs, **changes["attrs"]}
        return replace(self, **changes)


def weight_out_axis(node: Node) -> int:
    """The axis of ``node``'s weight (its input 1) that indexes the output channels.

    Conv's weight is (Co, Ci/groups, KH, KW): 0. ConvTranspose's (Ci, Co/groups, KH, KW), MatMul's (K, N)
    and Gemm's without ``transB`` (K, N): 1. Gemm's with ``transB`` (N, K): 0.

    Raises:
        InternalError: ``node`` is not a Conv, ConvTranspose, Gemm or MatMul.
    """
    if node.op == "Conv":
        return 0
    if node.op in ("ConvTranspose", "MatMul"):
        return 1
    if node.op == "Gemm":
        return 0 if node.attrs.get("transB", 0) else 1
    raise InternalError(f"{node.op} node '{node.name}' has no weight with output channels")


@dataclass(frozen=True)
class Graph:
    """A float model: nodes in topological order, graph inputs/outputs, constant weights, tensor shapes.

    ``tensors`` holds the static shape and dtype of every non-constant tensor (inputs, outputs and all
    intermediates); constants live in ``initializers``. ``opset`` is the ONNX default-domain opset the
    node forms follow (e.g. whether Pad takes its pads as an input or an attribute).
    """

    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    initializers: Mapping[str, np.ndarray]
    tensors: Mapping[str, TensorInfo]
    opset: int = 18

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        inits = {k: frozen_array(v) for k, v in self.initializers.items()}
        object.__setattr__(self, "initializers", MappingProxyType(inits))
        object.__setattr__(self, "tensors", MappingProxyType(dict(self.tensors)))

    def replace(self, **changes: Any) -> Graph:
        return replace(self, **changes)

    def producer(self, tensor: str) -> Node | None:
        """The node that writes ``tensor``, or None for graph inputs and constants."""
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        """Nodes that read ``tensor``, in graph order."""
        return [n for n in self.nodes if tensor in n.inputs]

    def shape(self, tensor: str) -> tuple[int, ...]:
        if tensor in self.initializers:
            return tuple(self.initializers[tensor].shape)
        return self.tensors[tensor].shape

    def is_output(self, tensor: str) -> bool:
        return any(t.name == tensor for t in self.outputs)

    def ops(self) -> list[str]:
        return [n.op for n in self.nodes]

    def without_unused_initializers(self) -> Graph:
        used = {t for n in self.nodes for t in n.inputs}
        return self.replace(initializers={k: v for k, v in self.initializers.items() if k in used})


@dataclass(frozen=True, eq=False)
class QParams:
    """Affine quantization of one tensor: ``real = scale * (q - zero_point)``.

    ``scale`` and ``zero_point`` are 1-D arrays (length 1 for per-tensor, C for per-channel along
    ``axis``). Scales are float32 because that is what the .tflite and .onnx files store, and every
    multiplier derived from them must be derived from exactly those values.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: str = "int8"
    axis: int | None = None

    def __post_init__(self) -> None:
        scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        zp = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        object.__setattr__(self, "scale", frozen_array(scale))
        object.__setattr__(self, "zero_point", frozen_array(zp))

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    def _bcast(self, a: np.ndarray, ndim: int) -> np.ndarray:
        if self.axis is None:
            return a.reshape(())
        shape = [1] * ndim
        shape[self.axis] = -1
        return a.reshape(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Round half away from zero (as TFLite's converter and kernels do) and saturate."""
        x = np.asarray(x, dtype=np.float64)
        scale = self._bcast(self.scale.astype(np.float64), x.ndim)
        zp = self._bcast(self.zero_point, x.ndim)
        q = np.trunc(x / scale + np.copysign(0.5, x)) + zp
        return np.clip(q, self.qmin, self.qmax).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q)
        scale = self._bcast(self.scale, q.ndim)
        zp = self._bcast(self.zero_point, q.ndim)
        return ((q.astype(np.int64) - zp) * scale).astype(np.float32)

    def same_as(self, other: QParams) -> bool:
        return (
            self.dtype == other.dtype
            and self.axis == other.axis
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )


@dataclass(frozen=True)
class QuantizedGraph:
    """A float Graph with encodings: the QDQ view of a quantized model (what a QDQ .onnx stores).

    ``encodings`` maps tensor names (activations, weights and biases) to their QParams. Quantized
    weight values are ``encodings[w].quantize(graph.initializers[w])``: both the QDQ writer and the
    lowering derive them through that one call, so the two artifacts carry the same integers.
    """

    graph: Graph
    encodings: Mapping[str, QParams]
    float_nodes: frozenset[str] = frozenset()
    """Nodes kept in float32 (a float island in the int8 program): a profile's float-only fallback unit,
    or mixed precision keeping a sensitive layer in float. Their outputs keep their encodings, used where
    an int8 reader or a graph output needs the value back in int8."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "encodings", MappingProxyType(dict(self.encodings)))
        object.__setattr__(self, "float_nodes", frozenset(self.float_nodes))


def topological_order(nodes: Iterable[Node], available: Iterable[str]) -> tuple[Node, ...]:
    """Nodes sorted so that each comes after the producers of its inputs (stable for sorted input)."""
    pending = list(nodes)
    ready = set(available)
    ordered: list[Node] = []
    while pending:
        progress = False
        for node in list(pending):
            if all(t == "" or t in ready for t in node.inputs):
                ordered.append(node)
                ready.update(node.outputs)
                pending.remove(node)
                progress = True
        if not progress:
            names = ", ".join(n.name for n in pending[:5])
            from edgeopt.errors import ModelLoadError

            raise ModelLoadError(f"graph has a cycle or a dangling input at node(s) {names}")
    return tuple(ordered)
