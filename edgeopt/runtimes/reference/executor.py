"""The integer reference executor: runs a QProgram on a batch of int8 inputs, bit-exact with LiteRT.

Every op goes through the kernel registered for its kind and mode (``registry.KERNELS``; the mode is
``qprogram.op_mode``: int8, 16x8 or float32, read from its tensors' dtypes). Values carry a
leading run axis of length N in front of each tensor's program shape (whose own batch is usually 1),
so one call runs a batch of N program-sized inputs vectorised.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from edgeopt.errors import DataError, InternalError
from edgeopt.qprogram import QProgram, op_mode
from edgeopt.runtimes.reference.prepare import needs_prepare, prepare_program
from edgeopt.runtimes.reference.registry import kernel_for


def run_program(program: QProgram, inputs: Sequence[np.ndarray], threads: int | None = None) -> list[np.ndarray]:
    """Run ``program`` on a batch.

    Args:
        program: the int8 program; prepared here if some op still lacks its params.
        inputs: one array per program input in its dtype (int8; float32 for a file whose QUANTIZE takes a
            float input), in the program's layout, shaped ``(N * B,) +
            shape[1:]`` where ``shape`` is the input's program shape and ``B = shape[0]`` its batch
            (usually 1): N program-sized chunks stacked along the first axis, N any size.
        threads: split the batch over this many threads (default: one per CPU core; 1 also keeps
            numpy's BLAS on one thread). Samples are independent and numpy releases the GIL in its
            kernels, so this scales; results do not depend on it.

    Returns:
        One int8 array per program output, its N chunks stacked the same way: ``(N * B,) +
        shape[1:]`` for an output of program shape ``shape``.

    Raises:
        DataError: the inputs do not fit the program.
        UnsupportedOpError: an op kind without an integer kernel.
    """
    if needs_prepare(program):
        program = prepare_program(program)
    n = _check_inputs(program, inputs)
    parts = min(threads or os.cpu_count() or 1, n)
    if parts <= 1:
        # threads=1 means one thread: numpy's BLAS left to its own threads doubled the wall time of a
        # 64-image EfficientNet-Lite0 run on a busy 2-core machine. One sample without a thread count
        # keeps BLAS's threads, the only parallelism it has.
        with threadpool_limits(limits=1, user_api="blas") if threads == 1 else nullcontext():
            values = _execute(program, inputs, keep_all=False)
        return [values[name] for name in program.outputs]
    bounds = np.linspace(0, n, parts + 1).astype(int)
    batch = [program.tensor(name).shape[0] for name in program.inputs]
    slices = [[x[lo * b:hi * b] for x, b in zip(inputs, batch)] for lo, hi in zip(bounds[:-1], bounds[1:])]
    # One BLAS thread per worker: BLAS threading on top of ours oversubscribes the cores.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(parts) as pool:
        results = list(pool.map(lambda part: _execute(program, part, keep_all=False), slices))
    return [np.concatenate([r[name] for r in results]) for name in program.outputs]


def run_intermediates(program: QProgram, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Like ``run_program``, but returns every non-constant tensor by name (inputs, intermediates and
    outputs, in execution order), each with its N chunks stacked as ``run_program`` stacks outputs."""
    return _execute(program, inputs, keep_all=True)


def _execute(program: QProgram, inputs: Sequence[np.ndarray], keep_all: bool) -> dict[str, np.ndarray]:
    if needs_prepare(program):
        program = prepare_program(program)
    n = _check_inputs(program, inputs)
    env: dict[str, np.ndarray] = {}
    for name, x in zip(program.inputs, inputs, strict=True):
        env[name] = np.asarray(x).reshape((n,) + program.tensor(name).shape)
    last_use = {name: i for i, op in enumerate(program.ops) for name in op.inputs}
    kept = dict(env) if keep_all else {}
    for i, op in enumerate(program.ops):
        kernel = kernel_for(op, op_mode(op, program))
        args = [_value(program, env, name) for name in op.inputs if name]
        result = kernel(op, args, program)
        outs = result if isinstance(result, tuple) else (result,)  # multi-output ops return a tuple
        for name, out in zip(op.outputs, outs, strict=True):
            expected, dtype = (n,) + program.tensor(name).shape, np.dtype(program.tensor(name).dtype)
            if out.shape != expected or out.dtype != dtype:
                raise InternalError(
                    f"{op.kind} kernel made {out.dtype}{out.shape} for '{name}', expected {dtype}{expected}"
                )
            env[name] = out
            if keep_all:
                kept[name] = out
        for name in op.inputs:
            if last_use.get(name) == i and name not in program.outputs and name in env:
                del env[name]
    source = kept if keep_all else env
    return {name: _user_shape(program, name, value) for name, value in source.items()}


def _value(program: QProgram, env: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name in env:
        return env[name]
    tensor = program.tensor(name)
    if tensor.data is None:
        raise InternalError(f"tensor '{name}' is read before any op writes it")
    return tensor.data[np.newaxis]


def _check_inputs(program: QProgram, inputs: Sequence[np.ndarray]) -> int:
    """The number N of program-sized chunks in ``inputs``, after checking them against the program."""
    if len(inputs) != len(program.inputs):
        raise DataError(f"program '{program.name}' takes {len(program.inputs)} input(s), got {len(inputs)}")
    counts = set()
    for name, x in zip(program.inputs, inputs, strict=True):
        shape, dtype = program.tensor(name).shape, np.dtype(program.tensor(name).dtype)
        x = np.asarray(x)
        if x.dtype != dtype or not shape or x.shape[1:] != shape[1:] or x.shape[0] % shape[0]:
            raise DataError(
                f"input '{name}' must be {dtype} of shape (N * {shape[0]}, {', '.join(map(str, shape[1:]))}),"
                f" got {x.dtype}{tuple(x.shape)}"
            )
        counts.add(x.shape[0] // shape[0])
    if len(counts) > 1:
        raise DataError(f"inputs of program '{program.name}' hold different batch sizes")
    return counts.pop() if counts else 1


def _user_shape(program: QProgram, name: str, value: np.ndarray) -> np.ndarray:
    """``(N,) + shape`` -> ``(N * shape[0],) + shape[1:]``: the run axis merged into the batch axis."""
    shape = program.tensor(name).shape
    return value.reshape((-1,) + shape[1:]) if shape else value
