"""Train the built-in example (``DigitsDSCNN``) and write ``digits_dscnn.npz`` beside ``digits.py``.

    python -m edgeopt.examples.train_digits [--out PATH]

Deterministic: fixed seeds, one thread, deterministic torch algorithms, so rerunning reproduces the
shipped weights. Trains on the train split only; the test split is reported, never used for choices.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeopt.examples.digits import (
    MEAN,
    META_PREFIX,
    STD,
    WEIGHTS_FILE,
    DigitsDSCNN,
    example_data,
)
from edgeopt.fileio import atomic_write_bytes

SEED = 0
EPOCHS = 100
BATCH_SIZE = 64
LR = 3e-3
WEIGHT_DECAY = 1e-4
# Value of a blank (0) pixel after preprocessing: what the shift augmentation pads with.
BLANK = -MEAN / STD


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in each direction, filling with blank pixels.

    Handwriting is not centred exactly, so small shifts are the augmentation that helps on 8x8 digits.
    """
    n, _, h, w = x.shape
    padded = F.pad(x[:, 0], (max_shift,) * 4, value=BLANK)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, cols][:, None]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (switched to eval mode) on ``(x, y)``."""
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def train(epochs: int = EPOCHS, seed: int = SEED) -> tuple[DigitsDSCNN, float, float]:
    """Train a fresh ``DigitsDSCNN`` on the train split.

    Args:
        epochs: passes over the 1257 training images.
        seed: seeds initialisation, shuffling and augmentation.

    Returns:
        ``(model, train_accuracy, test_accuracy)`` with the model in eval mode.
    """
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = example_data("train")
    x_test, y_test = example_data("test")
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)

    model = DigitsDSCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(xt) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=epochs * steps_per_epoch)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            loss = F.cross_entropy(model(random_shift(xt[idx], generator)), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval(), accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)


def weights_bytes(model: nn.Module, meta: dict[str, float]) -> bytes:
    """The state dict (and ``meta`` under ``META_PREFIX``) as a compressed ``.npz`` file's bytes."""
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    arrays.update({META_PREFIX + k: np.asarray(v, dtype=np.float64) for k, v in meta.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(WEIGHTS_FILE))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()

    # One thread makes the float reductions, hence the weights, identical on every machine.
    torch.set_num_threads(1)
    start = time.perf_counter()
    model, train_acc, test_acc = train(args.epochs)
    seconds = time.perf_counter() - start
    data = weights_bytes(model, {"train_accuracy": train_acc, "test_accuracy": test_acc})
    atomic_write_bytes(args.out, data)
    print(f"train accuracy {train_acc:.2%}  test accuracy {test_acc:.2%}  ({seconds:.1f} s)")
    print(f"wrote {args.out} ({len(data) / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
