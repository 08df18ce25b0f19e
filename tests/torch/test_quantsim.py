"""QuantSim (fake-quant torch module from the IR), QAT, edgeopt.deploy of a QuantSim, edgeopt.equalize."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgeopt
from edgeopt.pipeline.evaluate import run_int8
from edgeopt.torch.quantsim import DEFAULT_DEVICE
from tests.builders.paths import PROFILES



class SmallNet(nn.Module):
    """Conv+BN+ReLU, depthwise ReLU6, residual Add, 1x1 conv, max/avg pool, Pad, Concat, Mul, Slice, Gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c3 = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.c1(x)))
        x = self.c3(nn.functional.relu6(self.c2(x)) + x)
        x = nn.functional.avg_pool2d(nn.functional.pad(nn.functional.max_pool2d(x, 2), (1, 1, 1, 1)), 3, stride=2)
        x = torch.cat([x, x * 2], 1)[:, :16]
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def calibrated() -> tuple[edgeopt.QuantSim, np.ndarray]:
    torch.manual_seed(0)
    model = SmallNet().eval()
    x = np.random.default_rng(0).standard_normal((64, 3, 16, 16)).astype(np.float32)
    sim = edgeopt.QuantSim(model, torch.from_numpy(x[:1]))
    sim.compute_encodings(x[:32])
    return sim, x


def test_simulation_matches_the_integer_executor(calibrated: tuple[edgeopt.QuantSim, np.ndarray]) -> None:
    """The profile's single rounding, then LiteRT BUILTIN_REF's double rounding: identical outputs."""
    sim, x = calibrated
    for rounding in ("single", "double"):
        sim.model.rounding = rounding
        with torch.no_grad():
            simulated = sim.model(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(simulated, run_int8(sim.program(rounding), x), err_msg=rounding)
    sim.model.rounding = sim.profile.runtime.requantization_rounding


def test_simulation_with_per_tensor_weights_matches_the_integer_executor() -> None:
    """The Coral profile: one weight scale per tensor, double rounding."""
    torch.manual_seed(1)
    x = np.random.default_rng(1).standard_normal((32, 3, 16, 16)).astype(np.float32)
    sim = edgeopt.QuantSim(SmallNet().eval(), torch.from_numpy(x[:1]), device="google-coral-edgetpu")
    sim.compute_encodings(x[:16])
    assert sim.export().encodings["fc.weight"].scale.size == 1
    with torch.no_grad():
        simulated = sim.model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(simulated, run_int8(sim.program(), x))


def test_learned_ranges_train_and_stay_exact() -> None:
    """QAT with learned scales: the activation and weight scales get gradients through the soft
    (fake-quant) path while the forward value is the kernel's, and after the scales have moved the
    simulation still equals the integer executor on the exported program."""
    torch.manual_seed(2)
    model = SmallNet().eval()
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((48, 3, 16, 16)).astype(np.float32))
    sim = edgeopt.QuantSim(model, x[:1], learn_ranges=True)
    sim.compute_encodings(x[:16])
    with torch.no_grad():
        target = model(x)
    scales = [p for n, p in sim.model.named_parameters() if n.endswith("scale")]
    before = [p.detach().clone() for p in scales]
    opt = torch.optim.Adam(sim.model.parameters(), lr=1e-3)
    for _ in range(3):
        loss = ((sim.model(x[:32]) - target[:32]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in scales)
        opt.step()
    assert sum(not torch.equal(p, b) for p, b in zip(scales, before)) > len(scales) // 2
    with torch.no_grad():
        simulated = sim.model(x[32:]).numpy()
    np.testing.assert_array_equal(simulated, run_int8(sim.program(), x[32:].numpy()))


def _w4_profile(tmp_path: Path) -> Path:
    """The default device's profile with a W4A8 kernel (no shipped profile has one; QuantSim refuses W4
    where the profile's ``supported_kernels`` do not allow it, as deploy does)."""
    text = (PROFILES / f"{DEFAULT_DEVICE}.toml").read_text()
    line = "supported_kernels = [{ activation = 8, param = 8 }, { activation = 16, param = 8 }]"
    assert line in text
    path = tmp_path / "w4.toml"
    path.write_text(text.replace(line, line[:-1] + ", { activation = 8, param = 4 }]"))
    return path


def test_qat_improves_a_badly_quantized_model_on_the_int8_executor(tmp_path: Path) -> None:
    """W4 weights where one weight per row is 8x the others: at 4 bits the rest round to 0 or ±1 step
    (7 % of the output variance lost). Sixty full-batch steps of the user's own loop on the fake-quant
    module, then export → lower → the integer executor: the error must fall clearly (measured 0.58x)."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        for layer in (teacher[0], teacher[2]):
            rows = torch.arange(layer.weight.shape[0])
            layer.weight[rows, torch.randint(0, layer.weight.shape[1], rows.shape)] *= 8
    x = torch.randn(768, 16)
    with torch.no_grad():
        target = teacher(x)
    student = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    student.load_state_dict(teacher.state_dict())
    sim = edgeopt.QuantSim(student, x[:1], str(_w4_profile(tmp_path)), weight_bits=4)
    sim.compute_encodings(x[:256])

    def int8_error() -> float:
        return float(np.mean((run_int8(sim.program(), x[512:].numpy()) - target[512:].numpy()) ** 2))

    before = int8_error()
    assert before > 0.05 * float(target.var())  # badly quantized indeed
    opt = torch.optim.Adam(sim.model.parameters(), lr=5e-4)
    for _ in range(60):
        loss = ((sim.model(x[:512]) - target[:512]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert int8_error() < 0.7 * before


def test_deploy_of_a_quantsim_writes_the_cli_artifacts(calibrated: tuple[edgeopt.QuantSim, np.ndarray],
                                                       tmp_path) -> None:
    sim, x = calibrated
    data = tmp_path / "data.npz"
    np.savez(data, x=x[32:], y=np.zeros(32, np.int64))
    result = edgeopt.deploy(sim, device="arm-cortex-a78-xnnpack", data=data, out=tmp_path / "out")
    for name in ("model.int8.tflite", "model.int8.onnx", "model.fp32.onnx", "report.json"):
        assert (tmp_path / "out" / name).is_file()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["accuracy"]["n"] == 32
    assert result.program.ops


def test_equalize_folds_batch_norm_and_preserves_float_outputs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 5)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.1, 3)
    x = torch.randn(16, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
    conv2_before = model[3].weight.detach().clone()
    edgeopt.equalize(model, x[:1])
    with torch.no_grad():
        after = model(x)
    assert isinstance(model[1], nn.Identity)
    assert not torch.equal(model[3].weight, conv2_before)  # CLE rescaled the second conv's input channels
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
