"""Where ../shared/data is (real models and labelled data), and loaders for what benchmarks use from it.

Benchmarks skip cleanly when it is absent: a user's checkout has no ../shared.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("EDGEOPT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CIFAR_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
CIFAR_STD = np.array([0.229, 0.224, 0.225], np.float32)


def require(*relative: str) -> list[Path]:
    """The paths under the shared data folder, or exit 0 with a 'skipped' line when any is missing."""
    paths = [DATA / r for r in relative]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not found (needs ../shared/data)")
        sys.exit(0)
    return paths


def cifar10_nchw(path: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 uint8 NHWC images → float32 NCHW normalised as the ResNet checkpoints expect, + labels."""
    with np.load(path) as npz:
        x, y = npz["x"][:limit], npz["y"][:limit]
    x = (x.astype(np.float32) / 255.0 - CIFAR_MEAN) / CIFAR_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y.astype(np.int64)
