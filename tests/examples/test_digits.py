"""The built-in example model: it loads, runs, and is as accurate as its training script reported."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeopt.examples.digits import (
    DigitsDSCNN,
    example_data,
    example_input,
    example_metadata,
    load_example_model,
)


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def test_example_loads_in_eval_mode_and_runs() -> None:
    model = load_example_model()
    assert isinstance(model, DigitsDSCNN)
    assert not model.training
    x = example_input()
    assert x.shape == (1, 1, 8, 8) and x.dtype == torch.float32
    with torch.no_grad():
        assert model(x).shape == (1, 10)


def test_batchnorm_statistics_are_trained() -> None:
    # The pipeline folds BN: default running stats (mean 0, var 1) would make that a no-op test.
    bns = [m for m in load_example_model().modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 5
    for bn in bns:
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


@pytest.mark.parametrize(("split", "n"), [("train", 1257), ("test", 540)])
def test_example_data_split(split: str, n: int) -> None:
    x, y = example_data(split)  # type: ignore[arg-type]
    assert x.shape == (n, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    # Stratified: every class appears in proportion (load_digits has 174..183 images per class).
    counts = np.bincount(y, minlength=10)
    assert counts.min() >= 0.09 * n and counts.max() <= 0.11 * n


def test_splits_are_disjoint_and_deterministic() -> None:
    x_train, _ = example_data("train")
    x_test, y_test = example_data("test")
    x_again, y_again = example_data("test")
    assert np.array_equal(x_test, x_again) and np.array_equal(y_test, y_again)
    train_rows = {row.tobytes() for row in x_train}
    assert not any(row.tobytes() in train_rows for row in x_test)


def test_unknown_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        example_data("val")  # type: ignore[arg-type]


def test_fp32_accuracy_matches_training_report() -> None:
    model = load_example_model()
    x, y = example_data("test")
    acc = _accuracy(model, x, y)
    reported = example_metadata()["test_accuracy"]
    assert abs(acc - reported) <= 0.005
    assert acc >= 0.93


def test_the_example_needs_no_scikit_learn() -> None:
    # The data ship as digits_data.npz (benchmarks/make_digits_data.py): loading the example imports no sklearn.
    code = ("import sys; from edgeopt.pipeline.frontend.load import load; m = load(None); "
            "assert m.data[0].shape == (540, 1, 8, 8); assert 'sklearn' not in sys.modules, 'sklearn imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
