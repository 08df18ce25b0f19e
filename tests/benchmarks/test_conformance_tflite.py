"""The .tflite conformance harness's per-file check on converter-style files written without TensorFlow:
a float-I/O file checked against BUILTIN_REF, and a file on which BUILTIN_REF aborts (a SOFTMAX with a tiny
input scale) checked again, in a child process, against LiteRT's default kernels with XNNPACK off."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tests.builders.compute import softmax_program
from tests.builders.converter_files import conv_flatten_softmax_program, converter_style_bytes

from benchmarks.conformance_tflite import TfliteRow, check_isolated, check_tflite, markdown_table, summary
from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import QTensor


def test_check_tflite_fills_a_row_for_a_float_io_converter_style_file(tmp_path: Path) -> None:
    path = tmp_path / "conv.tflite"
    path.write_bytes(converter_style_bytes(conv_flatten_softmax_program(np.random.default_rng(0)), float_io=True))
    row = check_tflite(path, TfliteRow("conv", "float"), (-1.0, 1.0))
    assert row.error is None, row.error
    assert (row.loads, row.litert_runs, row.reference, row.bitexact, row.max_diff) == (
        True, True, "BUILTIN_REF", True, 0.0)
    assert row.seconds is not None and row.peak_rss_mb is not None
    assert "| conv | float | yes | yes | BUILTIN_REF | yes | 0 |" in markdown_table([row])
    assert summary([row, TfliteRow("lstm", "int8", error="convert: Abort")], "2.x").startswith(
        "1 of 1 .tflite files emulate (100 %); 1 of 1 bit-exact with BUILTIN_REF (0 of them")


def test_a_builtin_ref_abort_is_checked_again_against_the_default_kernels(tmp_path: Path) -> None:
    program = softmax_program(np.random.default_rng(0), shape=(1, 12))
    program = program.replace(tensors={**program.tensors, "x": QTensor("x", (1, 12), "int8", QParams(1e-8, 0))})
    path = tmp_path / "tiny_softmax.tflite"
    path.write_bytes(program_to_tflite(program))
    row = check_isolated(path, TfliteRow("tiny_softmax", "int8"), (-1e-6, 1e-6), timeout_s=120)
    assert row.error is None, row.error
    assert row.reference == "default kernels, XNNPACK off (BUILTIN_REF aborts)"
    assert row.bitexact is True


def test_a_wide_softmax_where_builtin_ref_aborts_is_checked_in_two_parts(tmp_path: Path) -> None:
    """A 600-class classifier with uniform logits: BUILTIN_REF aborts in its SOFTMAX; the ops before it are
    checked against BUILTIN_REF, the SOFTMAX against the default kernels fed BUILTIN_REF's logits."""
    program = conv_flatten_softmax_program(np.random.default_rng(0), classes=600)
    fc = next(op for op in program.ops if op.kind == "FULLY_CONNECTED")
    zeroed = {name: QTensor(name, program.tensor(name).shape, program.tensor(name).dtype, program.tensor(name).qparams,
                            np.zeros(program.tensor(name).shape)) for name in fc.inputs[1:]}
    path = tmp_path / "wide.tflite"
    path.write_bytes(converter_style_bytes(program.replace(tensors={**program.tensors, **zeroed})))
    row = check_isolated(path, TfliteRow("wide", "int8"), (-1.0, 1.0), timeout_s=120)
    assert row.error is None, row.error
    assert row.reference == "BUILTIN_REF, from the wide SOFTMAX on default kernels, XNNPACK off (BUILTIN_REF aborts)"
    assert row.bitexact is True


def test_a_failure_is_one_line_in_the_row(tmp_path: Path) -> None:
    path = tmp_path / "broken.tflite"
    path.write_bytes(b"not a tflite file")
    row = check_tflite(path, TfliteRow("broken", "int8"), (-1.0, 1.0))
    assert row.loads is False and row.litert_runs is None
    assert row.error is not None and "\n" not in row.error and row.error.startswith("ModelLoadError: ")
