"""The float-.tflite benchmark's per-file check on a Keras-like file built without TensorFlow."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.keras_float_tflite import check
from tests.builders.float_tflite import FloatTFLiteBuilder, keras_like_cnn


def test_check_fills_every_field_of_a_deployed_row(tmp_path: Path) -> None:
    path = tmp_path / "keras.tflite"
    path.write_bytes(keras_like_cnn(np.random.default_rng(0), flatten=True))
    row = check(path, tmp_path)
    assert "error" not in row, row
    assert row["loads"] and row["deploys"] and row["litert_loads"] and row["bitexact"]
    assert row["reference"] == "BUILTIN_REF" and row["transposes"] == 0
    assert row["fp32_max_abs_diff"] < 1e-5 and np.isfinite(row["sqnr_db"])


def test_check_ends_a_failing_row_with_its_one_line_error(tmp_path: Path) -> None:
    b = FloatTFLiteBuilder(np.random.default_rng(0), "sqdiff")
    x = b.input((1, 4))
    path = tmp_path / "sqdiff.tflite"
    path.write_bytes(b.build([b.op("SQUARED_DIFFERENCE", [x, x], (1, 4))]))
    row = check(path, tmp_path)
    assert "loads" not in row and row["error"].startswith("unsupported op SQUARED_DIFFERENCE")
