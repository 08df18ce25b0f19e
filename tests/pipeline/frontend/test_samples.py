"""Samples: ranges of a source read in chunks; every source kind gives the arrays' own samples and labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import DataError
from edgeopt.ir import TensorInfo
from edgeopt.pipeline.evaluate import executor_batch
from edgeopt.pipeline import evaluate
from edgeopt.pipeline.frontend.data import FINITE_CHUNK, read_checked, read_npz
from edgeopt.pipeline.frontend.samples import in_memory, source_samples
from edgeopt.pipeline.frontend.sources import ArraySource, EntryPointSource, PartSource, open_source
from tests.builders.programs import conv2d_program

X = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
Y = np.arange(23) % 5
INFO = [TensorInfo("x", (1, 2), "float32")]


def _entry_point() -> list[tuple[np.ndarray, np.ndarray]]:
    """The arrays in uneven batches of 7, 3, 9 and 4 samples."""
    cuts = [0, 7, 10, 19, 23]
    return [(X[a:b], Y[a:b]) for a, b in zip(cuts, cuts[1:])]


@pytest.mark.parametrize("kind", ["array", "npy", "entry point"])
def test_parts_and_chunks_hold_the_arrays_samples(kind: str, tmp_path: Path) -> None:
    if kind == "npy":
        np.save(tmp_path / "x.npy", X)
        source = open_source(tmp_path / "x.npy")
    else:
        source = ArraySource("x", {"x": X, "y": Y}) if kind == "array" else EntryPointSource("f", _entry_point)
    samples = source_samples(source, INFO, lambda x: x, labels=True)
    assert len(samples) == 23
    np.testing.assert_array_equal(samples.labels, None if kind == "npy" else Y)
    head, rest = samples.split(11)
    assert [len(c) for c in rest.chunks(5)] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate(list(rest.chunks(5))), X[11:])
    np.testing.assert_array_equal(head.head(100), X[:11])
    middle = rest.split(4)[1].split(3)[0]  # samples 15 to 18
    np.testing.assert_array_equal(np.concatenate(list(middle.chunks(2))), X[15:18])
    if kind != "npy":
        np.testing.assert_array_equal(middle.labels, Y[15:18])


def test_a_part_of_an_entry_point_stops_reading_at_its_end() -> None:
    read: list[int] = []

    def batches():
        for x, y in _entry_point():
            read.append(len(x))
            yield x, y

    part = PartSource(EntryPointSource("f", batches), 2, 9)
    got = list(part.batches())
    assert [len(x) for x, _ in got] == [5, 2] and read == [7, 3]
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), Y[2:9])


def test_in_memory_chunks_are_views() -> None:
    chunks = list(in_memory(X, Y).chunks(10))
    assert [len(c) for c in chunks] == [10, 10, 3] and all(np.shares_memory(c, X) for c in chunks)


def test_executor_batch_keeps_the_largest_tensor_within_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    program = conv2d_program(np.random.default_rng(0))
    largest = max(int(np.prod(t.shape[1:])) for t in program.tensors.values() if not t.is_constant)
    assert executor_batch(program) == min(evaluate.MAX_EXECUTOR_BATCH, evaluate.EXECUTOR_BYTES // (4 * largest))
    monkeypatch.setattr(evaluate, "EXECUTOR_BYTES", 4 * largest * 10 + 3)
    assert executor_batch(program) == 10
    monkeypatch.setattr(evaluate, "EXECUTOR_BYTES", 1)
    assert executor_batch(program) == 1


def test_an_npz_saved_uncompressed_is_memory_mapped_and_a_compressed_one_read_whole(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 3, 4, 4)).astype(np.float32)
    y = np.arange(40) % 10
    np.savez(tmp_path / "stored.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    stored, packed = read_npz(tmp_path / "stored.npz"), read_npz(tmp_path / "packed.npz")
    assert isinstance(stored["x"], np.memmap) and isinstance(stored["y"], np.memmap)
    assert not isinstance(packed["x"], np.memmap)
    for arrays in (stored, packed):
        np.testing.assert_array_equal(arrays["x"], x)
        np.testing.assert_array_equal(arrays["y"], y)
    # A stored file cut short is refused in one line, as a compressed one is.
    data = (tmp_path / "stored.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="not a readable .npz"):
        read_npz(tmp_path / "cut.npz")


def test_nan_is_found_in_any_chunk_of_a_mapped_array(tmp_path: Path) -> None:
    x = np.zeros((2 * FINITE_CHUNK + 5, 2), np.float32)
    x[FINITE_CHUNK + 3, 1] = np.nan
    x[2 * FINITE_CHUNK + 1, 0] = np.inf
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(DataError, match=f"2 NaN/Inf value\\(s\\).*sample {FINITE_CHUNK + 3}"):
        read_checked(tmp_path / "d.npz")
