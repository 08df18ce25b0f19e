"""Bad input a user gives, through the CLI: one line each, the documented exit code, before any work."""
from __future__ import annotations

import json
import pickle
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import edgeopt
from edgeopt.cli import app
from tests.builders.cli import assert_one_line_error
from tests.builders.robust import depthwise_collapse_onnx, small_data, small_onnx

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _usage_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output


@pytest.mark.parametrize(("args", "needle"), [
    (["--range-method", "foo"], "--range-method"),
    (["--weight-bits", "3"], "--weight-bits"),
    (["--target", "phone"], "unknown target 'phone'"),
    (["--precision", "w8a32"], "--precision"),
    (["--calib-size", "0"], "--calib-size"),
    (["--rang-method", "mse"], "--range-method"),  # "No such option: --rang-method (Possible options: ...)"
])
def test_bad_option_values_are_usage_errors_before_any_work(folder: Path, args: list[str], needle: str) -> None:
    # The model does not exist: an option checked before loading it fails first, with typer's exit 2.
    _usage_error(_invoke("deploy", "missing.onnx", *args), needle)
    assert not (folder / "edgeopt-out").exists()


def test_unknown_override_name_is_a_usage_error_with_a_suggestion(folder: Path) -> None:
    result = _invoke("deploy", str(small_onnx(folder)), "--data", str(small_data(folder)),
                     "--override", "Gem=int16", "--out", "o")
    assert_one_line_error(result, 2, "'Gem' names no node or op type", "did you mean Gemm")
    assert not (folder / "o").exists()


def test_profile_typo_suggests_the_name(folder: Path) -> None:
    result = _invoke("deploy", "missing.onnx", "--device", "arm-cortex-a78-xnnpak")
    assert_one_line_error(result, 6, "unknown device profile 'arm-cortex-a78-xnnpak'",
                          "did you mean 'arm-cortex-a78-xnnpack'?")


@pytest.mark.parametrize("where", ["file", "under_file", "package", "proc", "foreign"])
def test_a_bad_output_folder_is_refused_before_the_model_is_loaded(folder: Path, where: str) -> None:
    (folder / "a_file").write_text("x")
    (folder / "notes").mkdir()
    (folder / "notes" / "mine.txt").write_text("keep me")
    out = {"file": folder / "a_file", "under_file": folder / "a_file" / "out",
           "package": Path(edgeopt.__file__).parent / "examples" / "out", "proc": Path("/proc/edgeopt-out"),
           "foreign": folder / "notes"}[where]
    # A missing model would be exit 3: exit 9 shows that the folder was checked first.
    result = _invoke("deploy", "missing.onnx", "--out", str(out))
    assert_one_line_error(result, 9, f"'{out}'")
    assert (folder / "notes" / "mine.txt").read_text() == "keep me"
    assert not (Path(edgeopt.__file__).parent / "examples" / "out").exists()


def test_convert_out_is_a_folder_and_emulate_save_outputs_under_a_file(folder: Path) -> None:
    (folder / "a_file").write_text("x")
    assert_one_line_error(_invoke("convert", "missing.onnx", "--out", str(folder)), 9, "is a folder")
    result = _invoke("emulate", "missing.tflite", "--data", "d.npz", "--save-outputs", str(folder / "a_file" / "o.npz"))
    assert_one_line_error(result, 9, "which is a file")


def _bad_data(folder: Path, kind: str) -> Path:
    path = folder / "bad.npz"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3, 8, 8)).astype(np.float32)
    if kind == "npy":  # a .npy of pickled objects (a .npy of numbers is a data source)
        np.save(folder / "x.npy", np.array([{"a": 1}] * 8, dtype=object), allow_pickle=True)
        return folder / "x.npy"
    if kind == "text":
        path.write_text("x,y\n1,2\n")
    elif kind == "pickled":
        np.savez(path, x=np.array([{"a": 1}] * 8, dtype=object), allow_pickle=True)
    elif kind == "pickle_file":
        path.write_bytes(pickle.dumps({"x": x}))
    elif kind == "truncated":
        small_data(folder, "full.npz")
        path.write_bytes((folder / "full.npz").read_bytes()[:300])
    elif kind == "empty_file":
        path.write_bytes(b"")
    elif kind in ("nan", "inf"):
        x[3, 1, 2, 2] = np.nan if kind == "nan" else np.inf
        np.savez(path, x=x)
    elif kind == "empty":
        np.savez(path, x=x[:0])
    elif kind == "complex":
        np.savez(path, x=x.astype(np.complex64))
    elif kind == "shape":
        np.savez(path, x=x[:, :2])
    elif kind == "labels":
        np.savez(path, x=x, y=np.array([0, 1, 2, 3, 4, 5, 6, 12]))
    elif kind == "negative_labels":
        np.savez(path, x=x, y=np.array([0, 1, 2, 3, 4, 5, 6, -1]))
    return path


@pytest.mark.parametrize(("kind", "needle"), [
    ("npy", "pickled or corrupt"), ("text", "is not an .npz (zip) file"), ("pickled", "pickled (object) arrays"),
    ("pickle_file", "is not an .npz (zip) file"), ("truncated", "corrupt or truncated"), ("empty_file", "empty"),
    ("nan", "NaN/Inf"), ("inf", "NaN/Inf"), ("empty", "non-empty"), ("complex", "real numbers"),
    ("shape", "has shape (8, 2, 8, 8)"), ("labels", "labels y range over 0..12"),
    ("negative_labels", "labels y range over -1..6"),
])
def test_bad_data_files_are_one_line_data_errors(folder: Path, kind: str, needle: str) -> None:
    result = _invoke("deploy", str(small_onnx(folder)), "--data", str(_bad_data(folder, kind)), "--out", "o")
    assert_one_line_error(result, 5, needle)
    assert not (folder / "o").exists()


def test_nan_in_calib_is_refused(folder: Path) -> None:
    result = _invoke("deploy", str(small_onnx(folder)), "--data", str(small_data(folder)),
                     "--calib", str(_bad_data(folder, "nan")), "--out", "o")
    assert_one_line_error(result, 5, "bad.npz", "NaN/Inf")


def test_a_rerun_leaves_no_file_of_the_earlier_run(folder: Path) -> None:
    onnx_path, data = small_onnx(folder), small_data(folder)
    assert _invoke("deploy", str(onnx_path), "--data", str(data), "--out", "o", "--sensitivity").exit_code == 0
    assert (folder / "o" / "sensitivity.svg").is_file()
    first = json.loads((folder / "o" / "report.json").read_text())
    assert _invoke("deploy", str(onnx_path), "--data", str(data), "--out", "o").exit_code == 0
    second = json.loads((folder / "o" / "report.json").read_text())
    assert sorted(p.name for p in (folder / "o").iterdir()) == sorted(Path(p).name for p in second["artifacts"].values())
    assert "sensitivity.svg" not in {Path(p).name for p in second["artifacts"].values()}
    assert first["sensitivity"] and not second.get("sensitivity")
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_emulate_takes_deploys_own_data_and_says_it_transposes(folder: Path) -> None:
    onnx_path, data = small_onnx(folder), small_data(folder)
    assert _invoke("deploy", str(onnx_path), "--data", str(data), "--out", "o").exit_code == 0
    result = _invoke("emulate", "o/model.int8.tflite", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert "transposed to NHWC (32, 8, 8, 3)" in result.stderr and "top-1" in result.stdout
    nan = _invoke("emulate", "o/model.int8.tflite", "--data", str(_bad_data(folder, "nan")))
    assert_one_line_error(nan, 5, "NaN/Inf")
    labels = _invoke("emulate", "o/model.int8.tflite", "--data", str(_bad_data(folder, "labels")))
    assert_one_line_error(labels, 5, "labels y range over 0..12", "10 classes")


def test_a_collapse_is_loud_and_names_the_likely_cause(folder: Path) -> None:
    x = np.random.default_rng(1).normal(size=(32, 4, 8, 8)).astype(np.float32)
    np.savez(folder / "dw.npz", x=x)
    args = ["deploy", str(depthwise_collapse_onnx(folder)), "--data", "dw.npz"]
    collapsed = _invoke(*args, "--device", "google-coral-edgetpu", "--out", "edgetpu")
    assert collapsed.exit_code == 0, collapsed.output
    warning = [line for line in collapsed.stderr.splitlines() if line.startswith("warning: int8 accuracy collapsed")]
    assert len(warning) == 1 and "per-tensor weights on a depthwise model" in warning[0] and "try" in warning[0]
    report = json.loads((folder / "edgetpu" / "report.json").read_text())
    assert report["accuracy"]["int8"] < 50 and "per-tensor" in report["accuracy"]["collapse"]
    fine = _invoke(*args, "--out", "xnnpack")  # per-channel weights: no collapse, no warning
    assert fine.exit_code == 0 and "collapsed" not in fine.output
    assert json.loads((folder / "xnnpack" / "report.json").read_text())["accuracy"]["collapse"] is None


def test_a_missed_max_drop_budget_exits_10_after_writing_everything(folder: Path) -> None:
    # Without labels the metric is agreement with fp32 (100 %): a negative budget cannot be met.
    result = _invoke("deploy", str(small_onnx(folder)), "--data", str(small_data(folder, y=np.zeros(32, int))),
                     "--out", "o", "--max-drop", "-1", "--recipe-samples", "0")
    assert result.exit_code == 10, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no recipe step met --max-drop -1.0" in errors[0]
    assert json.loads((folder / "o" / "report.json").read_text())["recipe_budget"]["met"] is False


def test_calibrate_host_and_compress_check_their_output_first(folder: Path) -> None:
    (folder / "a_file").write_text("x")
    result = _invoke("profiles", "calibrate", "host", "--out", str(folder / "a_file" / "host.toml"))
    assert_one_line_error(result, 9, "which is a file")
    result = _invoke("compress", "missing.onnx", "--target-macs", "0.5", "--out", str(folder / "a_file"))
    assert_one_line_error(result, 9, "is a file, not a folder")


def test_devices_on_a_port_that_does_not_speak_adb() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_http() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 3)

    threading.Thread(target=answer_http, daemon=True).start()
    result = runner.invoke(app, ["devices", f"127.0.0.1:{port}"], catch_exceptions=False)
    assert_one_line_error(result, 7, f"127.0.0.1:{port} does not speak ADB")


@pytest.mark.parametrize("kind", ["npy", "text", "pickled", "truncated", "nan", "inf"])
def test_a_data_file_of_the_wrong_format_fails_before_the_model_is_loaded(folder: Path, kind: str) -> None:
    # A missing model would be exit 3: exit 5 shows that the data file was checked first.
    result = _invoke("deploy", "missing.onnx", "--data", str(_bad_data(folder, kind)))
    assert_one_line_error(result, 5, "bad.npz" if kind != "npy" else "x.npy")
