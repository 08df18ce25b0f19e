"""The recipe and emulate read their data in chunks (never the whole set as one array) and give the numbers of
one run over the whole set held in memory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeopt.pipeline.evaluate import run_float, run_int8, top1
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.frontend.sources import ArraySource
from edgeopt.runtimes.reference import executor
from edgeopt.workflows import emulate as emulate_mod
from edgeopt.workflows.deploy import deploy
from edgeopt.workflows.emulate import emulate
from tests.builders.onnx_models import conv_bn_relu6

PROFILE = "arm-cortex-a78-xnnpack"
SAMPLES = 600  # more than any chunk (run_float's 256): no read can be the whole set, nor half of it


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("streaming")
    rng = np.random.default_rng(7)
    (root / "small.onnx").write_bytes(conv_bn_relu6(rng).SerializeToString())
    np.savez(root / "data.npz", x=rng.normal(size=(SAMPLES, 3, 8, 8)).astype(np.float32),
             y=rng.integers(0, 10, SAMPLES))
    np.savez(root / "calib.npz", x=rng.normal(size=(32, 3, 8, 8)).astype(np.float32))
    return root


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches read from any array source (an .npz, a memory-mapped .npy) from now on."""
    reads: list[int] = []
    batches = ArraySource.batches

    def counted(self: ArraySource, size: int = 64):
        for x, y in batches(self, size):
            reads.append(len(x))
            yield x, y

    monkeypatch.setattr(ArraySource, "batches", counted)
    return reads


def test_the_recipe_streams_its_source_and_scores_as_in_memory(files: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pass over --data (screening head, confirmation, held-out score, accuracy) reads it in chunks."""
    reads = _count_reads(monkeypatch)
    streamed = deploy(str(files / "small.onnx"), PROFILE, data=str(files / "data.npz"),
                      calib=str(files / "calib.npz"), max_drop=100.0, recipe_samples=50, out=tmp_path / "out")
    # Screened on 50 of the 300 tuning samples, confirmed on all 300, scored on the 300 held out.
    budget = streamed.report["recipe_budget"]
    assert budget["screening"] == {**budget["screening"], "samples": 50, "total": 300}
    assert budget["held_out"]["samples"] == 300 and streamed.report["accuracy"]["n"] == SAMPLES
    # Reads: the screening head, the rest of the tuning half (fp32), that rest again (min/max's confirmation
    # runs only the samples past the screen) and the held-out half once (fp32 and int8 together), in
    # executor runs of 256 samples at most: never the whole set, nor half of it.
    assert reads == [50, 250, 250, 256, 44]
    with np.load(files / "data.npz") as npz:
        x, y = npz["x"], npz["y"]
    # The same figures as one run over every sample held in memory.
    graph = load(str(files / "small.onnx")).graph
    program = streamed.program
    half = SAMPLES // 2
    assert streamed.report["accuracy"]["fp32"] == pytest.approx(top1(run_float(graph, x, batch=SAMPLES), y), abs=1e-3)
    assert streamed.report["accuracy"]["int8"] == pytest.approx(top1(run_int8(program, x, batch=SAMPLES), y), abs=1e-3)
    held_out = top1(run_int8(program, x[half:], batch=half), y[half:])
    assert budget["held_out"]["int8"] == pytest.approx(held_out, abs=1e-3)
    assert budget["metric"] == "top1"  # the labels came with the streamed samples
    assert budget["fp32"] == pytest.approx(top1(run_float(graph, x[:50]), y[:50]), abs=1e-3)
    assert budget["screening"]["fp32_all"] == pytest.approx(top1(run_float(graph, x[:half]), y[:half]), abs=1e-3)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    on_tuning = top1(run_int8(program, x[:half], batch=half), y[:half])
    assert report["recipe"][0]["int8_all"] == budget["screening"]["int8_all"] == pytest.approx(on_tuning, abs=1e-3)


def test_emulate_runs_a_memory_mapped_npy_in_chunks(files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    result = deploy(str(files / "small.onnx"), PROFILE, data=str(files / "data.npz"), calib=str(files / "calib.npz"),
                    out=tmp_path / "out")
    tflite = result.out_dir / "model.int8.tflite"
    with np.load(files / "data.npz") as npz:
        x, y = npz["x"], npz["y"]
    np.save(tmp_path / "x.npy", x)  # NCHW, as deploy took it: emulate transposes it to the file's NHWC
    chunks: list[int] = []

    def run_program(program, inputs):
        chunks.append(len(inputs[0]))
        return executor.run_program(program, inputs)

    monkeypatch.setattr(emulate_mod, "run_program", run_program)
    reads = _count_reads(monkeypatch)
    from_npy = emulate(tflite, tmp_path / "x.npy", device=PROFILE)
    assert reads == chunks == [256, 256, 88] and from_npy.n == SAMPLES and from_npy.top1 is None
    assert from_npy.notes == ("x (600, 3, 8, 8) is NCHW; transposed to NHWC (600, 8, 8, 3) for the model input "
                              f"'{result.program.inputs[0]}'",)
    whole = executor.run_program(from_npy.program, [from_npy.program.tensor(from_npy.program.inputs[0]).qparams
                                                    .quantize(x.transpose(0, 2, 3, 1))])
    np.testing.assert_array_equal(from_npy.outputs[0], whole[0])
    labelled = emulate(tflite, files / "data.npz", device=PROFILE)
    assert labelled.top1 == pytest.approx(top1(whole[0], y), abs=1e-3)
