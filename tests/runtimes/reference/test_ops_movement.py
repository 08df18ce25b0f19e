"""Concat, MaxPool, Transpose, Resize (nearest, bilinear), PADV2 and MIRROR_PAD: bit-exact with LiteRT's
reference kernels, end to end from ONNX/torch, and clear errors for what TFLite cannot express."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tests.builders.programs import random_inputs
from tests.builders.movement import concat_program, max_pool_program, mirror_pad_program, one_op_program, resize_program
from onnx import helper
from tests.builders.onnx_models import model as onnx_model

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input
from edgeopt.pipeline.frontend.load import export_torch, load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.qprogram import QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program

RESIZE_FLAGS = [(False, False), (True, False), (False, True)]


def assert_bitexact(program: QProgram, rng: np.random.Generator, batches: int = 100) -> None:
    program = program.replace(rounding="double")
    inputs = random_inputs(rng, program, batches)
    expected = LiteRT(program_to_tflite(program), kernels="reference").run(inputs)
    for got, want in zip(run_program(program, inputs), expected, strict=True):
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------------------
# Kernels against LiteRT BUILTIN_REF


def test_random_max_pools_match_litert_reference() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        kernel = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = "VALID" if kernel[0] <= h and kernel[1] <= w and rng.integers(2) else "SAME"
        program = max_pool_program(rng, (1, h, w, int(rng.integers(1, 5))), kernel,
                                   tuple(int(v) for v in rng.integers(1, 4, 2)), padding,
                                   str(rng.choice(["NONE", "RELU", "RELU6"])))
        assert_bitexact(program, rng, 50)


@pytest.mark.parametrize(("shapes", "axis", "constants"), [
    ([(1, 3, 4, 2), (1, 3, 4, 5), (1, 3, 4, 1)], 3, ()),
    ([(1, 3, 4, 2), (1, 2, 4, 2)], 1, (1,)),
    ([(2, 6), (2, 3)], 1, ()),
    ([(1, 5), (1, 5)], 0, ()),
])
def test_concatenation_matches_litert_reference(shapes, axis, constants) -> None:
    rng = np.random.default_rng(2)
    assert_bitexact(concat_program(rng, shapes, axis, constants), rng)


@pytest.mark.parametrize("kind", ["RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"])
@pytest.mark.parametrize("flags", RESIZE_FLAGS)
def test_random_resizes_match_litert_reference(kind: str, flags: tuple[bool, bool]) -> None:
    """Up- and downsampling by integer and odd ratios, every flag combination TFLite allows."""
    rng = np.random.default_rng(3)
    for _ in range(12):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        out_hw = tuple(int(v) for v in rng.integers(1, 20, 2))
        assert_bitexact(resize_program(rng, kind, (1, h, w, 3), out_hw, *flags), rng, 30)


def test_bilinear_rounds_twice_in_litert_reference() -> None:
    """LiteRT 2.3's int8 RESIZE_BILINEAR rounds Q20 sums half away from zero (the build without
    TFLITE_SINGLE_ROUNDING): the executor's single-rounding form ((acc + 2**19) >> 20) differs on ties."""
    rng = np.random.default_rng(4)
    program = resize_program(rng, "RESIZE_BILINEAR", (1, 4, 4, 8), (8, 8), False, True)
    inputs = random_inputs(rng, program, 200)
    (want,) = LiteRT(program_to_tflite(program), kernels="reference").run(inputs)
    np.testing.assert_array_equal(run_program(program.replace(rounding="double"), inputs)[0], want)
    assert (run_program(program.replace(rounding="single"), inputs)[0] != want).sum() > 0


def test_pad_v2_with_int8_minimum_matches_litert_reference() -> None:
    rng = np.random.default_rng(5)
    q = QParams(0.05, 7)
    x = QTensor("x", (1, 5, 6, 3), "int8", q)
    paddings = QTensor("paddings", (4, 2), "int32", data=np.array([[0, 0], [1, 2], [0, 1], [0, 0]]))
    value = QTensor("value", (), "int8", q, np.array(-128))
    assert_bitexact(one_op_program("PADV2", [x], [paddings, value], (1, 8, 7, 3), {}), rng)


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
def test_mirror_pad_matches_litert_reference(mode: str) -> None:
    rng = np.random.default_rng(6)
    assert_bitexact(mirror_pad_program(rng, (1, 5, 6, 3), [(0, 0), (2, 1), (1, 3), (0, 0)], mode), rng)


# ---------------------------------------------------------------------------------------------------
# End to end from torch / ONNX


class UNet(torch.nn.Module):
    """Two-level U-Net: Conv, MaxPool, upsampling (Resize or ConvTranspose) and Concat skips."""

    def __init__(self, up: str) -> None:
        super().__init__()
        self.up_mode = up
        self.enc1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.enc2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.mid = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.dec2 = torch.nn.Conv2d(32, 8, 3, padding=1)
        self.dec1 = torch.nn.Conv2d(16, 4, 3, padding=1)
        if up == "transpose":
            self.up2 = torch.nn.ConvTranspose2d(16, 16, 2, stride=2)
            self.up1 = torch.nn.ConvTranspose2d(8, 8, 2, stride=2)

    def _up(self, x: torch.Tensor, level: int) -> torch.Tensor:
        if self.up_mode == "transpose":
            return (self.up2 if level == 2 else self.up1)(x)
        align = {"align_corners": False} if self.up_mode == "bilinear" else {}
        return torch.nn.functional.interpolate(x, scale_factor=2, mode=self.up_mode, **align)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = torch.relu(self.enc1(x))
        e2 = torch.relu(self.enc2(torch.nn.functional.max_pool2d(e1, 2)))
        m = torch.relu(self.mid(torch.nn.functional.max_pool2d(e2, 2)))
        d2 = torch.relu(self.dec2(torch.cat([self._up(m, 2), e2], dim=1)))
        return self.dec1(torch.cat([self._up(d2, 1), e1], dim=1))


def _end_to_end(path: Path, x: np.ndarray) -> tuple[QProgram, np.ndarray]:
    """load → optimize → calibrate → quantize → lower("double") → .tflite; checks bit-exactness with
    LiteRT BUILTIN_REF, that default kernels load and run it, and returns the program and its float output."""
    loaded = load(str(path))
    graph = optimize(loaded.graph)
    program = lower(quantize_minmax(graph, calibrate(graph, x)), rounding="double")
    tflite = program_to_tflite(program)
    q = quantize_input(program, x)
    ours = run_program(program, [q])[0]
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([q])[0], ours)
    assert LiteRT(tflite, kernels="default").run([q])[0].shape == ours.shape
    return program, dequantize_output(program, ours)


def _float_output(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize("up", ["nearest", "bilinear"])
def test_unet_with_resize_end_to_end(up: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "unet.onnx"
    path.write_bytes(export_torch(UNet(up).eval(), torch.zeros(1, 3, 16, 16)).SerializeToString())
    x = np.random.default_rng(7).normal(size=(32, 3, 16, 16)).astype(np.float32)
    program, y = _end_to_end(path, x)
    kinds = [op.kind for op in program.ops]
    resize = "RESIZE_BILINEAR" if up == "bilinear" else "RESIZE_NEAREST_NEIGHBOR"
    assert kinds.count("CONCATENATION") == 2 and kinds.count("MAX_POOL_2D") == 2 and kinds.count(resize) == 2
    assert "PADV2" not in kinds and "TRANSPOSE" not in kinds
    want = _float_output(path, x)
    assert np.corrcoef(y.ravel(), want.ravel())[0, 1] > 0.99


def test_unet_with_conv_transpose_end_to_end(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "unet_t.onnx"
    path.write_bytes(export_torch(UNet("transpose").eval(), torch.zeros(1, 3, 16, 16)).SerializeToString())
    x = np.random.default_rng(8).normal(size=(32, 3, 16, 16)).astype(np.float32)
    _, y = _end_to_end(path, x)
    assert np.corrcoef(y.ravel(), _float_output(path, x).ravel())[0, 1] > 0.99


def _save(m: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(m.SerializeToString())
    return path


def test_padded_max_pool_transpose_and_concat_of_input_end_to_end(tmp_path: Path) -> None:
    """ResNet's MaxPool(3, stride 2, pads 1) → PADV2(-128) + VALID MAX_POOL_2D; a Concat of the graph
    input with a computed tensor and a constant (one shared encoding); an NCHW Transpose."""
    rng = np.random.default_rng(9)
    inits = {"w": rng.normal(0, 0.3, (4, 3, 1, 1)).astype(np.float32),
             "c": rng.normal(0, 1, (1, 2, 8, 8)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], name="conv"),
        helper.make_node("Concat", ["x", "conv", "c"], ["cat"], name="cat", axis=1),
        helper.make_node("MaxPool", ["cat"], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["pool"], ["y"], name="t", perm=[0, 2, 3, 1]),
    ]
    path = _save(onnx_model(nodes, inits, [1, 3, 8, 8], [1, 4, 4, 9]), tmp_path)
    x = rng.normal(size=(64, 3, 8, 8)).astype(np.float32)
    program, y = _end_to_end(path, x)
    assert [op.kind for op in program.ops] == ["CONV_2D", "CONCATENATION", "PADV2", "MAX_POOL_2D", "TRANSPOSE"]
    assert program.tensor("x").qparams.same_as(program.tensor("cat").qparams)
    want = _float_output(path, x)
    assert np.abs(y - want).max() <= 2 * program.tensor("y").qparams.scale[0]


@pytest.mark.parametrize(("coord", "nearest_mode", "flags"), [
    ("asymmetric", "floor", (False, False)),
    ("half_pixel", "round_prefer_ceil", (False, True)),
    ("align_corners", "round_prefer_ceil", (True, False)),
    ("tf_half_pixel_for_nn", "floor", (False, True)),
])
def test_nearest_resize_modes_map_to_tflite_flags(coord: str, nearest_mode: str, flags, tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up", mode="nearest",
                            coordinate_transformation_mode=coord, nearest_mode=nearest_mode)
    path = _save(onnx_model([node], {"sizes": np.array([1, 2, 11, 7], np.int64)}, [1, 2, 5, 4], [1, 2, 11, 7]),
                 tmp_path)
    x = rng.normal(size=(16, 2, 5, 4)).astype(np.float32)
    program, y = _end_to_end(path, x)
    (op,) = program.ops
    assert (op.options["align_corners"], op.options["half_pixel_centers"]) == flags
    # Nearest resizing only copies values: exactly the quantized float model.
    np.testing.assert_allclose(y, program.tensor("x").qparams.dequantize(program.tensor("x").qparams.quantize(
        _float_output(path, x))), atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# What TFLite cannot express


def _lower_one(tmp_path: Path, node: onnx.NodeProto, inits: dict, in_shape: list, out_shape: list) -> None:
    path = _save(onnx_model([node], inits, in_shape, out_shape), tmp_path)
    graph = optimize(load(str(path)).graph)
    x = np.random.default_rng(0).normal(size=[4, *in_shape[1:]]).astype(np.float32)
    lower(quantize_minmax(graph, calibrate(graph, x)))


@pytest.mark.parametrize(("attrs", "inits", "out", "why"), [
    ({"mode": "cubic"}, {"scales": np.array([1, 1, 2, 2], np.float32)}, [1, 2, 8, 8], "mode 'cubic'"),
    ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
     {"scales": np.array([1, 1, 2, 2], np.float32)}, [1, 2, 8, 8], "tf_crop_and_resize"),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"},
     {"scales": np.array([1, 1, 2, 2], np.float32)}, [1, 2, 8, 8], "no TFLite flag combination"),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     {"scales": np.array([1, 1, 0.25, 0.25], np.float32)}, [1, 2, 1, 1], "length 1"),
])
def test_unsupported_resizes_name_op_node_and_reason(attrs, inits, out, why, tmp_path: Path) -> None:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs", **attrs)
    with pytest.raises(UnsupportedOpError, match=f"Resize.*'rs'.*{why}"):
        _lower_one(tmp_path, node, inits, [1, 2, 4, 4], out)


def test_max_pool_ceil_mode_window_in_the_end_padding_is_rejected(tmp_path: Path) -> None:
    """ONNX's shape inference counts the window that starts in the end padding; ONNX Runtime drops it."""
    node = helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2], strides=[2, 2],
                            pads=[1, 1, 1, 1], ceil_mode=1)
    with pytest.raises(UnsupportedOpError, match="MaxPool.*'mp'.*ceil_mode window"):
        _lower_one(tmp_path, node, {}, [1, 2, 5, 5], [1, 2, 4, 4])


def test_dilated_max_pool_is_rejected(tmp_path: Path) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 2], dilations=[2, 2])
    with pytest.raises(UnsupportedOpError, match="MaxPool.*'mp'.*dilated"):
        _lower_one(tmp_path, node, {}, [1, 2, 5, 5], [1, 2, 3, 3])


def test_reflect_pad_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    node = helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode="reflect")
    inits = {"pads": np.array([0, 0, 2, 1, 0, 0, 1, 3], np.int64)}
    path = _save(onnx_model([node], inits, [1, 2, 5, 6], [1, 2, 8, 10]), tmp_path)
    x = rng.normal(size=(16, 2, 5, 6)).astype(np.float32)
    program, y = _end_to_end(path, x)
    assert [op.kind for op in program.ops] == ["MIRROR_PAD"]
    q = program.tensor("x").qparams
    np.testing.assert_allclose(y, q.dequantize(q.quantize(_float_output(path, x))), atol=1e-6)


def test_edge_pad_is_rejected(tmp_path: Path) -> None:
    node = helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode="edge")
    with pytest.raises(UnsupportedOpError, match="Pad.*'pad'.*mode 'edge'"):
        _lower_one(tmp_path, node, {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, [1, 2, 4, 4], [1, 2, 6, 6])
