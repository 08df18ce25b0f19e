"""Data sources for ``--data`` and ``--calib``: data as users keep it, read in batches as it is needed.

- ``.npz``: model-ready arrays ``x`` (or one per input name) and labels ``y`` (``frontend.data``);
- ``.npy``: one array of model-ready inputs, memory-mapped (no labels);
- an image folder: a class-per-folder tree (``root/<class>/<image>``, classes numbered in sorted order as
  ImageNet's and torchvision's ``ImageFolder``), a flat folder of images (no labels), or a ``.txt`` list of
  ``path label`` (or ``path, label``) lines (paths relative to the list's folder; labels optional), each
  image preprocessed by a ``Preprocess`` (``frontend.preprocess``);
- a Python entry point ``package.module:function`` or ``path/to/file.py:function``: a function of no
  arguments returning an iterable of ``(x, y)`` or ``x`` batches (numpy arrays or anything ``np.asarray``
  takes, e.g. torch tensors; several inputs: a dict of arrays by input name). It is called again for
  every pass over the data, so a generator function works.

Every source is checked when it is opened (the file exists and has the right format, the folder holds
images, the entry point imports), before the model is loaded; each batch is checked against the model's
inputs as it is read (``checked_batches``: the same checks and messages as an ``.npz``).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import DataError, first_line
from edgeopt.ir import TensorInfo
from edgeopt.pipeline.frontend.data import (
    LABELS,
    NPY_MAGIC,
    check_finite,
    load_npz,
    read_checked,
)
from edgeopt.pipeline.frontend.preprocess import Preprocess, parse_preprocess

BATCH = 64
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
LIST_LINE = re.compile(r"^(.*?)\s*[,\s]\s*(-?\d+)$")  # "path label" or "path, label"
RawBatch = tuple[np.ndarray | dict[str, np.ndarray], np.ndarray | None]


class DataSource:
    """Batches of model inputs (one array, or a dict by input name) and their labels (or None), read when
    asked; ``length`` is the sample count where the source knows it (None: an entry point)."""

    name: str
    """The source as the user gave it, for messages."""

    @property
    def length(self) -> int | None:
        """The number of samples, None when unknown until read."""
        return None

    def batches(self, size: int = BATCH) -> Iterator[RawBatch]:
        """Yield the samples in batches of about ``size`` (an entry point's batches as it yields them)."""
        raise NotImplementedError

    def labels(self) -> np.ndarray | None:
        """Every sample's label (None: unlabelled), read without the inputs where the source can (arrays,
        image lists); by default from one pass over the batches."""
        ys = [y for _, y in self.batches()]
        return None if not ys or ys[0] is None else np.concatenate(ys)

    def part(self, start: int, stop: int) -> DataSource:
        """Samples ``start`` to ``stop`` as a source of their own; by default the batches from the start,
        cut to the part (the samples before it are read and dropped)."""
        return PartSource(self, start, stop)


class ArraySource(DataSource):
    """Arrays already in memory or memory-mapped (an ``.npz`` read by ``data.read_checked``, an ``.npy``)."""

    def __init__(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        self.name, self.arrays = name, dict(arrays)

    @property
    def length(self) -> int | None:
        """The first non-label array's sample count."""
        return next((len(a) for k, a in self.arrays.items() if k != LABELS and a.ndim), 0)

    def labels(self) -> np.ndarray | None:
        """The ``y`` array, if any."""
        return self.arrays.get(LABELS)

    def part(self, start: int, stop: int) -> DataSource:
        """Slices of every array (views)."""
        return ArraySource(self.name, {k: a[start:stop] if a.ndim else a for k, a in self.arrays.items()})

    def batches(self, size: int = BATCH) -> Iterator[RawBatch]:
        """Slices of every array (views: a memory-mapped file is read slice by slice)."""
        inputs = {k: a for k, a in self.arrays.items() if k != LABELS}
        labels = self.arrays.get(LABELS)
        for i in range(0, self.length or 0, size):
            x = {k: a[i:i + size] for k, a in inputs.items()}
            yield (x["x"] if list(x) == ["x"] else x), None if labels is None else labels[i:i + size]


class ImageSource(DataSource):
    """Image files with optional class labels, decoded and preprocessed batch by batch."""

    def __init__(self, name: str, items: Sequence[tuple[Path, int | None]], preprocess: Preprocess) -> None:
        self.name, self.items, self.preprocess = name, list(items), preprocess

    @property
    def length(self) -> int | None:
        """The number of images."""
        return len(self.items)

    def labels(self) -> np.ndarray | None:
        """The class labels of the images (from their folders or the list), no image decoded."""
        labels = [label for _, label in self.items]
        return None if not labels or labels[0] is None else np.asarray(labels, np.int64)

    def part(self, start: int, stop: int) -> DataSource:
        """The images ``start`` to ``stop`` (only they are decoded)."""
        return ImageSource(self.name, self.items[start:stop], self.preprocess)

    def batches(self, size: int = BATCH) -> Iterator[RawBatch]:
        """Decode ``size`` images at a time into one ``[B, ...]`` array (labels: None when unlabelled)."""
        for i in range(0, len(self.items), size):
            part = self.items[i:i + size]
            x = np.stack([self._sample(path) for path, _ in part])
            labels = [label for _, label in part]
            yield x, None if labels[0] is None else np.asarray(labels, np.int64)

    def _sample(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                return self.preprocess(image)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataError(f"'{path}' (in {self.name}) is not a readable image: {first_line(exc)}") from None


class EntryPointSource(DataSource):
    """A user function returning an iterable of ``(x, y)`` or ``x`` batches, called for each pass."""

    def __init__(self, name: str, function: Callable[[], Iterable[Any]]) -> None:
        self.name, self.function = name, function

    def batches(self, size: int = BATCH) -> Iterator[RawBatch]:
        """The function's batches as numpy arrays (``size`` is the function's own choice)."""
        try:
            items = iter(self.function())
        except TypeError:
            raise DataError(f"data entry point '{self.name}' returned no iterable; return (or yield) batches "
                            "x or (x, y)") from None
        except Exception as exc:
            raise DataError(f"data entry point '{self.name}' failed: {first_line(exc)}") from exc
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            except Exception as exc:
                raise DataError(f"data entry point '{self.name}' failed while iterating: {first_line(exc)}") from exc
            x, y = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
            yield _array_batch(self.name, x), None if y is None else _as_array(self.name, "y", y)


class PartSource(DataSource):
    """Samples ``start`` to ``stop`` of a source that cannot seek (an entry point): its batches from the
    start, those before the part dropped, each batch cut to the part."""

    def __init__(self, source: DataSource, start: int, stop: int) -> None:
        self.name, self.source, self.start, self.stop = source.name, source, start, stop

    @property
    def length(self) -> int | None:
        """The part's sample count."""
        return self.stop - self.start

    def batches(self, size: int = BATCH) -> Iterator[RawBatch]:
        """The source's batches cut to the part; stops reading at its end."""
        seen = 0
        for x, y in self.source.batches(size):
            n = len(next(iter(x.values())) if isinstance(x, dict) else x)
            low, high = max(self.start - seen, 0), min(self.stop - seen, n)
            seen += n
            if low < high:
                cut = {k: a[low:high] for k, a in x.items()} if isinstance(x, dict) else x[low:high]
                yield cut, None if y is None else y[low:high]
            if seen >= self.stop:
                return


def open_source(spec: str | Path | DataSource, preprocess: str | Path | Mapping[str, Any] | Preprocess | None = None
                ) -> DataSource:
    """The data source ``spec`` names (module docstring), checked as far as it can be without the model.

    Args:
        spec: an ``.npz`` or ``.npy`` file, an image folder, a ``.txt`` image list, an entry point
            ``module:function`` or ``file.py:function``, or a DataSource (returned as it is).
        preprocess: how images become samples (``frontend.preprocess.parse_preprocess``); only for image
            sources.

    Raises:
        DataError: one line naming the source and what is wrong with it.
    """
    if isinstance(spec, DataSource):
        return spec
    path = Path(spec)
    text = str(spec)
    if is_image_source(path):
        return ImageSource(text, _tree(path) if path.is_dir() else _image_list(path), parse_preprocess(preprocess))
    if preprocess is not None:
        raise DataError(f"--preprocess applies to image folders and image lists, not to '{text}'; drop it, or "
                        "preprocess in the data source itself")
    if path.suffix == ".npy":
        return ArraySource(text, {"x": _memory_mapped(path)})
    if ":" in text and not path.exists():
        return EntryPointSource(text, _entry_point(text))
    return ArraySource(text, read_checked(path))


def open_sources(specs: Sequence[str | Path | None], preprocess: str | Path | Mapping[str, Any] | None = None
                 ) -> dict[str, DataSource]:
    """Each given spec (None skipped) opened by ``open_source``, by ``str(spec)``; ``preprocess`` goes to the
    image sources among them.

    Raises:
        DataError: a source that cannot be opened, or ``preprocess`` given without an image source.
    """
    given = [s for s in specs if s is not None]
    images = [s for s in given if is_image_source(s)]
    if preprocess is not None and not images:
        raise DataError(f"--preprocess applies to image folders and image lists, and no data source is one "
                        f"({', '.join(map(str, given)) or 'none given'}); drop it or give --data IMAGE_FOLDER")
    return {str(s): open_source(s, preprocess if s in images else None) for s in given}


def is_image_source(spec: str | Path) -> bool:
    """Whether ``spec`` names an image folder or an image list (``.txt``)."""
    return Path(spec).is_dir() or Path(spec).suffix == ".txt"


def checked_batches(source: DataSource, model_inputs: Sequence[TensorInfo], *, labels: bool,
                    size: int = BATCH) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The source's batches checked against the model's inputs (``data.load_npz``: shapes, dtypes, finite
    values, integer labels), as one array or a structured array of several inputs, and their labels.

    Raises:
        DataError: a batch that does not fit, or labels on some batches but not on others.
    """
    labelled: bool | None = None
    for x, y in source.batches(size):
        arrays = dict(x) if isinstance(x, dict) else {"x": x}
        if y is not None:
            arrays[LABELS] = y
        if labels and labelled is not None and labelled != (y is not None):
            raise DataError(f"'{source.name}': some batches have labels and some do not; give labels for all or none")
        labelled = y is not None
        yield load_npz(source.name, model_inputs, labels=labels, arrays=arrays)


def read_all(source: DataSource, model_inputs: Sequence[TensorInfo], *, labels: bool,
             limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The source's first ``limit`` samples (all: None) as one checked array, and their labels.

    Raises:
        DataError: a batch does not fit the model, or the source holds no samples.
    """
    if isinstance(source, ArraySource):  # one slice, checked at once
        arrays = source.arrays if limit is None else {k: a[:limit] if a.ndim else a for k, a in source.arrays.items()}
        return load_npz(source.name, model_inputs, labels=labels, arrays=arrays)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray | None] = []
    count = 0
    for x, y in checked_batches(source, model_inputs, labels=labels):
        take = len(x) if limit is None else min(len(x), limit - count)
        xs.append(x[:take])
        ys.append(None if y is None else y[:take])
        count += take
        if limit is not None and count >= limit:
            break
    if not xs:
        raise DataError(f"'{source.name}' holds no samples")
    return np.concatenate(xs), None if ys[0] is None else np.concatenate(ys)


def sized_batches(source: DataSource, size: int) -> Iterator[dict[str, np.ndarray]]:
    """The source's batches as an ``.npz`` would hold them (``x`` or one array per input name, and ``y`` when
    labelled), cut or joined to ``size`` samples each (the last one shorter), for a reader that checks
    them against its model itself (``workflows.emulate``); one batch is held at a time.

    Raises:
        DataError: the batches do not all hold the same arrays, or not one sample count.
    """
    held: dict[str, list[np.ndarray]] = {}
    count = 0
    for x, y in source.batches(size):
        batch = dict(x) if isinstance(x, dict) else {"x": x}
        if y is not None:
            batch[LABELS] = y
        if (held or count) and set(batch) != set(held):
            raise DataError(f"'{source.name}': the batches do not all hold the same arrays ({', '.join(sorted(batch))} "
                            f"after {', '.join(sorted(held))}); give every batch the same inputs, and labels on all")
        counts = {len(a) for a in batch.values()}
        if len(counts) != 1:
            raise DataError(f"'{source.name}': the arrays of a batch hold different sample counts "
                            f"({', '.join(f'{k}: {len(a)}' for k, a in batch.items())})")
        n, start = counts.pop(), 0
        while start < n:
            take = min(size - count, n - start)
            for key, value in batch.items():
                held.setdefault(key, []).append(value[start:start + take])
            start, count = start + take, count + take
            if count == size:
                yield _joined(source.name, held)
                held, count = {key: [] for key in held}, 0
    if count:
        yield _joined(source.name, held)


def _joined(name: str, held: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    try:
        return {key: parts[0] if len(parts) == 1 else np.concatenate(parts) for key, parts in held.items()}
    except ValueError as exc:
        raise DataError(f"'{name}': the batches do not fit together: {first_line(exc)}") from None


def _memory_mapped(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != NPY_MAGIC:
        raise DataError(f"'{path}' is not a .npy file; save the inputs with np.save(path, x)")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"'{path}' is not a readable .npy of numbers (pickled or corrupt?): {first_line(exc)}") from None
    if x.dtype.hasobject or x.dtype.names is not None or x.ndim == 0:
        raise DataError(f"'{path}' holds {x.dtype} values shaped {x.shape}; save numeric inputs [N, ...]: "
                        "np.save(path, x.astype(np.float32))")
    for i in range(0, len(x), BATCH * 16):  # slice by slice: the map is read once, never held
        check_finite(path, "x", x[i:i + BATCH * 16])
    return x


def _tree(root: Path) -> list[tuple[Path, int | None]]:
    """A class-per-folder tree (labels: the sorted class folder's index), or a flat folder of images."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes:
        items = [(f, label) for label, name in enumerate(classes) for f in _images(root / name)]
    else:
        items = [(f, None) for f in _images(root)]
    if not items:
        raise DataError(f"'{root}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); give a class-per-folder "
                        "tree root/<class>/<image>, a folder of images, or an .npz file")
    return items


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def _image_list(path: Path) -> list[tuple[Path, int | None]]:
    """``path label`` (or ``path, label``) lines (``#`` comments and blank lines skipped); paths relative to the
    list's folder."""
    if not path.is_file():
        raise DataError(f"image list '{path}' does not exist")
    items: list[tuple[Path, int | None]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        labelled = LIST_LINE.match(line)
        image = path.parent / (labelled.group(1) if labelled else line)
        if not image.is_file():
            raise DataError(f"'{path}' line {number}: image '{image}' does not exist (paths are relative to the list)")
        items.append((image, int(labelled.group(2)) if labelled else None))
    if not items:
        raise DataError(f"image list '{path}' names no images; write one 'path label' line per image")
    if len({label is None for _, label in items}) > 1:
        raise DataError(f"'{path}': some lines have a label and some do not; give 'path label' on every line")
    return items


def _entry_point(spec: str) -> Callable[[], Iterable[Any]]:
    """``module:function`` or ``file.py:function``, imported now so that a typo fails before the model loads."""
    where, _, name = spec.rpartition(":")
    sys.path.insert(0, os.getcwd())
    try:
        if where.endswith(".py"):
            if not Path(where).is_file():
                raise DataError(f"data entry point '{spec}': file '{where}' does not exist")
            module_spec = importlib.util.spec_from_file_location(Path(where).stem, where)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"data entry point '{spec}' cannot be imported: {first_line(exc)}") from exc
    finally:
        sys.path.remove(os.getcwd())
    function = getattr(module, name, None)
    if not callable(function):
        raise DataError(f"data entry point '{spec}': '{where}' has no function '{name}'")
    return function


def _array_batch(name: str, x: Any) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        return {str(k): _as_array(name, str(k), v) for k, v in x.items()}
    return _as_array(name, "x", x)


def _as_array(name: str, key: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"data entry point '{name}': {key} is a {type(value).__name__}, not an array: "
                        f"{first_line(exc)}") from None
