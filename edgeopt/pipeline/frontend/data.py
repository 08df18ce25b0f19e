"""Labelled data and calibration sets: ``.npz`` files of model-ready inputs and optional labels ``y``.

A model with one input reads ``x`` (or the input's own name); a model with several reads one array per
input name. Several inputs become one structured array with a field per input name (``ir.input_arrays``),
so that every stage counts and slices samples of all inputs at once. Float inputs are read as float32;
integer inputs (token ids, attention masks) keep the model's declared integer dtype.

The arrays of an ``.npz`` saved with ``np.savez`` (members stored, not compressed) are memory-mapped
(``read_npz``): a 50,000-image validation set is read a batch at a time by whoever slices it, never held
whole. Members of ``np.savez_compressed`` files cannot be mapped and are read whole.
"""
from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeopt.errors import DataError, first_line
from edgeopt.ir import TensorInfo

log = logging.getLogger(__name__)

LABELS = "y"
NPY_MAGIC = b"\x93NUMPY"
FINITE_CHUNK = 1024  # samples checked for NaN/Inf at a time


def read_checked(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``, read and checked for what needs no model: the format (not a
    .npy, a zip, not truncated, no pickled arrays) and finite values in every float array but ``y``, so
    that a bad file fails before the model is loaded. Pass the result to ``load_npz(arrays=...)``.

    Raises:
        DataError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    arrays = read_npz(path, ())
    for key, a in arrays.items():
        if key != LABELS and np.issubdtype(a.dtype, np.number) and a.ndim and len(a):
            check_finite(path, key, a)
    return arrays


def _check_magic(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist" if not path.exists() else
                        f"data file '{path}' is a folder; give an .npz file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == NPY_MAGIC:
        raise DataError(f"'{path}' is a .npy file (one array); save an .npz: np.savez(path, x=x, y=y)")
    if magic[:2] != b"PK":
        raise DataError(f"'{path}' is not an .npz (zip) file ({'empty' if not magic else 'other content'}); "
                        "save the data with np.savez(path, x=x, y=y)")


def read_npz(path: Path, keys: Sequence[str] = ("x",)) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``, which must hold one of ``keys`` (if any are given).

    Raises:
        DataError: missing or unreadable file, or none of ``keys``.
    """
    _check_magic(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: _mapped(path, npz.zip.getinfo(f"{k}.npy")) if f"{k}.npy" in npz.zip.namelist() else None
                      for k in npz.files}
            arrays = {k: npz[k] if a is None else a for k, a in arrays.items()}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"'{path}' holds pickled (object) arrays, which edgeopt does not load; save numeric "
                            "arrays: np.savez(path, x=x.astype(np.float32), y=y)") from None
        raise DataError(f"'{path}' is not a readable .npz file (corrupt or truncated?): {first_line(exc)}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file (corrupt or truncated?): {first_line(exc)}") from None
    _require(path, arrays, keys)
    return arrays


def _mapped(path: Path, member: zipfile.ZipInfo) -> np.ndarray | None:
    """The ``.npy`` member of the zip at ``path`` memory-mapped, when it is stored uncompressed and
    unencrypted and holds a non-empty numeric array; else None (read it whole)."""
    if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 1:
        return None
    with open(path, "rb") as f:
        f.seek(member.header_offset)
        local = f.read(30)  # the local file header: its name and extra field lengths are at bytes 26 and 28
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"member {member.filename}: bad local header")
        f.seek(member.header_offset + 30 + int.from_bytes(local[26:28], "little")
               + int.from_bytes(local[28:30], "little"))
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    if not shape or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _require(path: Path, arrays: dict[str, np.ndarray], keys: Sequence[str]) -> None:
    if keys and not any(k in arrays for k in keys):
        raise DataError(f"'{path}' has no array {' or '.join(map(repr, keys))} (found: {', '.join(arrays) or 'none'}); "
                        "save the model inputs as np.savez(path, x=x, y=y), or one array per input name")


def load_npz(path: str | Path, model_inputs: Sequence[TensorInfo], *, labels: bool,
             arrays: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the inputs (and ``y`` when ``labels``) from ``path`` (or take ``arrays``, its content already read
    by ``read_checked``) and check them against the model's inputs.

    One model input: the array ``x`` (or one named as the input). Several: one array per input name,
    nothing else but ``y``. Each must be ``[N, *input_shape[1:]]`` with the same N; a float input takes
    any numeric array (returned as float32), an integer input an integer array (returned in the model's
    dtype). ``y``, when present, must be N integer class labels.

    Returns:
        The inputs (one array, or a structured array with a field per input name: ``ir.input_arrays``)
        and the labels.

    Raises:
        DataError: missing or unreadable file, a missing or extra array, wrong shape or dtype, labels that
            do not fit; one line naming the input and what it needs.
    """
    path = Path(path)
    names = [t.name for t in model_inputs]
    single = len(model_inputs) == 1
    keys = ("x", names[0]) if single else ()  # several: the names are checked below
    if arrays is None:
        arrays = read_npz(path, keys)
    _require(path, arrays, keys)
    if single:
        key = "x" if "x" in arrays else names[0]
        given = {names[0]: arrays[key]}
    else:
        missing = [n for n in names if n not in arrays]
        extra = sorted(set(arrays) - set(names) - {LABELS})
        if missing or extra:
            raise DataError(f"'{path}': the model's inputs are {', '.join(names)}; "
                            + (f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}")
                            + " (save one array per input name, plus y for labels)")
        given = {n: arrays[n] for n in names}
    checked = [_checked(path, "x" if single and "x" in arrays else t.name, given[t.name], t) for t in model_inputs]
    counts = {len(a) for a in checked}
    if len(counts) > 1:
        raise DataError(f"'{path}': the inputs hold different sample counts "
                        f"({', '.join(f'{n}: {len(a)}' for n, a in zip(names, checked))})")
    x = checked[0] if single else _structured(names, checked)
    y = arrays.get(LABELS) if labels else None
    if y is not None:
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"'{path}': y must hold {len(x)} integer class labels, got {y.dtype} {tuple(y.shape)}")
        y = y.astype(np.int64)
    return x, y


def _checked(path: Path, key: str, a: np.ndarray, model_input: TensorInfo) -> np.ndarray:
    expected = tuple(model_input.shape[1:])
    dims = ", ".join(map(str, expected))
    if a.ndim != len(expected) + 1 or tuple(a.shape[1:]) != expected:
        raise DataError(f"'{path}': {key} has shape {tuple(a.shape)} but the model input '{model_input.name}' "
                        f"needs [N{', ' if dims else ''}{dims}]")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating) or len(a) == 0:
        raise DataError(f"'{path}': {key} must be a non-empty array of real numbers, got {a.dtype} with {len(a)} "
                        "samples")
    if model_input.is_float:
        check_finite(path, key, a)
        return a.astype(np.float32)
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"'{path}': {key} is {a.dtype} but the model input '{model_input.name}' is "
                        f"{model_input.dtype} (token ids, masks): save integers")
    return a.astype(model_input.dtype)


def check_finite(path: Path, key: str, a: np.ndarray) -> None:
    """Refuse NaN and Inf (and values beyond float32) in the float array ``a``.

    Raises:
        DataError: how many values are not finite and the first sample holding one.
    """
    if not np.issubdtype(a.dtype, np.floating):
        return
    count, first = 0, None
    for start in range(0, len(a), FINITE_CHUNK):  # in chunks: ``a`` may be a memory-mapped file
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(np.asarray(a[start:start + FINITE_CHUNK], np.float32))
        if bad.any():
            count += int(bad.sum())
            first = start + int(np.argmax(bad.reshape(len(bad), -1).any(1))) if first is None else first
    if count:
        raise DataError(f"'{path}': {key} holds {count} NaN/Inf value(s) (or beyond float32), the first in "
                        f"sample {first}; replace or drop those samples")


def check_labels(path: str | Path, y: np.ndarray | None, classes: int) -> None:
    """Refuse labels outside ``[0, classes)``: top-1 would be scored against classes the model cannot output.

    Raises:
        DataError: the label range found and the model's output size.
    """
    if y is None or not len(y):
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise DataError(f"'{path}': labels y range over {low}..{high} but the model's first output has {classes} "
                        f"classes (0..{classes - 1}); give class indices of that output")


def _structured(names: Sequence[str], arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One structured array of N samples with a field per input (its per-sample shape and dtype)."""
    dtype = np.dtype([(n, a.dtype, a.shape[1:]) for n, a in zip(names, arrays)])
    out = np.empty(len(arrays[0]), dtype)
    for n, a in zip(names, arrays):
        out[n] = a
    return out
