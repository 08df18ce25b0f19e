"""The lowering context: builds the QProgram's tensors and ops while op lowerings walk the Graph.

Layout: every 4-D activation of the (NCHW) source becomes NHWC in the program, as TFLite kernels
expect; other ranks keep their order. ``to_program``/``NHWC`` describe that mapping.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeopt.errors import InternalError, UnsupportedOpError
from edgeopt.ir import Graph, Node, QParams, QuantizedGraph
from edgeopt.qprogram import QOp, QTensor
from edgeopt.registry import Registry

NHWC = (0, 2, 3, 1)  # program axis i holds source axis NHWC[i]

Lowering = Callable[[Node, "LowerContext"], None]
LOWERINGS: Registry[Lowering] = Registry("int8 lowering")


def program_dtype(dtype: str) -> str:
    """The program dtype of an unquantized integer or boolean source tensor: ``bool`` stays, every integer
    becomes int32 (what TFLite's converter writes for indices: GATHER takes int32 or int64 positions, and
    CAST and the integer kernels of LiteRT's reference resolver all take int32)."""
    return "bool" if dtype == "bool" else "int32"


def program_perm(rank: int) -> tuple[int, ...] | None:
    """The permutation from a source tensor of ``rank`` to its program layout, None if unchanged."""
    return NHWC if rank == 4 else None


class LowerContext:
    """Collects tensors and ops; knows each source tensor's encoding, shape and program layout."""

    def __init__(self, qgraph: QuantizedGraph, *, float_constants: bool = False) -> None:
        self.qgraph = qgraph
        self.graph: Graph = qgraph.graph
        self.enc = qgraph.encodings
        self.tensors: dict[str, QTensor] = {}
        self.ops: list[QOp] = []
        self._fresh = 0
        # Set in the sub-context that lowers one node of a float island (``float_island``): constants
        # keep their float values, so the island computes with the model's own weights.
        self.float_constants = float_constants

    def float_sub_context(self) -> LowerContext:
        """An empty context over the same graph whose constants stay float32 (``quantized``)."""
        return LowerContext(self.qgraph, float_constants=True)

    # -- source-side queries -------------------------------------------------------------------
    def src_shape(self, name: str) -> tuple[int, ...]:
        return self.graph.shape(name)

    def const(self, name: str) -> np.ndarray:
        if name not in self.graph.initializers:
            raise InternalError(f"tensor '{name}' was expected to be a constant")
        return self.graph.initializers[name]

    def is_const(self, name: str) -> bool:
        return name in self.graph.initializers

    def encoding(self, name: str, node: Node) -> QParams:
        if name not in self.enc:
            raise UnsupportedOpError(node.op, node.name, f"tensor '{name}' has no quantization encoding")
        return self.enc[name]

    # -- program-side construction -------------------------------------------------------------
    def is_integer(self, name: str) -> bool:
        """Whether source tensor ``name`` holds integers or booleans (token ids, masks), never quantized."""
        info = self.graph.tensors.get(name)
        return info is not None and not info.is_float

    def activation(self, name: str, node: Node) -> str:
        """The program tensor for source activation ``name`` (created on first use, NHWC if 4-D): int8 or
        int16 with its encoding, or, for an integer or boolean tensor, int32 or bool without one."""
        if name not in self.tensors:
            shape = self.src_shape(name)
            perm = program_perm(len(shape))
            if perm:
                shape = tuple(shape[p] for p in perm)
            if self.is_integer(name):
                self.tensors[name] = QTensor(name, shape, program_dtype(self.graph.tensors[name].dtype))
                return name
            q = self.encoding(name, node)
            self.tensors[name] = QTensor(name, shape, q.dtype, q)  # int8, or int16 (a w8a16 plan)
        return name

    def temp(self, base: str, shape: tuple[int, ...], qparams: QParams | None, dtype: str | None = None) -> str:
        """A new intermediate activation tensor of the program (no source counterpart): quantized with
        ``qparams``, or of ``dtype`` without them (integers, booleans)."""
        if qparams is None and dtype is None:
            raise InternalError(f"temporary tensor '{base}' needs an encoding or a dtype")
        self._fresh += 1
        name = f"{base}__{self._fresh}"
        self.tensors[name] = QTensor(name, shape, qparams.dtype if qparams is not None else dtype, qparams)
        return name

    def temp_like(self, base: str, shape: tuple[int, ...], like: str) -> str:
        """A new intermediate tensor with the dtype and encoding of program tensor ``like``."""
        return self.temp(base, shape, self.tensors[like].qparams, self.tensors[like].dtype)

    def quantized(self, value: np.ndarray, qparams: QParams) -> np.ndarray:
        """A constant's values as the program stores them: ``qparams.quantize(value)``, or, in a float
        sub-context, the float32 values themselves (``constant`` then stores them as float32)."""
        if self.float_constants:
            return np.asarray(value, dtype=np.float32)
        return qparams.quantize(value)

    def constant(self, base: str, data: np.ndarray, dtype: str, qparams: QParams | None = None) -> str:
        """A new constant tensor (weights, biases, shapes, paddings).

        In a float sub-context, float values given for a quantized constant (from ``quantized``) are
        stored as float32; the island keeps them and drops the encoding."""
        if self.float_constants and qparams is not None and np.issubdtype(np.asarray(data).dtype, np.floating):
            dtype = "float32"
        name = base
        while name in self.tensors:
            self._fresh += 1
            name = f"{base}__{self._fresh}"
        self.tensors[name] = QTensor(name, tuple(np.shape(data)), dtype, qparams, np.asarray(data))
        return name

    def emit(self, kind: str, inputs: list[str], outputs: list[str], node: Node, **options: Any) -> None:
        self.ops.append(QOp(kind, tuple(inputs), tuple(outputs), options, source=node.name))

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape
