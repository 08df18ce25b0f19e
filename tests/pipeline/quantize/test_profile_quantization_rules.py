"""Every quantization rule of a profile is obeyed, or refused or reported by name, and the wider 16x8
coverage deploys end to end.

One ONNX model, Conv → Relu → ConvTranspose → Relu → MaxPool (asymmetric pads) → Concat with a constant →
ReduceMean over channels → Add of a constant → Sigmoid, is deployed to ``host`` and to variants of it
written here (one key changed each): asymmetric weights and float model inputs are refused with the key,
W4 needs a 4-bit kernel, symmetric activations give zero points 0 (except where TFLite fixes the
encoding, reported), ``strict_symmetric = false`` lets weights reach -128, a ``[ConvTranspose, Relu]``
supergroup leaves no requantization inside, ``--precision`` left unset takes the profile's default kernel,
and every int16 request kept int8 is listed with its reason. The w8a16 program is bit-exact with LiteRT.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgeopt.errors import ProfileError, UnsupportedOpError
from edgeopt.workflows.deploy import DeployResult, deploy
from edgeopt.pipeline.evaluate import quantize_input
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.onnx_models import model

HOST = resources.files("edgeopt.device_profiles") / "host.toml"
KERNELS = "supported_kernels = [{ activation = 8, param = 8 }, { activation = 16, param = 8 }]"


def _net() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), "b1": rng.normal(0, 0.1, 6).astype(np.float32),
        "wt": rng.normal(0, 0.3, (6, 4, 2, 2)).astype(np.float32), "bt": rng.normal(0, 0.1, 4).astype(np.float32),
        "c": rng.normal(0, 1, (1, 2, 8, 8)).astype(np.float32), "axes": np.array([1], np.int64),
        "k": np.array([0.25], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("ConvTranspose", ["r1", "wt", "bt"], ["t"], strides=[2, 2]),
        helper.make_node("Relu", ["t"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], strides=[2, 2]),
        helper.make_node("Concat", ["p", "c"], ["cat"], axis=1),
        helper.make_node("ReduceMean", ["cat", "axes"], ["m"], keepdims=1),
        helper.make_node("Add", ["m", "k"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["y"]),
    ]
    return model(nodes, inits, [1, 3, 16, 16], [1, 1, 8, 8])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rules")
    onnx.save(_net(), out / "m.onnx")
    np.savez(out / "d.npz", x=np.random.default_rng(1).normal(size=(24, 3, 16, 16)).astype(np.float32))
    return out / "m.onnx"


def _profile(tmp: Path, name: str, old: str, new: str) -> str:
    text = HOST.read_text()
    assert old in text
    (tmp / f"{name}.toml").write_text(text.replace(old, new))
    return str(tmp / f"{name}.toml")


def _deploy(model_path: Path, device: str, out: Path, **kwargs) -> DeployResult:
    return deploy(str(model_path), device, data=model_path.parent / "d.npz", out=out, **kwargs)


def _ops(result: DeployResult) -> list[str]:
    return [op.kind for op in result.program.ops]


@pytest.fixture(scope="module")
def w8a16(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DeployResult:
    return _deploy(model_path, "host", tmp_path_factory.mktemp("w8a16"), precision="w8a16")


def test_w8a16_runs_the_new_16x8_ops_and_is_bit_exact(w8a16: DeployResult, model_path: Path) -> None:
    program = w8a16.program
    by_dtype = w8a16.report["precision"]["ops_by_dtype"]
    for kind in ("MAX_POOL_2D", "PADV2", "CONCATENATION", "MEAN", "ADD", "RELU"):
        assert by_dtype[kind] == {"int16": 1}, (kind, by_dtype)
    x = quantize_input(program, np.load(model_path.parent / "d.npz")["x"])
    tflite = (w8a16.out_dir / "model.int8.tflite").read_bytes()
    for got, want in zip(LiteRT(tflite, kernels="reference").run([x]), run_program(program.replace(rounding="double"),
                                                                                   [x]), strict=True):
        np.testing.assert_array_equal(got, want)


def test_int16_requests_kept_int8_are_listed_with_the_reason(w8a16: DeployResult, model_path: Path,
                                                              tmp_path: Path) -> None:
    section = w8a16.report["precision"]
    assert [(f["op"], f["by_profile"]) for f in section["int8_fallbacks"]] == [("ConvTranspose", False),
                                                                               ("Sigmoid", False)]
    assert "no 16x8 kernel for LOGISTIC" in section["int8_fallbacks"][1]["reason"]
    assert section["summary"].endswith("2 nodes kept int8 (0 by profile rules, 2 without a 16x8 kernel)")
    tpu = _deploy(model_path, "google-coral-edgetpu", tmp_path, precision="w8a16").report["precision"]
    assert tpu["int16_ops"] == 0 and len(tpu["int8_fallbacks"]) == 8  # Conv+Relu fused: 8 nodes
    assert sum(f["by_profile"] for f in tpu["int8_fallbacks"]) == 6
    assert "google-coral-edgetpu's quantization.defaults.supported_kernels have no 16-bit activation kernel" \
        in tpu["int8_fallbacks"][0]["reason"]


def test_cli_prints_the_precision_summary_and_fallbacks(model_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeopt.cli import app

    result = CliRunner().invoke(app, ["deploy", str(model_path), "--device", "host", "--precision", "w8a16",
                                      "--data", str(model_path.parent / "d.npz"), "--out", str(tmp_path)],
                                catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "precision mixed (--precision w8a16): int16:" in result.output  # ConvTranspose, Sigmoid stay int8
    assert "asked for int16, kept int8" in result.output and "no 16x8 kernel for LOGISTIC" in result.output


def test_precision_unset_takes_the_profile_default_kernel(model_path: Path, tmp_path: Path) -> None:
    default = _deploy(model_path, "host", tmp_path / "a").report["precision"]
    assert (default["mode"], default["source"], default["int16_ops"]) == ("w8a8", "profile default", 0)
    first16 = _profile(tmp_path, "a16", KERNELS,
                       "supported_kernels = [{ activation = 16, param = 8 }, { activation = 8, param = 8 }]")
    section = _deploy(model_path, first16, tmp_path / "b").report["precision"]
    assert (section["mode"], section["requested"], section["source"]) == ("mixed", "w8a16", "profile default")
    assert section["int16_ops"] >= 8


def test_asymmetric_weights_and_float_io_are_refused_by_key(model_path: Path, tmp_path: Path) -> None:
    asym = _profile(tmp_path, "asym", "[quantization.defaults.params]\nis_quantized = true\nis_symmetric = true",
                    "[quantization.defaults.params]\nis_quantized = true\nis_symmetric = false")
    with pytest.raises(ProfileError, match=r"quantization\.defaults\.params\.is_symmetric = false"):
        _deploy(model_path, asym, tmp_path / "out")
    float_in = _profile(tmp_path, "float_in", "[quantization.model_input]\nis_input_quantized = true",
                        "[quantization.model_input]\nis_input_quantized = false")
    with pytest.raises(ProfileError, match=r"model_input\.is_input_quantized = false"):
        _deploy(model_path, float_in, tmp_path / "out")


def test_w4_weights_need_a_4_bit_kernel(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOpError, match=r"4-bit weights requested, but host's "
                                                  r"quantization\.defaults\.supported_kernels allow \[8\]"):
        _deploy(model_path, "host", tmp_path, weight_bits=4)
    w4 = _profile(tmp_path, "w4", KERNELS, KERNELS[:-1] + ", { activation = 8, param = 4 }]")
    result = _deploy(model_path, w4, tmp_path / "w4", weight_bits=4)
    conv = next(op for op in result.program.ops if op.kind == "CONV_2D")
    weights = result.program.tensor(conv.inputs[1]).data
    assert np.abs(weights).max() <= 7 and len(np.unique(weights)) <= 15


def test_symmetric_activations_have_zero_point_0_or_are_reported(model_path: Path, tmp_path: Path) -> None:
    sym = _profile(tmp_path, "sym", "[quantization.defaults.ops]\nis_output_quantized = true\nis_symmetric = false",
                   "[quantization.defaults.ops]\nis_output_quantized = true\nis_symmetric = true")
    result = _deploy(model_path, sym, tmp_path / "out")
    program = result.program
    for op in program.ops:
        if op.kind in ("CONV_2D", "TRANSPOSE_CONV", "ADD", "MEAN"):
            assert int(program.tensor(op.outputs[0]).qparams.zero_point[0]) == 0, op.kind
    exceptions = result.report["precision"]["rule_exceptions"]
    assert [(e["op"], e["rule"]) for e in exceptions] == [("Sigmoid", "quantization.defaults.ops.is_symmetric")]
    asym = _deploy(model_path, "host", tmp_path / "asym").program
    assert any(int(t.qparams.zero_point[0]) != 0 for t in asym.tensors.values() if t.qparams is not None
               and not t.is_constant and t.dtype == "int8")


def test_strict_symmetric_false_lets_weights_reach_minus_128(model_path: Path, tmp_path: Path) -> None:
    def lowest(device: str, out: Path) -> int:
        program = _deploy(model_path, device, out).program
        return min(int(program.tensor(op.inputs[1]).data.min()) for op in program.ops
                   if op.kind in ("CONV_2D", "TRANSPOSE_CONV"))

    loose = _profile(tmp_path, "loose", "strict_symmetric = true", "strict_symmetric = false")
    assert lowest("host", tmp_path / "strict") == -127
    assert lowest(loose, tmp_path / "loose") == -128


def test_a_supergroup_leaves_no_requantization_inside(model_path: Path, tmp_path: Path) -> None:
    grouped = _profile(tmp_path, "grouped", "[[quantization.supergroups]]\nop_list = [\"Conv\", \"Relu\"]",
                       "[[quantization.supergroups]]\nop_list = [\"ConvTranspose\", \"Relu\"]\n\n"
                       "[[quantization.supergroups]]\nop_list = [\"Conv\", \"Relu\"]")

    def relu_encodings(device: str, out: Path) -> tuple:
        program = _deploy(model_path, device, out).program
        relu = next(op for op in program.ops if op.kind == "RELU")
        return program.tensor(relu.inputs[0]).qparams, program.tensor(relu.outputs[0]).qparams

    before, after = relu_encodings("host", tmp_path / "a")
    assert not before.same_as(after)  # host lists no [ConvTranspose, Relu]: a quantizer between them
    before, after = relu_encodings(grouped, tmp_path / "b")
    assert before.same_as(after)
