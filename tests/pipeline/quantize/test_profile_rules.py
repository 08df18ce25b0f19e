"""The pipeline obeys a device profile's quantization rules, and int16 ops are priced or refused clearly.

One small ONNX model (Conv → BatchNorm → Clip → GlobalAveragePool → Flatten → Gemm) is deployed to the
shipped profiles: the Edge TPU's ``per_channel_quantization = false`` gives one weight scale per tensor
in the .tflite, the Cortex-A78's per-channel scales, the Ethos-U55's per-tensor Gemm rule a per-tensor
FULLY_CONNECTED beside a per-channel CONV_2D; ``--precision w8a16`` gives int16 activations exactly on
the op types whose ``supported_kernels`` list a 16-bit activation kernel; w8a16 deploys to the HTP and
the Ethos-U55 price their int16 ops on the NPU; the Edge TPU sends an int16 op to its CPU with a reason.
Every .tflite written is bit-exact with the executor under LiteRT's reference kernels.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgeopt.device_profiles import load_profile
from edgeopt.errors import UnsupportedOpError
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.workflows.deploy import DeployResult, deploy
from edgeopt.pipeline.evaluate import quantize_input
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.place import place
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.precision import apply_precision, precision_plan
from edgeopt.runtimes.cost import estimate
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.onnx_models import conv_bn_relu6

A78, HTP, TPU, VELA = "arm-cortex-a78-xnnpack", "snapdragon-8-gen-2-htp", "google-coral-edgetpu", "arm-ethos-u55-vela"
COUT = 8


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("profile_rules")
    onnx.save(conv_bn_relu6(np.random.default_rng(0), cout=COUT, batch=1), out / "m.onnx")
    np.savez(out / "d.npz", x=np.random.default_rng(1).normal(size=(40, 3, 8, 8)).astype(np.float32))
    return out / "m.onnx"


def _deploy(model_path: Path, device: str, out: Path, **kwargs) -> DeployResult:
    return deploy(str(model_path), device, data=model_path.parent / "d.npz", out=out, **kwargs)


def _weight_scales(tflite: bytes) -> dict[str, int]:
    """Op kind → number of scales of its weight (second input) in the .tflite."""
    interpreter = Interpreter(model_content=tflite)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return {op["op_name"]: len(tensors[op["inputs"][1]]["quantization_parameters"]["scales"])
            for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")}


def _assert_bitexact(result: DeployResult) -> None:
    program = result.program.replace(rounding="double")
    x = quantize_input(program, np.random.default_rng(2).normal(size=(20, 3, 8, 8)).astype(np.float32))
    tflite = (result.out_dir / "model.int8.tflite").read_bytes()  # the file does not carry the rounding
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([x])[0], run_program(program, [x])[0])


def _ops_by_dtype(result: DeployResult) -> dict[str, dict[str, int]]:
    return result.report["precision"]["ops_by_dtype"]


def test_edge_tpu_gets_per_tensor_weights_the_a78_per_channel(model_path: Path, tmp_path: Path) -> None:
    tpu = _deploy(model_path, TPU, tmp_path / "tpu")
    a78 = _deploy(model_path, A78, tmp_path / "a78")
    vela = _deploy(model_path, VELA, tmp_path / "vela")
    assert _weight_scales((tpu.out_dir / "model.int8.tflite").read_bytes()) == {"CONV_2D": 1, "FULLY_CONNECTED": 1}
    assert _weight_scales((a78.out_dir / "model.int8.tflite").read_bytes()) == {"CONV_2D": COUT, "FULLY_CONNECTED": 10}
    # Vela: "Per-axis quantization is only supported for ... CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV".
    assert _weight_scales((vela.out_dir / "model.int8.tflite").read_bytes()) == {"CONV_2D": COUT, "FULLY_CONNECTED": 1}
    for result in (tpu, a78, vela):
        _assert_bitexact(result)
    # Per-tensor weights cost little on this model: the int8 outputs still agree with the float model.
    assert tpu.report["accuracy"]["int8"] >= 90.0


def test_w8a16_is_int16_exactly_where_the_profile_allows_it(model_path: Path, tmp_path: Path) -> None:
    text = resources.files("edgeopt.device_profiles").joinpath(HTP + ".toml").read_text()
    # The HTP's rules with the Gemm restricted to w8a8: int16 on the Conv (and the movement ops), not the Gemm.
    profile = tmp_path / "htp-gemm-w8a8.toml"
    profile.write_text(text.replace('name = "snapdragon-8-gen-2-htp"', 'name = "htp-gemm-w8a8"')
                       + '\n[quantization.op_type.Gemm]\nsupported_kernels = [{ activation = 8, param = 8 }]\n')
    result = _deploy(model_path, str(profile), tmp_path / "mixed", precision="w8a16")
    ops = _ops_by_dtype(result)
    assert ops["CONV_2D"] == {"int16": 1} and ops["FULLY_CONNECTED"] == {"int8": 1}
    _assert_bitexact(result)
    with pytest.raises(UnsupportedOpError, match=r"Gemm.*fc.*quantization\.op_type\.Gemm\.supported_kernels"):
        _deploy(model_path, str(profile), tmp_path / "refused", precision="w8a16", precision_overrides={"fc": "int16"})
    # The Edge TPU lists no 16-bit kernel at all: w8a16 there is w8a8.
    tpu = _deploy(model_path, TPU, tmp_path / "tpu", precision="w8a16")
    assert tpu.report["precision"]["int16_ops"] == 0


@pytest.mark.parametrize("device", [HTP, VELA])
def test_w8a16_deploy_prices_int16_on_the_npu(model_path: Path, tmp_path: Path, device: str) -> None:
    result = _deploy(model_path, device, tmp_path / device, precision="w8a16")
    rows = result.report["placement"]["ops"]
    int16_rows = [r for r in rows if r["dtype"] == "int16"]
    assert {r["op"] for r in int16_rows} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert all(r["unit"] == "npu" and r["time_us"] > 0 and r["energy_uj"] > 0 for r in int16_rows)
    assert result.report["latency_ms"]["int8"] > 0
    _assert_bitexact(result)


def test_edge_tpu_sends_int16_to_the_cpu_with_a_reason(model_path: Path) -> None:
    graph = optimize(load(str(model_path)).graph)
    x = np.random.default_rng(1).normal(size=(40, 3, 8, 8)).astype(np.float32)
    stats = calibrate(graph, x)
    program = lower(apply_precision(quantize_minmax(graph, stats), stats, precision_plan(graph, "w8a16")))
    tpu = load_profile(TPU)
    placement = place(program, tpu)
    conv = next(p for p in placement.ops if p.kind == "CONV_2D")
    assert (conv.unit, conv.dtype) == ("cpu", "int16")
    assert 'CONV_2D: dtype int16 not supported on Edge TPU (rule compute_units.npu.defaults.dtypes = ["int8"])' \
        in conv.reason
    assert estimate(program, tpu, placement).latency_ms > 0  # priced on the CPU, no ProfileError
