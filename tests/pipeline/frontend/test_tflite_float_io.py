"""Int8 ``.tflite`` files with float32 input and output (TensorFlow's converter default for full-integer
models: QUANTIZE → int8 ops → DEQUANTIZE): read with their edge conversions, emulated bit-exact with
LiteRT's reference kernels (``BUILTIN_REF``), and run by ``edgeopt emulate`` on float data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tests.builders.cli import assert_one_line_error
from tests.builders.converter_files import (
    add_operator,
    add_tensor,
    conv_flatten_softmax_program,
    converter_style_bytes,
    edit_model,
    tensor_name,
)
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.errors import UnsupportedOpError
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program

runner = CliRunner()


@pytest.fixture(scope="module")
def float_io_file() -> bytes:
    """The converter-style CONV_2D → shape chain → RESHAPE → FC → SOFTMAX with float32 input and output."""
    return converter_style_bytes(conv_flatten_softmax_program(np.random.default_rng(0)), float_io=True)


def _float_inputs(n: int) -> np.ndarray:
    # Wider than the input's int8 range on purpose: QUANTIZE saturates, as LiteRT's does.
    return np.random.default_rng(1).normal(0.0, 3.0, (n, 6, 5, 3)).astype(np.float32)


def test_edges_are_the_programs_quantize_and_dequantize(float_io_file: bytes) -> None:
    program = tflite_to_program(float_io_file, "f", "double")
    assert [op.kind for op in program.ops] == ["QUANTIZE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX",
                                               "DEQUANTIZE"]
    assert [program.tensor(t).dtype for t in (*program.inputs, *program.outputs)] == ["float32", "float32"]


def test_float_io_emulates_bit_exact_with_builtin_ref(float_io_file: bytes) -> None:
    program = tflite_to_program(float_io_file, "f", "double")
    x = _float_inputs(100)
    want = LiteRT(float_io_file, kernels="reference").run([x])[0]
    got = run_program(program, [x])[0]
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_emulate_cli_feeds_float_data_and_prints_top1(tmp_path: Path, float_io_file: bytes) -> None:
    model = tmp_path / "float_io.tflite"
    model.write_bytes(float_io_file)
    x = _float_inputs(40).astype(np.float64)  # any float dtype: fed as float32
    want = LiteRT(float_io_file, kernels="reference").run([x.astype(np.float32)])[0]
    labels = np.random.default_rng(2).integers(0, 10, 40)
    np.savez(tmp_path / "d.npz", x=x, y=labels)
    result = runner.invoke(app, ["emulate", str(model), "--data", str(tmp_path / "d.npz"), "--rounding", "double",
                                 "--save-outputs", str(tmp_path / "out.npz")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"top-1: {np.mean(want.argmax(1) == labels) * 100:.2f} % (n=40)" in result.stdout
    with np.load(tmp_path / "out.npz") as saved:
        np.testing.assert_array_equal(saved["output_0"], want)


def test_float_tensor_into_an_int8_op_is_named(tmp_path: Path, float_io_file: bytes) -> None:
    """Without its QUANTIZE, the float32 input would feed CONV_2D directly: one line naming op and tensor."""

    def drop_quantize(model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        quantize = subgraph.operators.pop(0)
        conv = subgraph.operators[0]
        conv.inputs = [int(quantize.inputs[0]), *conv.inputs[1:]]

    model = tmp_path / "bad.tflite"
    model.write_bytes(edit_model(float_io_file, drop_quantize))
    with pytest.raises(UnsupportedOpError, match="tensor 'input_0_float' is float32; the emulator runs this op on "
                                                 "int8 activations with quantization only"):
        tflite_to_program(model.read_bytes(), "bad", "double")
    np.savez(tmp_path / "d.npz", x=_float_inputs(2))
    assert_one_line_error(runner.invoke(app, ["emulate", str(model), "--data", str(tmp_path / "d.npz")],
                                        catch_exceptions=False), 4, "CONV_2D", "input_0_float")


def test_float_island_inside_reads_and_emulates_bit_exact_with_builtin_ref() -> None:
    """The same rule admits a float island between int8 ops: RESHAPE run in float32 between a DEQUANTIZE and
    a QUANTIZE of the same encoding, as the converter leaves an op it kept in float."""

    def float_reshape(model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        ops = subgraph.operators
        at = next(i for i, op in enumerate(ops)
                  if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.RESHAPE)
        reshape = ops[at]
        x, y = int(reshape.inputs[0]), int(reshape.outputs[0])
        x_float, y_float = (add_tensor(model, f"{tensor_name(subgraph.tensors[i])}_float",
                                       tuple(subgraph.tensors[i].shape), schema.TensorType.FLOAT32) for i in (x, y))
        reshape.inputs, reshape.outputs = [x_float, *reshape.inputs[1:]], [y_float]
        dequantize, quantize = (add_operator(model, code, [a], [b]) for code, a, b in (
            (schema.BuiltinOperator.DEQUANTIZE, x, x_float), (schema.BuiltinOperator.QUANTIZE, y_float, y)))
        subgraph.operators = [*ops[:at], dequantize, reshape, quantize, *ops[at + 1:]]

    data = edit_model(converter_style_bytes(conv_flatten_softmax_program(np.random.default_rng(0))), float_reshape)
    program = tflite_to_program(data, "island", "double")
    assert [op.kind for op in program.ops] == ["CONV_2D", "DEQUANTIZE", "RESHAPE", "QUANTIZE", "FULLY_CONNECTED",
                                               "SOFTMAX"]
    x = np.random.default_rng(3).integers(-128, 128, (100, 6, 5, 3)).astype(np.int8)
    np.testing.assert_array_equal(run_program(program, [x])[0], LiteRT(data, kernels="reference").run([x])[0])

