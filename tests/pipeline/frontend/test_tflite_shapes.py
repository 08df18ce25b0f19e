"""The output-shape rules (``frontend.tflite_shapes``) against LiteRT's own Prepare, on real programs.

Each program is written to a ``.tflite`` whose activations all claim the shape ``[1]``; LiteRT's Prepare
then resizes every one from its inputs, and those shapes must be what the rules give and what the
lowering (or the builder) stored. The kinds whose rules were added with the op table (BATCH_MATMUL,
DEQUANTIZE, GELU, MEAN, MIRROR_PAD, PADV2, QUANTIZE, RELU_N1_TO_1, RSQRT, SPLIT, SPLIT_V,
SQUARED_DIFFERENCE, TRANSPOSE_CONV) each appear below; lowered models cover the rest on the way.
"""
from __future__ import annotations

from collections.abc import Callable

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tests.builders.programs import CASES
from tests.builders.compute import batch_matmul_program, transpose_conv_program
from tests.builders.int16 import mixed_program
from tests.builders.movement import mirror_pad_program, one_op_program
from tests.builders.split_mean import mean_program, random_qparams, split_program
from onnx import TensorProto, helper, numpy_helper

from edgeopt.errors import ModelLoadError
from edgeopt.ir import QParams
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.frontend.tflite_shapes import Shape, check_output_shapes, output_shapes
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.reference.prepare import prepare_program


def litert_shapes(program: QProgram) -> dict[str, Shape]:
    """Every tensor's shape after LiteRT's Prepare, from a file whose activations all claim ``[1]``."""
    model = schema.ModelT.InitFromPackedBuf(program_to_tflite(program), 0)
    subgraph = model.subgraphs[0]
    inputs = {int(i) for i in subgraph.inputs}
    for i, tensor in enumerate(subgraph.tensors):
        if i not in inputs and model.buffers[tensor.buffer].data is None:
            tensor.shape = np.ones(1, np.int32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    interpreter = Interpreter(model_content=bytes(builder.Output()),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    return {d["name"]: tuple(int(n) for n in d["shape"]) for d in interpreter.get_tensor_details()}


def assert_rules_match_litert(program: QProgram) -> list[str]:
    """Rules, LiteRT and the program agree on every op's output shapes; returns the kinds checked."""
    litert = litert_shapes(program)
    for op in program.ops:
        stored = [program.tensor(name).shape for name in op.outputs]
        assert output_shapes(op, program) == [litert[name] for name in op.outputs] == stored, op
    check_output_shapes(program)
    return [op.kind for op in program.ops]


def _one_op(kind: str, shape: tuple[int, ...]) -> QProgram:
    q = QParams(0.01, 3)
    return one_op_program(kind, [QTensor("x", shape, "int8", q)], [], shape, {})


def _pad_v2(shape: tuple[int, ...], paddings: list[list[int]]) -> QProgram:
    q = QParams(0.05, 7)
    out = tuple(d + a + b for d, (a, b) in zip(shape, paddings))
    return one_op_program("PADV2", [QTensor("x", shape, "int8", q)],
                          [QTensor("paddings", (len(shape), 2), "int32", data=np.array(paddings)),
                           QTensor("value", (), "int8", q, np.array(-128))], out, {})


def _mean(shape: tuple[int, ...], axes: list[int], keep_dims: bool) -> QProgram:
    rng = np.random.default_rng(1)
    return mean_program(shape, axes, keep_dims, random_qparams(rng), random_qparams(rng))


def _adjoint_batch_matmul(adj_x: bool, adj_y: bool) -> QProgram:
    """A (2, 3, 4) x (2, 4, 5) product with its operands stored transposed where adjoint."""
    program = batch_matmul_program(np.random.default_rng(2), (2, 3, 4), (2, 4, 5))
    a, b = program.tensor("a"), program.tensor("b")
    tensors = {**program.tensors,
               "a": QTensor("a", (2, 4, 3) if adj_x else a.shape, "int8", a.qparams),
               "b": QTensor("b", (2, 5, 4) if adj_y else b.shape, "int8", b.qparams)}
    op = QOp("BATCH_MATMUL", ("a", "b"), ("y",), {"adj_x": adj_x, "adj_y": adj_y})
    return program.replace(tensors=tensors, ops=(op,))


def _layer_norm_gelu(shape: list[int], approximate: str) -> QProgram:
    """ONNX LayerNormalization then Gelu, lowered: float islands of DEQUANTIZE, MEAN, SUB,
    SQUARED_DIFFERENCE, ADD, RSQRT, MUL, GELU and QUANTIZE."""
    rng = np.random.default_rng(0)
    gamma = numpy_helper.from_array(rng.uniform(0.5, 1.5, shape[-1:]).astype(np.float32), "gamma")
    beta = numpy_helper.from_array(rng.uniform(-1, 1, shape[-1:]).astype(np.float32), "beta")
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], name="ln", axis=-1),
             helper.make_node("Gelu", ["n"], ["y"], name="gelu", approximate=approximate)]
    graph = helper.make_graph(nodes, "ln_gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [gamma, beta])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    ir = onnx_to_graph(model, "ln_gelu", None)
    calib = rng.normal(size=(16, *shape[1:])).astype(np.float32) * 2
    return lower(quantize_minmax(ir, calibrate(ir, calib)), rounding="double")


PROGRAMS: dict[str, Callable[[], QProgram]] = {
    "BATCH_MATMUL": lambda: batch_matmul_program(np.random.default_rng(2), (2, 3, 4), (2, 4, 5)),
    "BATCH_MATMUL broadcast": lambda: batch_matmul_program(np.random.default_rng(2), (3, 1, 3, 4), (2, 4, 5)),
    "BATCH_MATMUL adj_x": lambda: _adjoint_batch_matmul(True, False),
    "BATCH_MATMUL adj_x adj_y": lambda: _adjoint_batch_matmul(True, True),
    "TRANSPOSE_CONV SAME": lambda: transpose_conv_program(np.random.default_rng(3)),
    "TRANSPOSE_CONV VALID": lambda: transpose_conv_program(np.random.default_rng(3), stride=(2, 1), padding="VALID",
                                                           bias=False),
    "MEAN keep_dims": lambda: _mean((1, 4, 5, 6), [1, 2], True),
    "MEAN negative and repeated axes": lambda: _mean((1, 4, 5, 6), [-1, 1, -3], False),
    "MEAN rank 3": lambda: _mean((2, 3, 4), [0], False),
    "MIRROR_PAD REFLECT": lambda: mirror_pad_program(np.random.default_rng(4), shape=(1, 4, 5, 2),
                                                     paddings=((0, 0), (1, 2), (2, 1), (0, 0)), mode="REFLECT"),
    "MIRROR_PAD SYMMETRIC": lambda: mirror_pad_program(np.random.default_rng(4), shape=(1, 4, 5, 2),
                                                       paddings=((0, 0), (4, 0), (0, 5), (0, 0)), mode="SYMMETRIC"),
    "PADV2": lambda: _pad_v2((1, 5, 6, 3), [[0, 0], [1, 2], [0, 1], [0, 0]]),
    "PADV2 rank 3": lambda: _pad_v2((2, 5, 3), [[1, 0], [0, 3], [2, 2]]),
    "RELU_N1_TO_1": lambda: _one_op("RELU_N1_TO_1", (1, 3, 4, 5)),
    "SPLIT": lambda: split_program(np.random.default_rng(5), (1, 4, 3, 8), 1, (2, 2)),
    "SPLIT negative axis": lambda: split_program(np.random.default_rng(5), (2, 6, 8), -1, (2, 2, 2, 2)),
    "SPLIT_V": lambda: split_program(np.random.default_rng(0), (1, 4, 3, 8), -1, (1, 3, 4), False),
    "SPLIT_V axis 3": lambda: split_program(np.random.default_rng(1), (1, 4, 3, 8), 3, (1, 3, 4), False),
    "float islands": lambda: _layer_norm_gelu([1, 6, 16], "none"),
    "float islands tanh GELU": lambda: _layer_norm_gelu([1, 2, 3, 8], "tanh"),
    # Prepared, as the reader prepares a file: the windowed ops' rules read Prepare's output size.
    "QUANTIZE int8 <-> int16": lambda: prepare_program(mixed_program(np.random.default_rng(6))),
    "chain": lambda: prepare_program(CASES["chain"](np.random.default_rng(7))),
    "layout_chain": lambda: prepare_program(CASES["layout_chain"](np.random.default_rng(7))),
}
# The kinds that had no rule before the op table; each must be checked against LiteRT above.
NEW_RULES = {"BATCH_MATMUL", "DEQUANTIZE", "GELU", "MEAN", "MIRROR_PAD", "PADV2", "QUANTIZE", "RELU_N1_TO_1",
             "RSQRT", "SPLIT", "SPLIT_V", "SQUARED_DIFFERENCE", "TRANSPOSE_CONV"}


@pytest.mark.parametrize("case", sorted(PROGRAMS))
def test_output_shape_rules_match_litert_prepare(case: str) -> None:
    assert_rules_match_litert(PROGRAMS[case]())


def test_every_new_rule_is_checked_against_litert() -> None:
    checked = {kind for make in PROGRAMS.values() for kind in (op.kind for op in make().ops)}
    assert NEW_RULES <= checked, sorted(NEW_RULES - checked)


def test_split_v_with_minus_one_is_resolved() -> None:
    """The -1 of size_splits stands for the rest of the dimension (``split_v.cc``)."""
    program = split_program(np.random.default_rng(0), (1, 4, 3, 8), -1, (1, 3, 4), False)
    sizes = program.tensor("size_splits")
    program = program.replace(tensors={**program.tensors, "size_splits": QTensor(
        "size_splits", sizes.shape, "int32", data=np.array([1, -1, 4], np.int32))})
    assert assert_rules_match_litert(program) == ["SPLIT_V"]


@pytest.mark.parametrize("case,edit,message", [
    ("SPLIT", lambda p: p.replace(tensors={**p.tensors, "y1": QTensor("y1", (1, 1, 3, 8), "int8",
                                                                      p.tensor("y1").qparams)}),
     "output 'y1' of shape"),
    ("SPLIT_V", lambda p: p.replace(tensors={**p.tensors, "size_splits": QTensor(
        "size_splits", (3,), "int32", data=np.array([1, 3, 5], np.int32))}), "do not split"),
    ("MEAN rank 3", lambda p: p.replace(tensors={**p.tensors, "axis": QTensor(
        "axis", (1,), "int32", data=np.array([3], np.int32))}), "for an input of rank 3"),
    ("TRANSPOSE_CONV SAME", lambda p: p.replace(tensors={**p.tensors, "output_shape": QTensor(
        "output_shape", (4,), "int32", data=np.array([1, 8, 10, 5], np.int32))}), "filters"),
    ("BATCH_MATMUL", lambda p: p.replace(tensors={**p.tensors, "b": QTensor(
        "b", (2, 3, 5), "int8", p.tensor("b").qparams)}), "reduced dimension"),
])
def test_corrupt_operands_are_named(case: str, edit: Callable[[QProgram], QProgram], message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        check_output_shapes(edit(PROGRAMS[case]()))
