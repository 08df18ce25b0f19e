"""Per-node / per-op-type precision overrides from the command line (``deploy --override NAME=DTYPE``), and
the report's precision section saying what the program holds (``mode``) and where it came from."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.errors import OptionError
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.quantize.mixed_precision import Promotion
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.precision import apply_precision, precision_plan
from edgeopt.pipeline.report.precision import precision_source, precision_summary, program_mode
from tests.builders.cli import assert_one_line_error
from tests.builders.onnx_models import conv_bn_relu6

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """conv (+ folded bn, fused relu6) → gap → flatten → fc, and 64 samples with labels."""
    folder = tmp_path_factory.mktemp("overrides")
    (folder / "m.onnx").write_bytes(conv_bn_relu6(np.random.default_rng(0)).SerializeToString())
    rng = np.random.default_rng(1)
    np.savez(folder / "d.npz", x=rng.normal(size=(64, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 64))
    return folder / "m.onnx", folder / "d.npz"


def _deploy(files: tuple[Path, Path], out: Path, *overrides: str):
    args = ["deploy", str(files[0]), "--device", "arm-cortex-a78-xnnpack", "--data", str(files[1]), "--out", str(out)]
    for text in overrides:
        args += ["--override", text]
    return runner.invoke(app, args, catch_exceptions=False)


def test_cli_overrides_a_node_to_int16_and_an_op_type_to_float(files: tuple[Path, Path], tmp_path: Path) -> None:
    result = _deploy(files, tmp_path, "Gemm=float", " conv = int16 ")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["float_nodes"] == ["fc"]
    section = report["precision"]
    ops = section["ops_by_dtype"]
    assert ops["CONV_2D"] == {"int16": 1} and ops["FULLY_CONNECTED"] == {"float32": 1}
    assert ops["AVERAGE_POOL_2D"] == {"int8": 1}  # the pool between them stays int8
    assert (section["mode"], section["requested"]) == ("mixed", "w8a8")
    assert section["source"] == "profile default + --override Gemm=float conv=int16"
    assert section["float_ops"] == 2 and section["int16_ops"] >= 3  # DEQUANTIZE + FC; PAD, CONV, QUANTIZEs
    assert "precision mixed (profile default + --override Gemm=float" in result.output


@pytest.mark.parametrize("overrides, needle", [
    (("conv",), "'conv' is not NAME=DTYPE"),
    (("conv=int4",), "'conv=int4' is not NAME=DTYPE"),
    (("=float",), "'=float' is not NAME=DTYPE"),
    (("conv=int8", "conv=float"), "'conv' is overridden twice (int8 and float)"),
])
def test_bad_override_is_a_usage_error(files: tuple[Path, Path], tmp_path: Path, overrides: tuple[str, ...],
                                       needle: str) -> None:
    result = _deploy(files, tmp_path / "out", *overrides)
    assert result.exit_code == 2 and "--override" in result.output
    assert needle in " ".join(result.output.replace("│", " ").split())  # rich boxes and wraps the message
    assert not (tmp_path / "out").exists()


def test_override_naming_nothing_is_one_clear_error(files: tuple[Path, Path], tmp_path: Path) -> None:
    typo = _deploy(files, tmp_path / "a", "conv9=float")
    assert_one_line_error(typo, 2, "precision override 'conv9' names no node or op type", "did you mean conv")
    # The batch norm was folded into the conv: its name no longer exists in the graph that is quantized.
    folded = _deploy(files, tmp_path / "b", "bn=int16")
    assert_one_line_error(folded, 2, "'bn'", "op types: Conv, Flatten, Gemm, GlobalAveragePool")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_precision_plan_refuses_an_unknown_name_for_every_caller(files: tuple[Path, Path]) -> None:
    graph = optimize(onnx_to_graph(conv_bn_relu6(np.random.default_rng(0)), "m", None))
    with pytest.raises(OptionError, match="'Softmax' names no node or op type"):
        precision_plan(graph, "w8a16", {"Softmax": "float"})
    assert precision_plan(graph, "w8a8", {"Conv": "float", "fc": "int16"}) == {
        "conv": "float", "gap": "int8", "flatten": "int8", "fc": "int16"}


def test_mode_is_what_the_program_holds() -> None:
    graph = optimize(onnx_to_graph(conv_bn_relu6(np.random.default_rng(0)), "m", None))
    stats = calibrate(graph, np.random.default_rng(2).normal(size=(16, 3, 8, 8)).astype(np.float32))
    int8 = quantize_minmax(graph, stats)

    def program(plan: dict[str, str]):
        return lower(apply_precision(int8, stats, plan))

    names = [n.name for n in graph.nodes]
    assert program_mode(program({})) == "w8a8"
    assert program_mode(program(dict.fromkeys(names, "int16"))) == "w8a16"  # input/output QUANTIZEs do not count
    assert program_mode(lower(QuantizedGraph(int8.graph, int8.encodings, frozenset(names)))) == "float"
    mixed = program({"fc": "float"})
    section = precision_summary(mixed, "w8a8", source="profile default")
    assert section["mode"] == "mixed" and section["float_ops"] == 2  # DEQUANTIZE, FULLY_CONNECTED
    assert section["summary"] == f"int8: {len(mixed.ops) - 2} ops | float32: 2 ops"


def test_source_names_each_origin_in_order() -> None:
    promoted = [Promotion("a", "int16", "activation", 1.0), Promotion("b", "int16", "activation", 2.0),
                Promotion("c", "float", "weights", 3.0)]
    assert precision_source("profile default") == "profile default"
    assert precision_source("--precision w8a16", {"Softmax": "float"}, promoted, ["ln", "ln", "gelu"]) == (
        "--precision w8a16 + --override Softmax=float + recipe: 1 layer to float, 2 layers to int16 + "
        "2 float-only nodes")
