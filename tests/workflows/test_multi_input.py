"""Models with several inputs, integer inputs and embeddings (issue 12): a tiny text model with token ids
and an attention mask deploys, its .tflite runs in LiteRT's reference kernels element for element like
the executor, and the command line takes shapes and data by input name, refusing bad ones in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.ir import TensorInfo
from edgeopt.pipeline.evaluate import dequantize_output, program_inputs
from edgeopt.pipeline.frontend.data import load_npz
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.workflows.deploy import deploy
from tests.builders.cli import assert_one_line_error
from tests.builders.token_models import INPUTS, SEQ, VOCAB, export_bool_mask_model, export_token_model, token_data

runner = CliRunner()
DEVICE = "arm-cortex-a78-xnnpack"
MODEL_INPUTS = [TensorInfo(name, (1, SEQ), "int64") for name in INPUTS]


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def token_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tokens")
    model, data = folder / "tokens.onnx", folder / "tokens.npz"
    onnx.save(export_token_model(), str(model))
    np.savez(data, **token_data(1, 24))
    return model, data


@pytest.fixture(scope="module")
def deployed(token_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    model, data = token_files
    return deploy(str(model), DEVICE, data=str(data), out=str(tmp_path_factory.mktemp("out")))


def test_token_model_tflite_equals_litert_reference_kernels(deployed, token_files: tuple[Path, Path]):
    program = deployed.program.replace(rounding="double")
    assert [program.tensor(name).dtype for name in program.inputs] == ["int32", "int32"]
    assert all(program.tensor(name).qparams is None for name in program.inputs)
    kinds = [op.kind for op in program.ops]
    assert "GATHER" in kinds and "CAST" in kinds
    x, _ = load_npz(token_files[1], MODEL_INPUTS, labels=False)
    inputs = program_inputs(program, x)
    expected = LiteRT(deployed.out_dir / "model.int8.tflite", kernels="reference").run(inputs)
    got = run_program(program, inputs)
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype == np.int8 and np.array_equal(g, e)


def test_embedding_table_is_int8_and_its_rows_keep_its_encoding(deployed):
    program = deployed.program
    lookup = next(op for op in program.ops if op.kind == "GATHER" and program.tensor(op.inputs[0]).is_constant)
    table, out = program.tensor(lookup.inputs[0]), program.tensor(lookup.outputs[0])
    assert table.dtype == "int8" and table.shape == (VOCAB, 16) and table.qparams.axis is None
    assert out.qparams.same_as(table.qparams)
    assert program.tensor(lookup.inputs[1]).dtype == "int32"


def test_masked_positions_get_exactly_zero_probability(deployed, token_files: tuple[Path, Path]):
    """The additive mask (finfo.min) runs in float: masked scores give probability 0, the others a softmax
    that still follows the fp32 model (an int8 mask would have flattened every score to one value)."""
    program = deployed.program
    assert {"/Add", "/Softmax", "/Mul_1"} <= set(deployed.report["float_nodes"])
    assert "float-only nodes" in deployed.report["precision"]["source"]
    x, _ = load_npz(token_files[1], MODEL_INPUTS, labels=False)
    probs = dequantize_output(program, run_program(program, program_inputs(program, x))[0])
    masked = x["attention_mask"][:, None, :].repeat(probs.shape[1], axis=1) == 0
    assert masked.any() and np.all(probs[masked] == 0)
    session = ort.InferenceSession(str(token_files[0]), providers=["CPUExecutionProvider"])
    fp32 = np.concatenate([session.run(["probs"], {k: x[k][i:i + 1] for k in INPUTS})[0] for i in range(len(x))])
    assert np.abs(probs - fp32).max() < 0.05
    assert deployed.report["accuracy"]["metric"] == "top1_agreement" and deployed.report["accuracy"]["n"] == 24


def test_qdq_onnx_keeps_integer_inputs_and_runs(deployed, token_files: tuple[Path, Path]):
    qdq = onnx.load(str(deployed.out_dir / "model.int8.onnx"))
    types = {i.name: i.type.tensor_type.elem_type for i in qdq.graph.input}
    assert types == {name: onnx.TensorProto.INT64 for name in INPUTS}
    data = token_data(2, 1)
    session = ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"])
    probs, first = session.run(None, data)
    assert probs.shape == (1, 8, SEQ) and first.shape == (1, 16)


def test_cli_shapes_and_data_by_input_name(token_files: tuple[Path, Path], tmp_path: Path):
    model, data = token_files
    out = tmp_path / "out"
    result = _invoke("deploy", str(model), "--data", str(data), "--out", str(out),
                     "--input-shape", f"input_ids=1,{SEQ}", "--input-shape", f"attention_mask=1,{SEQ}")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["accuracy"]["n"] == 24
    emulated = _invoke("emulate", str(out / "model.int8.tflite"), "--data", str(data))
    assert emulated.exit_code == 0 and "24 samples" in emulated.stdout, emulated.output
    joined = _invoke("deploy", str(model), "--data", str(data), "--calib", str(data), "--out", str(tmp_path / "j"),
                     "--input-shape", f"input_ids=1,{SEQ};attention_mask=1,{SEQ}")
    assert joined.exit_code == 0, joined.output
    assert json.loads((tmp_path / "j" / "report.json").read_text())["calibration"]["n"] == 24


def test_cli_refuses_shapes_naming_no_input(token_files: tuple[Path, Path], tmp_path: Path):
    model, data = token_files
    out = tmp_path / "o"
    assert_one_line_error(_invoke("deploy", str(model), "--data", str(data), "--out", str(out),
                                  "--input-shape", "tokens=1,12"), 3, "'tokens'", "input_ids, attention_mask")
    assert_one_line_error(_invoke("deploy", str(model), "--data", str(data), "--out", str(out),
                                  "--input-shape", "1,12"), 3, "2 inputs", "NAME=SHAPE")
    assert not out.exists()


def test_cli_refuses_data_that_does_not_fit_the_inputs(token_files: tuple[Path, Path], tmp_path: Path):
    model, _ = token_files
    good = token_data(3, 4)
    cases = {
        "missing.npz": ({"input_ids": good["input_ids"]}, "missing attention_mask"),
        "extra.npz": ({**good, "token_type_ids": good["input_ids"]}, "unexpected token_type_ids"),
        "shape.npz": ({**good, "attention_mask": good["attention_mask"][:, :5]}, "attention_mask has shape (4, 5)"),
        "dtype.npz": ({**good, "input_ids": good["input_ids"].astype(np.float32)}, "input_ids is float32"),
        "single_x.npz": ({"x": good["input_ids"]}, "missing input_ids"),
    }
    for name, (arrays, needle) in cases.items():
        np.savez(tmp_path / name, **arrays)
        assert_one_line_error(_invoke("deploy", str(model), "--data", str(tmp_path / name), "--out",
                                      str(tmp_path / "o")), 5, needle)
    assert not (tmp_path / "o").exists()


def test_out_of_vocabulary_token_fails_like_tflite(deployed):
    program = deployed.program
    ids = np.full((1, SEQ), VOCAB, np.int32)
    with pytest.raises(Exception, match=f"index {VOCAB} is outside"):
        run_program(program, [ids, np.ones((1, SEQ), np.int32)])


def test_boolean_mask_path_equals_litert_reference_kernels(tmp_path: Path):
    """Cast to bool, And with a constant, Expand, Where(mask, 0, finfo.min) added to the scores: the boolean
    ops stay boolean (CAST, LOGICAL_AND, BROADCAST_TO), the Where, Add and Softmax run in float, and the
    .tflite runs in LiteRT's reference kernels as in the executor."""
    model, data = tmp_path / "bool_mask.onnx", tmp_path / "bool_mask.npz"
    onnx.save(export_bool_mask_model(), str(model))
    np.savez(data, **token_data(4, 16))
    result = deploy(str(model), DEVICE, data=str(data), out=str(tmp_path / "out"))
    program = result.program.replace(rounding="double")
    dtypes = {op.kind: program.tensor(op.outputs[0]).dtype for op in program.ops}
    assert dtypes["LOGICAL_AND"] == dtypes["BROADCAST_TO"] == "bool" and dtypes["SELECT_V2"] == "float32"
    assert {"/Where_1", "/Add", "/Softmax"} <= set(result.report["float_nodes"])
    x, _ = load_npz(data, MODEL_INPUTS, labels=False)
    inputs = program_inputs(program, x)
    expected = LiteRT(result.out_dir / "model.int8.tflite", kernels="reference").run(inputs)
    got = run_program(program, inputs)
    assert np.array_equal(got[0], expected[0])
    probs = dequantize_output(program, got[0])
    assert np.all(probs[np.broadcast_to(x["attention_mask"][:, None, :] == 0, probs.shape)] == 0)
