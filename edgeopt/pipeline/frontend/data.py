"""Labelled data and calibration sets: ``.npz`` files with ``x`` (model-ready inputs) and optional ``y``."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from edgeopt.errors import DataError
from edgeopt.ir import TensorInfo

log = logging.getLogger(__name__)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``, which must hold an ``x``.

    Raises:
        DataError: missing or unreadable file, or no ``x``.
    """
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"'{path}' is not a readable .npz file: {exc}") from exc
    if "x" not in arrays:
        raise DataError(f"'{path}' has no array 'x' (found: {', '.join(arrays) or 'none'}); "
                        "save the model inputs as x, e.g. np.savez(path, x=x, y=y)")
    return arrays


def load_npz(path: str | Path, model_input: TensorInfo, *, labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``x`` (and ``y`` when ``labels``) from ``path`` and check them against the model's input.

    ``x`` must be ``[N, *input_shape[1:]]`` and numeric; it is returned as float32. ``y``, when present,
    must be N integer class labels.

    Raises:
        DataError: missing or unreadable file, no ``x``, wrong shape or dtype, labels that do not fit.
    """
    path = Path(path)
    arrays = read_npz(path)
    x = arrays["x"]
    expected = tuple(model_input.shape[1:])
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise DataError(f"'{path}': x has shape {tuple(x.shape)} but the model input '{model_input.name}' "
                        f"needs [N, {', '.join(map(str, expected))}]")
    if not np.issubdtype(x.dtype, np.number) or len(x) == 0:
        raise DataError(f"'{path}': x must be a non-empty numeric array, got {x.dtype} with {len(x)} samples")
    y = arrays.get("y") if labels else None
    if y is not None:
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"'{path}': y must hold {len(x)} integer class labels, got {y.dtype} {tuple(y.shape)}")
        y = y.astype(np.int64)
    return x.astype(np.float32), y
