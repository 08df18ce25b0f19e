"""The built-in example: a small depthwise-separable CNN for scikit-learn's 8x8 handwritten digits.

It runs when ``edgeopt deploy`` is given no model. The network is a miniature MobileNet: a stem conv, a
depthwise-separable block that halves the resolution, a second one with a residual add, global average
pooling and a linear head. Every BatchNorm has trained running statistics, so folding them is a real
test, and the ReLU6s are written three different ways (an ``nn.ReLU6`` module, ``F.relu6`` and
``torch.clamp``) because real models mix them and the optimizer must recognise all three.

The data are scikit-learn's ``load_digits`` (1797 images, 10 classes; the test set of the UCI optdigits
data, CC BY 4.0), shipped here as ``digits_data.npz`` (a few KB, its fixed train/test split, written once
by ``python -m benchmarks.make_digits_data``), so nothing is downloaded and scikit-learn is not needed.
The weights (``digits_dscnn.npz``) are written by ``python -m edgeopt.examples.train_digits``.
"""
from __future__ import annotations

import io
from importlib import resources
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_FILE = "digits_dscnn.npz"
DATA_FILE = "digits_data.npz"
# Keys of the weights file that are not tensors of the state dict: what the training script measured.
META_PREFIX = "meta."

# load_digits pixels are integers 0..16; dividing by 16 gives [0, 1]. MEAN and STD are that scaled
# pixel's mean and standard deviation over the train split (1257 images), fixed here so that the
# preprocessing never depends on which data a caller happens to hold.
PIXEL_MAX = 16.0
MEAN = 0.3056
STD = 0.3761

NUM_CLASSES = 10
# The held-out split: fixed seed and stratified, so every run reports accuracy on the same 540 images
# (made once by benchmarks/make_digits_data.py with scikit-learn's train_test_split).
TEST_SIZE = 0.3
SPLIT_SEED = 0


class DigitsDSCNN(nn.Module):
    """Stem conv, two depthwise-separable blocks (the second residual), global average pool, linear head.

    Input ``[N, 1, 8, 8]`` float32 preprocessed as in :func:`preprocess`; output ``[N, 10]`` logits.
    Shapes: 8x8x16 (stem) -> 4x4x32 (block 1, stride-2 depthwise) -> 4x4x32 (block 2 + skip) -> 32 -> 10.
    """

    def __init__(self, width: int = 16, expanded: int = 32) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.stem_act = nn.ReLU6()

        self.dw1 = nn.Conv2d(width, width, 3, stride=2, padding=1, groups=width, bias=False)
        self.dw1_bn = nn.BatchNorm2d(width)
        self.pw1 = nn.Conv2d(width, expanded, 1, bias=False)
        self.pw1_bn = nn.BatchNorm2d(expanded)

        self.dw2 = nn.Conv2d(expanded, expanded, 3, padding=1, groups=expanded, bias=False)
        self.dw2_bn = nn.BatchNorm2d(expanded)
        self.dw2_act = nn.ReLU6()
        self.pw2 = nn.Conv2d(expanded, expanded, 1, bias=False)
        self.pw2_bn = nn.BatchNorm2d(expanded)

        self.head = nn.Linear(expanded, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))
        x = F.relu6(self.dw1_bn(self.dw1(x)))
        x = torch.clamp(self.pw1_bn(self.pw1(x)), 0.0, 6.0)
        skip = x
        x = self.dw2_act(self.dw2_bn(self.dw2(x)))
        # Linear bottleneck: no activation between the pointwise BN and the add, as in MobileNetV2.
        x = self.pw2_bn(self.pw2(x)) + skip
        x = F.relu6(x)
        x = x.mean((2, 3))
        return self.head(x)


def preprocess(images: np.ndarray) -> np.ndarray:
    """Raw ``load_digits`` images (``[N, 8, 8]``, values 0..16) to model input ``[N, 1, 8, 8]`` float32."""
    x = (np.asarray(images, dtype=np.float32) / PIXEL_MAX - MEAN) / STD
    return x[:, None, :, :].astype(np.float32)


def example_data(split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """One side of the fixed stratified 70/30 split of ``load_digits`` (read from ``digits_data.npz``).

    The test split is the held-out set the pipeline reports accuracy on; calibration uses the train split.

    Args:
        split: ``"train"`` (1257 images) or ``"test"`` (540 images).

    Returns:
        ``(x, y)``: x float32 ``[N, 1, 8, 8]`` preprocessed, y int64 ``[N]`` class labels 0..9.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    with np.load(io.BytesIO(resources.files(__package__).joinpath(DATA_FILE).read_bytes())) as npz:
        images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    return preprocess(images), labels.astype(np.int64)


def _read_weights() -> dict[str, np.ndarray]:
    data = resources.files(__package__).joinpath(WEIGHTS_FILE).read_bytes()
    with np.load(io.BytesIO(data)) as npz:
        return {k: npz[k] for k in npz.files}


def load_example_model() -> nn.Module:
    """The trained :class:`DigitsDSCNN` in eval mode, weights read from the packaged ``digits_dscnn.npz``."""
    arrays = _read_weights()
    state = {k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith(META_PREFIX)}
    model = DigitsDSCNN()
    model.load_state_dict(state)
    return model.eval()


def example_metadata() -> dict[str, float]:
    """What the training script measured when it wrote the weights (e.g. ``test_accuracy``, in [0, 1])."""
    return {
        k.removeprefix(META_PREFIX): float(v) for k, v in _read_weights().items() if k.startswith(META_PREFIX)
    }


def example_input() -> torch.Tensor:
    """One preprocessed test image, ``[1, 1, 8, 8]`` float32: the input used to trace/export the model."""
    x, _ = example_data("test")
    return torch.from_numpy(x[:1].copy())
