"""Evaluation samples read in chunks: how a data set of any size reaches the recipe's scoring and deploy's
accuracy without being held whole.

``Samples`` is a range of a data source's samples in the graph's layout. Its count and labels (one integer
a sample: kept) are known when it is made; its inputs are read chunk by chunk each time a pass asks for
them (``chunks``), and only a head asked for by size (``head``: the recipe's screening subset) is ever one
array. ``split`` cuts it in two without reading anything: each part reads only its own samples where the
source can seek (arrays and memory-mapped ``.npy``: slices; image lists: their files), an entry point from
its start, skipping the samples before the part (``sources.DataSource.part``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edgeopt.errors import DataError
from edgeopt.ir import TensorInfo
from edgeopt.pipeline.frontend.sources import BATCH, DataSource, checked_batches

Reader = Callable[[int, int, int], Iterable[np.ndarray]]
"""``read(start, stop, size)``: the inputs of samples ``start`` to ``stop`` in batches of about ``size``."""


@dataclass(frozen=True)
class Samples:
    """Samples ``start`` to ``stop`` of a source read by ``read`` (``Reader``), and their labels (or None)."""

    read: Reader
    start: int
    stop: int
    labels: np.ndarray | None

    def __len__(self) -> int:
        return self.stop - self.start

    def chunks(self, size: int = BATCH) -> Iterator[np.ndarray]:
        """The inputs in order, ``size`` samples at a time (the last chunk shorter), whatever the size of the
        source's own batches: a chunk is read when it is asked for and not kept."""
        held: list[np.ndarray] = []
        count = 0
        for batch in self.read(self.start, self.stop, size):
            while len(batch):
                take = batch[:size - count]
                batch = batch[len(take):]
                held.append(take)
                count += len(take)
                if count == size:
                    yield held[0] if len(held) == 1 else np.concatenate(held)
                    held, count = [], 0
        if held:
            yield held[0] if len(held) == 1 else np.concatenate(held)

    def head(self, n: int, size: int = BATCH) -> np.ndarray:
        """The first ``n`` samples' inputs (all, when there are fewer) as one array, filled ``size`` samples
        at a time (held: the array and one chunk).

        Raises:
            DataError: there are no samples.
        """
        n = min(n, len(self))
        out: np.ndarray | None = None
        filled = 0
        for chunk in self.split(n)[0].chunks(size):
            if out is None:
                out = np.empty((n, *chunk.shape[1:]), chunk.dtype)
            out[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        if out is None:
            raise DataError("the evaluation data hold no samples")
        return out

    def split(self, n: int) -> tuple[Samples, Samples]:
        """The first ``n`` samples and the rest, as two ``Samples`` over the same source (nothing is read)."""
        cut = self.start + n
        y = self.labels
        return (Samples(self.read, self.start, cut, None if y is None else y[:n]),
                Samples(self.read, cut, self.stop, None if y is None else y[n:]))


def in_memory(x: np.ndarray, y: np.ndarray | None = None) -> Samples:
    """Arrays already in memory as ``Samples`` (chunks are views)."""
    def read(start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        return (x[i:min(i + size, stop)] for i in range(start, stop, size))

    return Samples(read, 0, len(x), y)


def as_samples(x: np.ndarray | Samples, y: np.ndarray | None = None) -> Samples:
    """``x`` itself when it is ``Samples``, else ``in_memory(x, y)``."""
    return x if isinstance(x, Samples) else in_memory(x, y)


def source_samples(source: DataSource, model_inputs: Sequence[TensorInfo], layout: Callable[[np.ndarray], np.ndarray],
                   *, labels: bool) -> Samples:
    """Every sample of ``source`` as ``Samples``: its batches checked against the model's inputs
    (``sources.checked_batches``) and laid out by ``layout`` as they are read.

    The count and the labels come from the source without reading its inputs where it can give them
    (``DataSource.length`` and ``DataSource.labels``: arrays, image lists); an entry point is read once
    for them (and checked on the way).

    Raises:
        DataError: the source holds no samples, or labels that are not one integer per sample.
    """
    length = source.length
    y = source.labels() if labels and length is not None else None
    if length is None:  # an entry point: one pass, which checks every batch
        count, ys = 0, []
        for x, batch_y in checked_batches(source, model_inputs, labels=labels):
            count += len(x)
            ys.append(batch_y)
        length, y = count, None if not ys or ys[0] is None else np.concatenate(ys)
    if not length:
        raise DataError(f"'{source.name}' holds no samples")
    if y is not None:
        if y.shape != (length,) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"'{source.name}': y must hold {length} integer class labels, got {y.dtype} "
                            f"{tuple(y.shape)}")
        y = np.asarray(y, np.int64)

    def read(start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        for x, _ in checked_batches(source.part(start, stop), model_inputs, labels=False, size=size):
            yield layout(x)

    return Samples(read, 0, length, y)
