"""Data as users keep it: a class-per-folder image set, an image list and a Python entry point give deploy
the same accuracy as the equivalent .npz (the built-in example's test split, written as 8x8 PNGs)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.examples import digits
from edgeopt.pipeline import evaluate
from edgeopt.runtimes.reference import executor
from edgeopt.workflows.deploy import deploy
from edgeopt.workflows.emulate import emulate

PROFILE = "arm-cortex-a78-xnnpack"
# The example's own preprocessing (digits.preprocess), written as --preprocess.
DIGITS = f"order=gray,scale=1/{digits.PIXEL_MAX:g},mean={digits.MEAN},std={digits.STD}"
runner = CliRunner()


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test split as an .npz, a class-per-folder PNG tree, a list.txt of its paths and labels (in another
    order), and a data entry point file."""
    root = tmp_path_factory.mktemp("digits")
    with np.load(Path(digits.__file__).parent / digits.DATA_FILE) as npz:
        images, labels = npz["test_images"], npz["test_labels"]
    lines = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = root / "tree" / f"class{label}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(path)
        lines.append(f"tree/class{label}/{i:04d}.png {label}")
    (root / "list.txt").write_text("# path label\n" + "\n".join(reversed(lines)) + "\n")
    x, y = digits.example_data("test")
    np.savez(root / "test.npz", x=x, y=y)
    (root / "reader.py").write_text(
        "import numpy as np\n"
        "from pathlib import Path\n\n\n"
        "def batches():\n"
        "    with np.load(Path(__file__).parent / 'test.npz') as npz:\n"
        "        x, y = npz['x'], npz['y']\n"
        "    for i in range(0, len(x), 100):\n"
        "        yield x[i:i + 100], y[i:i + 100]\n")
    (root / "tracked_reader.py").write_text(
        "from pathlib import Path\n\nimport numpy as np\n\nEVENTS = []\n\n\n"
        "def batches():\n"
        "    EVENTS.append('call')\n"
        "    with np.load(Path(__file__).parent / 'test.npz') as npz:\n"
        "        x, y = npz['x'], npz['y']\n"
        "    for i in range(0, len(x), 27):\n"
        "        EVENTS.append('yield')\n"
        "        yield x[i:i + 27], y[i:i + 27]\n")
    return root


def _accuracy(data: str, out: Path, **options: object) -> dict:
    return deploy(None, PROFILE, data=data, out=out, **options).report["accuracy"]


def test_image_folder_list_and_entry_point_match_npz(digit_files: Path, tmp_path: Path):
    reference = _accuracy(str(digit_files / "test.npz"), tmp_path / "npz")
    assert reference["n"] == 540 and reference["metric"] == "top1"
    for name, data, options in [("tree", str(digit_files / "tree"), {"preprocess": DIGITS}),
                                ("list", str(digit_files / "list.txt"), {"preprocess": DIGITS}),
                                ("entry", f"{digit_files / 'reader.py'}:batches", {})]:
        got = _accuracy(data, tmp_path / name, **options)
        assert {k: got[k] for k in reference} == reference, name


def test_cli_image_folder_with_preprocess_toml(digit_files: Path, tmp_path: Path):
    toml = tmp_path / "prep.toml"
    toml.write_text(f'order = "gray"\nscale = {1 / digits.PIXEL_MAX}\nmean = [{digits.MEAN}]\nstd = {digits.STD}\n')
    result = runner.invoke(app, ["deploy", "--data", str(digit_files / "tree"), "--calib",
                                 str(digit_files / "list.txt"), "--calib-size", "1000", "--preprocess", str(toml), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # all 540 images calibrate (in the list's order): the same ranges as the .npz's
    reference = _accuracy(str(digit_files / "test.npz"), tmp_path / "npz", calib=str(digit_files / "test.npz"),
                          calib_size=1000)
    assert report["accuracy"]["int8"] == reference["int8"]
    assert report["calibration"]["n"] == 540


def test_emulate_reads_an_image_folder(digit_files: Path, tmp_path: Path):
    result = deploy(None, PROFILE, data=str(digit_files / "test.npz"), out=tmp_path / "out")
    tflite = result.out_dir / "model.int8.tflite"
    from_npz = emulate(tflite, digit_files / "test.npz", device=PROFILE)
    from_tree = emulate(tflite, digit_files / "tree", device=PROFILE, preprocess=DIGITS)
    assert from_tree.n == from_npz.n == 540 and from_tree.top1 == from_npz.top1


def test_deploy_streams_the_evaluation_data(digit_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Deploy scores each of the 20 batches before it reads the next: the data are never one array."""
    monkeypatch.syspath_prepend(str(digit_files))
    monkeypatch.delitem(sys.modules, "tracked_reader", raising=False)
    import tracked_reader  # the module the entry point will import

    def run_program(*args, **kwargs):
        tracked_reader.EVENTS.append("run")
        return executor.run_program(*args, **kwargs)

    monkeypatch.setattr(evaluate, "run_program", run_program)
    got = _accuracy("tracked_reader:batches", tmp_path / "out", calib=str(digit_files / "test.npz"))
    assert got["n"] == 540
    events = tracked_reader.EVENTS
    scoring = events[len(events) - events[::-1].index("call"):]  # the last pass: evaluation
    assert scoring.count("yield") == 20 and ["yield", "yield"] not in [scoring[i:i + 2] for i in range(len(scoring))]
