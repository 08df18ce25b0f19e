"""Data movement TensorFlow's converter writes and ONNX models do not: TILE (Keras ``UpSampling2D`` nearest,
``repeat``), UNPACK (an unrolled Keras LSTM/GRU's frames), and EXPAND_DIMS / SQUEEZE of activations (Keras
``Conv1D``), which the reader runs as the RESHAPE each is. Each read from a ``.tflite`` file and compared
with LiteRT. Data movement copies int8 values: LiteRT's reference and optimised kernels give the same bytes,
and ai-edge-litert 2.3's reference resolver registers TILE only up to version 2 (int8 is version 3), so TILE
is compared with the default kernels (XNNPACK off)."""
from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tests.builders.converter_files import edit_model
from tests.builders.movement import one_op_program
from tests.builders.programs import reshape_program

from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.qprogram import QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program

Q = QParams(0.05, 3)


def _assert_file_matches(data: bytes, inputs: list[np.ndarray], kernels: str = "reference") -> list[str]:
    program = tflite_to_program(data, "m", "double")
    want = LiteRT(data, kernels=kernels).run(inputs)  # type: ignore[arg-type]
    for got, expected in zip(run_program(program, inputs), want, strict=True):
        np.testing.assert_array_equal(got, expected)
    return [op.kind for op in program.ops]


def _x(shape: tuple[int, ...], samples: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(-128, 128, (samples * shape[0], *shape[1:])).astype(np.int8)


@pytest.mark.parametrize("shape, multiples", [((1, 3, 1, 4), (1, 1, 2, 1)), ((1, 2, 3), (1, 3, 2)), ((1, 5), (1, 1))])
def test_tile_matches_litert(shape: tuple[int, ...], multiples: tuple[int, ...]) -> None:
    out = tuple(d * m for d, m in zip(shape, multiples))
    multiples_t = QTensor("multiples", (len(shape),), "int32", data=np.array(multiples, np.int32))
    program = one_op_program("TILE", [QTensor("x", shape, "int8", Q)], [multiples_t], out, {})
    assert _assert_file_matches(program_to_tflite(program), [_x(shape)], "default_no_delegates") == ["TILE"]


@pytest.mark.parametrize("axis", [1, -1, 2])
def test_unpack_matches_builtin_ref(axis: int) -> None:
    shape = (1, 4, 3)
    x = QTensor("x", shape, "int8", Q)
    pieces = shape[axis]
    rest = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    outputs = {f"y{i}": QTensor(f"y{i}", rest, "int8", Q) for i in range(pieces)}
    program = one_op_program("UNPACK", [x], [], rest, {"num": pieces, "axis": axis})
    op = program.ops[0]
    program = program.replace(tensors={"x": x, **outputs}, outputs=tuple(outputs),
                              ops=(op.__class__(op.kind, op.inputs, tuple(outputs), op.options, source="unpack"),))
    assert _assert_file_matches(program_to_tflite(program), [_x(shape)]) == ["UNPACK"]


def _as(kind: int, data: bytes, axis: int | None = None, squeeze_dims: list[int] | None = None) -> bytes:
    """The one-RESHAPE file rewritten as an EXPAND_DIMS with a constant ``axis`` or a SQUEEZE."""

    def edit(model: schema.ModelT) -> None:
        op = model.subgraphs[0].operators[0]
        code = model.operatorCodes[op.opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = kind
        code.version = 1
        if axis is not None:
            model.buffers[model.subgraphs[0].tensors[int(op.inputs[1])].buffer].data = np.frombuffer(
                np.array([axis], np.int32).tobytes(), np.uint8)
            model.subgraphs[0].tensors[int(op.inputs[1])].shape = np.array([1], np.int32)
            op.builtinOptionsType, op.builtinOptions = 0, None
        else:
            op.inputs = [int(op.inputs[0])]
            opts = schema.SqueezeOptionsT()
            opts.squeezeDims = squeeze_dims
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.SqueezeOptions, opts

    return edit_model(data, edit)


@pytest.mark.parametrize("shape, axis, out", [((1, 40, 2), 1, (1, 1, 40, 2)), ((1, 40, 2), -1, (1, 40, 2, 1))])
def test_expand_dims_runs_as_reshape_and_matches_builtin_ref(shape: tuple[int, ...], axis: int,
                                                              out: tuple[int, ...]) -> None:
    data = program_to_tflite(reshape_program(np.random.default_rng(0), shape, out))
    data = _as(schema.BuiltinOperator.EXPAND_DIMS, data, axis=axis)
    assert _assert_file_matches(data, [_x(shape)]) == ["RESHAPE"]


@pytest.mark.parametrize("dims", [[1], [], [-3]])
def test_squeeze_runs_as_reshape_and_matches_builtin_ref(dims: list[int]) -> None:
    shape, out = (1, 1, 40, 2), (1, 40, 2)
    if not dims:
        shape, out = (1, 1, 40, 1, 2), (40, 2)
    data = program_to_tflite(reshape_program(np.random.default_rng(0), shape, out))
    data = _as(schema.BuiltinOperator.SQUEEZE, data, squeeze_dims=dims)
    assert _assert_file_matches(data, [_x(shape, samples=1)]) == ["RESHAPE"]
