"""Issue 12's last small ONNX ops deploy bit-exact with LiteRT 2.3's reference kernels (BUILTIN_REF): ReduceMax
(``x.amax``) → REDUCE_MAX, DepthToSpace (``nn.PixelShuffle`` writes mode CRD, TensorFlow's exporters
DCR) → DEPTH_TO_SPACE, SpaceToDepth → SPACE_TO_DEPTH, and a padding mask ``ids == 0`` → EQUAL. Each model goes
through ``torch.onnx.export(dynamo=False)`` (or is built node by node where torch writes no such op:
``nn.PixelUnshuffle`` comes out as Reshape/Transpose/Reshape, tested too) and ``deploy``; the executor
(double rounding) equals LiteRT element for element and follows the fp32 model.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from onnx import helper
from torch import nn

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams, TensorInfo
from edgeopt.pipeline.evaluate import dequantize_output, program_inputs, quantize_input
from edgeopt.pipeline.frontend.data import load_npz
from edgeopt.qprogram import QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.workflows.deploy import deploy
from tests.builders.converter_files import edit_model
from tests.builders.movement import one_op_program
from tests.builders.onnx_models import model as onnx_model
from tests.builders.torch_export import export, normal_data

PROFILE = "arm-cortex-a78-xnnpack"


class AmaxModel(nn.Module):
    """A conv, then the maxima over H and W (kept) and over C (dropped), as ``x.amax`` writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.amax(dim=(2, 3), keepdim=True) + y.amax(dim=1, keepdim=False).unsqueeze(1)


class WidthReductions(nn.Module):
    """A conv, then the maximum and the mean over W, dropped: ``[N, C, H]``, whose C and H are in the other
    order in NHWC."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.amax(dim=3) * 0.5 + y.mean(dim=3)


class Shuffle(nn.Module):
    """A conv to 4 * 3 channels and ``nn.PixelShuffle(2)``, or the reverse with ``nn.PixelUnshuffle(2)``."""

    def __init__(self, unshuffle: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3 if unshuffle else 12, 3, padding=1)
        self.move = nn.PixelUnshuffle(2) if unshuffle else nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.move(self.conv(x))


def _reference_loadable(data: bytes) -> bytes:
    """The file with DEPTH_TO_SPACE and SPACE_TO_DEPTH at version 1: ai-edge-litert 2.3's reference resolver
    registers only that version of each, although their kernels (``depth_to_space.cc``,
    ``space_to_depth.cc``) copy int8 values as well, and an int8 op must say version 2 (``op_version.cc``)."""
    moves = {schema.BuiltinOperator.DEPTH_TO_SPACE, schema.BuiltinOperator.SPACE_TO_DEPTH}

    def first_versions(model: schema.ModelT) -> None:
        for code in model.operatorCodes:
            if max(code.builtinCode, code.deprecatedBuiltinCode) in moves:
                code.version = 1
    return edit_model(data, first_versions)


def _deploy_and_compare(module: nn.Module | None, path: Path, shape: tuple[int, ...], exporter: str = "torchscript17"):
    """Deploy ``path`` (exported from ``module`` unless None), check the executor against LiteRT
    BUILTIN_REF element for element, return the program's kinds, the program, the float input and the
    dequantized output."""
    if module is not None:
        torch.manual_seed(0)
        module.eval()
        onnx.save(export(module, shape, exporter), path)
    np.savez(path.with_suffix(".npz"), x=normal_data(0, 16, shape))
    result = deploy(str(path), PROFILE, data=path.with_suffix(".npz"), out=path.parent / "out")
    program = result.program.replace(rounding="double")
    x = normal_data(1, 8, shape)
    q = quantize_input(program, x)
    got = run_program(program, [q])[0]
    data = _reference_loadable((result.out_dir / "model.int8.tflite").read_bytes())
    np.testing.assert_array_equal(got, LiteRT(data, kernels="reference").run([q])[0])
    return [op.kind for op in program.ops], program, x, dequantize_output(program, got)


def _correlates(module: nn.Module, x: np.ndarray, out: np.ndarray) -> None:
    with torch.no_grad():
        fp32 = module(torch.from_numpy(x)).numpy()
    assert np.corrcoef(out.reshape(fp32.shape).ravel(), fp32.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("exporter", ["torchscript13", "torchscript18"])
def test_amax_lowers_to_reduce_max_on_the_input_encoding(exporter: str, tmp_path: Path) -> None:
    """Opset 13 writes the axes as an attribute, 18 as an input; both reduce NHWC axes [1, 2] and [3]."""
    module = AmaxModel()
    _kinds, program, x, out = _deploy_and_compare(module, tmp_path / "amax.onnx", (1, 3, 5, 4), exporter)
    reductions = [op for op in program.ops if op.kind == "REDUCE_MAX"]
    assert [program.tensor(op.inputs[1]).data.tolist() for op in reductions] == [[1, 2], [3]]
    for op in reductions:
        assert program.tensor(op.outputs[0]).qparams.same_as(program.tensor(op.inputs[0]).qparams)
    _correlates(module, x, out)


def test_reductions_over_w_without_keepdims_transpose_their_kept_axes_to_the_source_order(tmp_path: Path) -> None:
    module = WidthReductions()
    kinds, program, x, out = _deploy_and_compare(module, tmp_path / "width.onnx", (1, 3, 5, 4))
    for kind in ("REDUCE_MAX", "MEAN"):
        i = kinds.index(kind)
        assert kinds[i + 1:i + 3] == ["TRANSPOSE", "RESHAPE"]
        assert program.ops[i].options["keep_dims"] is True
    _correlates(module, x, out)


def test_pixel_shuffle_after_a_conv_lowers_to_depth_to_space_alone(tmp_path: Path) -> None:
    """The Conv's output channels are put in DCR order (``optimize.depth_to_space_as_dcr``): no TRANSPOSE."""
    module = Shuffle()
    kinds, _program, x, out = _deploy_and_compare(module, tmp_path / "shuffle.onnx", (1, 3, 4, 5))
    assert kinds == ["CONV_2D", "DEPTH_TO_SPACE"]
    _correlates(module, x, out)


def test_pixel_unshuffle_as_torch_writes_it_deploys(tmp_path: Path) -> None:
    """torch writes ``nn.PixelUnshuffle`` as a 6-D Reshape/Transpose/Reshape, not SpaceToDepth."""
    module = Shuffle(unshuffle=True)
    kinds, _program, x, out = _deploy_and_compare(module, tmp_path / "unshuffle.onnx", (1, 3, 4, 6))
    assert "TRANSPOSE" in kinds
    _correlates(module, x, out)


@pytest.mark.parametrize("op, mode", [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"), ("SpaceToDepth", None)])
def test_depth_space_ops_match_onnx_runtime_and_litert(op: str, mode: str | None, tmp_path: Path) -> None:
    """One-node models (TensorFlow's exporters write DCR and SpaceToDepth): the executor's output, which
    shares the input's encoding, dequantized equals ONNX Runtime's on the dequantized input (pure data
    movement), and LiteRT's int8 output."""
    attrs = {"blocksize": 2} | ({"mode": mode} if mode else {})
    shape, out_shape = ((1, 8, 3, 2), [1, 2, 6, 4]) if op == "DepthToSpace" else ((1, 2, 4, 6), [1, 8, 2, 3])
    path = tmp_path / "move.onnx"
    onnx.save(onnx_model([helper.make_node(op, ["x"], ["y"], name="move", **attrs)], {}, list(shape), out_shape),
              path)
    kinds, program, x, out = _deploy_and_compare(None, path, shape)
    assert kinds[-1] == ("DEPTH_TO_SPACE" if op == "DepthToSpace" else "SPACE_TO_DEPTH")
    x_q = program.tensor(program.inputs[0]).qparams.dequantize(quantize_input(program, x))
    x_q = x_q.transpose(0, 3, 1, 2).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"x": x_q[i:i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(out.reshape(expected.shape), expected, atol=1e-6)


VOCAB, SEQ, DIM = 20, 6, 8


class PaddingMask(nn.Module):
    """Embeddings zeroed where the token id is 0 (the padding token), then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.linear = nn.Embedding(VOCAB, DIM), nn.Linear(DIM, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = (ids == 0).unsqueeze(-1).float()
        return self.linear(self.embed(ids) * (1.0 - pad))


def test_padding_mask_equal_lowers_to_equal_on_int32_ids(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = PaddingMask().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, SEQ, dtype=torch.int64),), buffer, dynamo=False,
                          opset_version=17, input_names=["ids"], output_names=["y"])
    path = tmp_path / "mask.onnx"
    path.write_bytes(buffer.getvalue())
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (24, SEQ)).astype(np.int64)
    ids[:, -2:] = 0
    np.savez(tmp_path / "ids.npz", ids=ids)
    result = deploy(str(path), PROFILE, data=tmp_path / "ids.npz", out=tmp_path / "out")
    program = result.program.replace(rounding="double")
    equal = next(op for op in program.ops if op.kind == "EQUAL")
    assert [program.tensor(t).dtype for t in (*equal.inputs, *equal.outputs)] == ["int32", "int32", "bool"]
    x, _ = load_npz(tmp_path / "ids.npz", [TensorInfo("ids", (1, SEQ), "int64")], labels=False)
    inputs = program_inputs(program, x)
    got = run_program(program, inputs)[0]
    np.testing.assert_array_equal(got, LiteRT(result.out_dir / "model.int8.tflite", kernels="reference").run(inputs)[0])
    with torch.no_grad():
        fp32 = module(torch.from_numpy(ids)).numpy()
    out = dequantize_output(program, got).reshape(fp32.shape)
    assert np.abs(out - fp32).max() < 0.05 * np.abs(fp32).max()


def test_equal_of_quantized_values_is_refused_in_one_line() -> None:
    q = QParams(0.1, 0)
    program = one_op_program("EQUAL", [QTensor("a", (1, 4), "int8", q), QTensor("b", (1, 4), "int8", q)], [],
                             (1, 4), {})
    with pytest.raises(UnsupportedOpError, match="EQUAL .*quantized int8"):
        run_program(program, [np.zeros((1, 4), np.int8)] * 2)
