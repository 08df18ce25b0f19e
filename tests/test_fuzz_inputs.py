"""Fuzz: random data files and random CLI options end in a documented exit code, never 70, never a traceback."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.errors import EXIT_CODES, InternalError
from tests.builders.robust import small_data, small_onnx

runner = CliRunner()
DOCUMENTED = {0, 2} | {code for cls, code in EXIT_CODES.items() if cls is not InternalError}
DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int64", "bool", "complex64", "<U3", "object"]


def _random_array(rng: np.random.Generator) -> np.ndarray:
    shape = (int(rng.integers(0, 40)), 3, 8, 8) if rng.random() < 0.5 else tuple(
        int(d) for d in rng.integers(0, 9, int(rng.integers(0, 5))))
    dtype = DTYPES[int(rng.integers(len(DTYPES)))]
    a = rng.normal(size=shape) * 10 ** rng.integers(0, 40)
    if dtype == "object":
        return np.array([{"k": 1}] * max(shape[:1] or (1,)), dtype=object)
    with np.errstate(all="ignore"):
        a = a.astype(dtype) if dtype != "<U3" else a.astype(str).astype(dtype)
    if a.size and a.dtype.kind == "f" and rng.random() < 0.4:
        a.flat[int(rng.integers(a.size))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))]
    return a


def _random_file(rng: np.random.Generator, folder: Path, i: int) -> Path:
    path = folder / f"f{i}.npz"
    kind = rng.random()
    if kind < 0.6:
        arrays = {"x" if rng.random() < 0.8 else "input": _random_array(rng)}
        if rng.random() < 0.6:
            n = len(arrays["x"]) if "x" in arrays and arrays["x"].ndim else int(rng.integers(0, 40))
            arrays["y"] = rng.integers(-3, 14, n if rng.random() < 0.8 else n + 1).astype(
                ["int64", "float32", "uint8"][int(rng.integers(3))])
        np.savez(path, allow_pickle=True, **arrays)
    elif kind < 0.75:
        small_data(folder, path.name, n=int(rng.integers(1, 20)))
        blob = path.read_bytes()
        path.write_bytes(blob[: int(rng.integers(0, len(blob)))])  # truncated
    elif kind < 0.85:
        path.write_bytes(rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes())
    elif kind < 0.93:
        path = folder / f"f{i}.npy"
        np.save(path, _random_array(rng), allow_pickle=True)
    else:
        path.write_bytes(pickle.dumps({"x": _random_array(rng)}))
    return path


def _check(result) -> None:
    assert result.exit_code in DOCUMENTED, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("deployed")
    result = runner.invoke(app, ["deploy", str(small_onnx(folder)), "--data", str(small_data(folder)),
                                 "--out", str(folder / "o")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "o" / "model.int8.tflite"


@pytest.mark.parametrize("seed", range(4))
def test_random_data_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, int8_tflite: Path) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(seed)
    model = small_onnx(tmp_path)
    for i in range(10):
        data = _random_file(rng, tmp_path, i)
        option = "--data" if rng.random() < 0.7 else "--calib"
        extra = ["--data", str(small_data(tmp_path))] if option == "--calib" else []
        _check(runner.invoke(app, ["deploy", str(model), option, str(data), *extra, "--out", f"o{i}"],
                             catch_exceptions=False))
        if rng.random() < 0.5:
            _check(runner.invoke(app, ["emulate", str(int8_tflite), "--data", str(data)], catch_exceptions=False))


OPTIONS = {
    "--range-method": ["minmax", "mse", "foo", "", "MSE"],
    "--weight-bits": ["8", "4", "3", "-1", "eight"],
    "--target": ["emulate", "phone", "adb:", "emulate:x", ":"],
    "--precision": ["w8a8", "w8a16", "w4a4", ""],
    "--calib-size": ["1", "0", "-5", "1e3", "x"],
    "--recipe-samples": ["0", "-1", "abc"],
    "--input-shape": ["1,3,8,8", "1,3,8", "a,b", "x=1,3,8,8", ";", "0,3,8,8"],
    "--override": ["Gemm=float", "Gemm=int7", "=float", "nothing=int8", "Conv=int16"],
    "--device": ["arm-cortex-a78-xnnpack", "arm-cortex", "missing.toml", "/proc", ""],
    "--out": ["o", "/proc/x", "small.onnx", "small.onnx/sub", ""],
}


@pytest.mark.parametrize("seed", range(2))
def test_random_deploy_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(100 + seed)
    model, data = small_onnx(tmp_path), small_data(tmp_path, y=np.zeros(32, int))
    for _ in range(8):
        args = ["deploy", str(model), "--data", str(data)]
        for name in rng.choice(list(OPTIONS), int(rng.integers(1, 4)), replace=False):
            args += [str(name), str(rng.choice(OPTIONS[str(name)]))]
        _check(runner.invoke(app, args, catch_exceptions=False))
