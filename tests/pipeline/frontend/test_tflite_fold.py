"""Shape-computing subgraphs folded at load (``frontend.tflite_fold``): each folder against its TFLite
kernel's meaning, and a converter-style file (SHAPE → STRIDED_SLICE → PACK → RESHAPE) emulated bit-exact
with LiteRT's reference kernels (``BUILTIN_REF``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tests.builders.converter_files import conv_flatten_softmax_program, converter_style_bytes, edit_model

from edgeopt.errors import ModelLoadError, UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.pipeline.frontend.tflite_fold import fold_constants
from edgeopt.qprogram import QOp, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program


def _fold(kind: str, inputs: list[np.ndarray | tuple[int, ...]], out_shape: tuple[int, ...],
          options: Mapping[str, Any] | None = None, out_dtype: str = "int32") -> np.ndarray:
    """One op folded: an array input is a constant, a tuple the shape of an int8 activation."""
    tensors: dict[str, QTensor] = {}
    for i, value in enumerate(inputs):
        if isinstance(value, tuple):
            tensors[f"in{i}"] = QTensor(f"in{i}", value, "int8", QParams(0.1, 0))
        else:
            tensors[f"in{i}"] = QTensor(f"in{i}", value.shape, str(value.dtype), data=value)
    tensors["out"] = QTensor("out", out_shape, out_dtype)
    op = QOp(kind, tuple(tensors)[:-1], ("out",), options or {})
    kept, folded = fold_constants([(0, op)], tensors, "m")
    assert kept == []
    return folded["out"].data.reshape(out_shape)


def _i32(*values: int) -> np.ndarray:
    return np.array(values, np.int32)


FOLDS = {
    "SHAPE of an activation": ("SHAPE", [(1, 7, 5, 3)], (4,), {"out_type": "INT32"}, [1, 7, 5, 3]),
    "STRIDED_SLICE shrink": ("STRIDED_SLICE", [_i32(1, 7, 5, 3), _i32(0), _i32(1), _i32(1)], (),
                             {"shrink_axis_mask": 1}, 1),
    "STRIDED_SLICE negative shrink": ("STRIDED_SLICE", [_i32(1, 7, 5, 3), _i32(-1), _i32(0), _i32(1)], (),
                                      {"shrink_axis_mask": 1}, 3),
    "STRIDED_SLICE masks": ("STRIDED_SLICE", [_i32(1, 7, 5, 3), _i32(1), _i32(0), _i32(1)], (3,),
                            {"end_mask": 1}, [7, 5, 3]),
    "STRIDED_SLICE offset reversed": ("STRIDED_SLICE", [_i32(1, 7, 5, 3), _i32(2), _i32(-2), _i32(-1)], (2,),
                                      {"offset": True}, [5, 7]),
    "PACK": ("PACK", [np.array(1, np.int32), np.array(-1, np.int32)], (2,), {"axis": 0, "values_count": 2}, [1, -1]),
    "CONCATENATION": ("CONCATENATION", [_i32(1), _i32(35, 3)], (3,), {"axis": 0}, [1, 35, 3]),
    "GATHER": ("GATHER", [_i32(1, 7, 5, 3), _i32(0, 3)], (2,), {"axis": 0}, [1, 3]),
    "CAST int64 to int32": ("CAST", [np.array([1, 105], np.int64)], (2,), {}, [1, 105]),
    "MUL broadcast": ("MUL", [_i32(7, 5), np.array(3, np.int32)], (2,), {}, [21, 15]),
    "FLOOR_DIV": ("FLOOR_DIV", [_i32(7, -7), _i32(2, 2)], (2,), {}, [3, -4]),
    "REDUCE_PROD": ("REDUCE_PROD", [_i32(7, 5, 3), _i32(0)], (), {"keep_dims": False}, 105),
    "RESHAPE": ("RESHAPE", [_i32(1, 2, 3, 4), _i32(2, -1)], (2, 2), {}, [[1, 2], [3, 4]]),
    "SQUEEZE": ("SQUEEZE", [np.array([[4]], np.int32)], (1,), {"squeeze_dims": (0,)}, [4]),
    "EXPAND_DIMS": ("EXPAND_DIMS", [_i32(4, 5), np.array(-1, np.int32)], (2, 1), {}, [[4], [5]]),
}


@pytest.mark.parametrize("case", sorted(FOLDS))
def test_folders_compute_what_tflite_kernels_do(case: str) -> None:
    kind, inputs, out_shape, options, want = FOLDS[case]
    np.testing.assert_array_equal(_fold(kind, inputs, out_shape, options), np.array(want))


def test_quantized_or_activation_operands_are_not_folded() -> None:
    x = QTensor("x", (1, 4), "int8", QParams(0.1, 0))
    c = QTensor("c", (1, 4), "int8", QParams(0.1, 0), np.zeros((1, 4), np.int8))
    y = QTensor("y", (1, 8), "int8", QParams(0.1, 0))
    ops = [(0, QOp("CONCATENATION", ("x", "c"), ("y",), {"axis": 1})), (1, QOp("CONCATENATION", ("c", "c"), ("y",)))]
    kept, _ = fold_constants(ops, {"x": x, "c": c, "y": y}, "m")
    assert kept == ops


def test_corrupt_operands_are_named() -> None:
    with pytest.raises(ModelLoadError, match=r"GATHER operator 0 → 'out' cannot be evaluated at load: indices"):
        _fold("GATHER", [_i32(1, 7), _i32(2)], (1,), {"axis": 0})
    with pytest.raises(ModelLoadError, match=r"PACK operator 0 → 'out' has output of shape \(3,\)"):
        _fold("PACK", [np.array(1, np.int32), np.array(2, np.int32)], (3,), {"axis": 0})
    with pytest.raises(UnsupportedOpError, match="ellipsis_mask"):
        _fold("STRIDED_SLICE", [_i32(1, 7), _i32(0), _i32(1), _i32(1)], (1,), {"ellipsis_mask": 1})


# --- a converter-style file ------------------------------------------------------------------------


def test_shape_chain_folds_and_emulates_bit_exact_with_builtin_ref() -> None:
    """CONV_2D → SHAPE/STRIDED_SLICE/PACK → RESHAPE → FULLY_CONNECTED → SOFTMAX: the chain disappears, RESHAPE
    reads the constant [1, -1], and the outputs equal LiteRT ``BUILTIN_REF``'s element for element."""
    data = converter_style_bytes(conv_flatten_softmax_program(np.random.default_rng(0)))
    program = tflite_to_program(data, "converter", "double")
    assert [op.kind for op in program.ops] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    np.testing.assert_array_equal(program.tensor(program.ops[1].inputs[1]).data, [1, -1])
    x = np.random.default_rng(1).integers(-128, 128, (100, 6, 5, 3)).astype(np.int8)
    want = LiteRT(data, kernels="reference").run([x])[0]
    np.testing.assert_array_equal(run_program(program, [x])[0], want)


def test_an_op_left_after_folding_without_kernel_is_named() -> None:
    """A SHAPE chain that cannot fold (a GATHER_ND of an activation) ends in one line naming op and operator."""

    def gather_activation(model: schema.ModelT) -> None:
        for op in model.subgraphs[0].operators:
            code = model.operatorCodes[op.opcodeIndex]
            if code.builtinCode == schema.BuiltinOperator.PACK:
                code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.GATHER_ND
                op.inputs = [0, int(op.inputs[1])]
                op.builtinOptionsType, op.builtinOptions = 0, None

    data = edit_model(converter_style_bytes(conv_flatten_softmax_program(np.random.default_rng(0))),
                      gather_activation)
    with pytest.raises(UnsupportedOpError) as err:
        tflite_to_program(data, "g", "double")
    assert err.value.op == "GATHER_ND" and "operator 3" in err.value.node
