"""Fuzzing the two model readers: truncated and bit-flipped files end in our typed errors, never a crash.

Each case is a valid small file cut at a random length or with a few random bits flipped (seeded). A
reader may accept a mutated file (a flipped weight bit is still a model), and then an accepted ``.tflite``
must also run; it may refuse it, but only with an ``EdgeoptError`` subclass (not ``InternalError``), which
the CLI turns into one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.builders.programs import CASES, random_inputs

from edgeopt.errors import EdgeoptError, InternalError
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.onnx_models import conv_bn_relu6

TFLITE_CASES = 600  # over the two programs
ONNX_CASES = 300


def mutations(data: bytes, count: int, seed: int) -> list[tuple[str, bytes]]:
    """Half truncations at random lengths, half copies with 1 to 8 random bits flipped."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        if i % 2 == 0:
            cut = int(rng.integers(0, len(data)))
            out.append((f"truncated at {cut}", data[:cut]))
        else:
            buf = bytearray(data)
            bits = rng.integers(0, len(data) * 8, int(rng.integers(1, 9)))
            for bit in bits:
                buf[bit // 8] ^= 1 << (bit % 8)
            out.append((f"bits {sorted(int(b) for b in bits)} flipped", bytes(buf)))
    return out


def _survives(read, label: str) -> bool:
    """True when ``read()`` succeeds, False for a typed refusal; anything else fails the test."""
    try:
        read()
    except InternalError as exc:
        pytest.fail(f"{label}: internal error {exc}")
    except EdgeoptError:
        return False
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{label}: {type(exc).__name__}: {exc}")
    return True


@pytest.mark.parametrize("case", ["chain", "layout_chain"])
def test_tflite_reader_survives_truncation_and_bit_flips(case: str) -> None:
    """Every accepted file also runs in the executor (what ``emulate`` does next) without a crash."""
    data = program_to_tflite(CASES[case](np.random.default_rng(0)))
    rng = np.random.default_rng(13)
    accepted = 0
    for label, mutated in mutations(data, TFLITE_CASES // 2, seed=11):
        programs = []
        if _survives(lambda m=mutated: programs.append(tflite_to_program(m, "fuzz", "single")), label):
            accepted += 1
            _survives(lambda: run_program(programs[0], random_inputs(rng, programs[0])), f"running {label}")
    assert accepted < TFLITE_CASES // 2  # the cases do reach the error paths


def test_onnx_loader_survives_truncation_and_bit_flips(tmp_path: Path) -> None:
    data = conv_bn_relu6(np.random.default_rng(0), batch=1).SerializeToString()
    path = tmp_path / "fuzz.onnx"
    accepted = 0
    for label, mutated in mutations(data, ONNX_CASES, seed=12):
        path.write_bytes(mutated)
        accepted += _survives(lambda: load(str(path)), label)
    assert accepted < ONNX_CASES
