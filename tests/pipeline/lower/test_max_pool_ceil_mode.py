"""MaxPool with ``ceil_mode=1`` (SqueezeNet 1.0, GoogLeNet): PADV2 with the encoding's lowest value on the
bottom/right, then MAX_POOL_2D VALID.

Torch models with ``nn.MaxPool2d(..., ceil_mode=True)`` on sizes where ceil mode adds a window (and one
where ONNX and PyTorch drop a window that would start in the padding) are exported by the TorchScript
exporter and by dynamo; the loaded Graph's float outputs equal torch's, and ``deploy`` to the Cortex-A78
profile writes a .tflite that LiteRT's reference kernels run bit-exactly like the executor, in int8,
w8a16 and with the pool kept in a float island. QuantSim simulates the pool as the program runs it.
A window that would start in the end padding (5x5 input, kernel 2, stride 2, padding 1) is dropped by
PyTorch and ONNX Runtime but counted by ONNX's shape inference (onnx 1.23); the lowering refuses such a
graph by name rather than deploy a shape ONNX Runtime would not produce.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.evaluate import quantize_input, run_float
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.range_setting import set_ranges
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.workflows.deploy import deploy
from tests.builders.quantsim import sim_and_executor
from tests.builders.torch_export import export, normal_data

A78 = "arm-cortex-a78-xnnpack"


class CeilPool(nn.Module):
    """A convolution (so the pool's input has negative values) then a ceil-mode max pool."""

    def __init__(self, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.pool = nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


# (size, kernel, stride, padding) → torch's output size; each differs from floor mode. The first two
# come out as TFLite's SAME (its padding is what ceil mode adds), the others need a PADV2.
CASES = {
    "8x8_k3s2": ((8, 3, 2, 0), 4),
    "7x7_k3s2p1": ((7, 3, 2, 1), 4),
    "8x8_k3s2p1": ((8, 3, 2, 1), 5),
    "6x6_k2s2p1": ((6, 2, 2, 1), 4),
}
PADDED = ["8x8_k3s2p1", "6x6_k2s2p1"]
EXPORTERS = ["torchscript", "dynamo"]


def _module(case: str) -> tuple[nn.Module, tuple[int, ...]]:
    (size, kernel, stride, padding), _ = CASES[case]
    torch.manual_seed(0)
    return CeilPool(kernel, stride, padding).eval(), (1, 3, size, size)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_float_graph_equals_torch_and_onnx_runtime(case: str, exporter: str) -> None:
    module, shape = _module(case)
    exported = export(module, shape, exporter)
    graph = onnx_to_graph(exported, case)
    pool = next(n for n in graph.nodes if n.op == "MaxPool")
    assert pool.attrs.get("ceil_mode") == 1
    x = normal_data(1, 4, shape)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert expected.shape[2:] == (CASES[case][1],) * 2
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    onnx_runtime = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(onnx_runtime, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_float(graph, x), expected, rtol=1e-5, atol=1e-6)


def _deploy(case: str, exporter: str, tmp_path: Path, **options: object) -> tuple[bytes, object, np.ndarray]:
    module, shape = _module(case)
    onnx.save(export(module, shape, exporter), tmp_path / f"{case}.onnx")
    np.savez(tmp_path / "d.npz", x=normal_data(0, 16, shape))
    result = deploy(str(tmp_path / f"{case}.onnx"), A78, data=tmp_path / "d.npz", out=tmp_path / "out", **options)
    return (result.out_dir / "model.int8.tflite").read_bytes(), result.program.replace(rounding="double"), \
        normal_data(2, 8, shape)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_deploys_bitexact_with_litert(case: str, exporter: str, tmp_path: Path) -> None:
    tflite, program, data = _deploy(case, exporter, tmp_path)
    pool = next(op for op in program.ops if op.kind == "MAX_POOL_2D")
    if case in PADDED:
        pad = next(op for op in program.ops if op.kind == "PADV2")
        assert program.tensor(pad.inputs[2]).data == -128 and pool.options["padding"] == "VALID"
    else:
        assert pool.options["padding"] == "SAME"
    assert program.tensor(pool.outputs[0]).shape[1:3] == (CASES[case][1],) * 2
    x = quantize_input(program, data)
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([x])[0], run_program(program, [x])[0])


@pytest.mark.parametrize("case", PADDED)
def test_w8a16_pads_with_the_int16_minimum_bitexact(case: str, tmp_path: Path) -> None:
    tflite, program, data = _deploy(case, "torchscript", tmp_path, precision="w8a16")
    pad = next(op for op in program.ops if op.kind == "PADV2")
    assert program.tensor(pad.inputs[0]).dtype == "int16" and program.tensor(pad.inputs[2]).data == -32768
    x = quantize_input(program, data)
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([x])[0], run_program(program, [x])[0])


@pytest.mark.parametrize("case", PADDED)
def test_float_island_pads_with_the_float_minimum_bitexact(case: str, tmp_path: Path) -> None:
    tflite, program, data = _deploy(case, "torchscript", tmp_path, precision_overrides={"MaxPool": "float"})
    pad = next(op for op in program.ops if op.kind == "PADV2")
    assert program.tensor(pad.inputs[0]).dtype == "float32"
    assert program.tensor(pad.inputs[2]).data == np.finfo(np.float32).min
    x = quantize_input(program, data)
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([x])[0], run_program(program, [x])[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_quantsim_simulates_the_ceil_mode_pool_as_the_program_runs_it(case: str) -> None:
    module, shape = _module(case)
    graph = optimize(onnx_to_graph(export(module, shape, "torchscript"), case))
    x = normal_data(0, 16, shape)
    quantized = quantize_minmax(graph, set_ranges(calibrate(graph, x), "minmax"))
    qgraph = QuantizedGraph(quantized.graph, quantized.encodings)
    simulated, executed, _ = sim_and_executor(qgraph, lower(qgraph, rounding="double"), normal_data(3, 8, shape))
    np.testing.assert_array_equal(simulated, executed)


def test_a_window_starting_in_the_padding_is_refused_by_name(tmp_path: Path) -> None:
    module = CeilPool(2, 2, 1).eval()
    with torch.no_grad():
        assert module(torch.zeros(1, 3, 5, 5)).shape[2:] == (3, 3)
    onnx.save(export(module, (1, 3, 5, 5), "torchscript"), tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", x=normal_data(0, 4, (1, 3, 5, 5)))
    with pytest.raises(UnsupportedOpError, match="MaxPool.*starts in the end padding"):
        deploy(str(tmp_path / "m.onnx"), A78, data=tmp_path / "d.npz", out=tmp_path / "out")
