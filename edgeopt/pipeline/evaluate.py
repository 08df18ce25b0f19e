"""Run the float model and the int8 program on float data, and score them against each other.

A model with several outputs is scored on its first output (the ONNX graph's first), which is what
``run_float`` and ``run_int8`` return.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from edgeopt.errors import DataError
from edgeopt.ir import Graph, input_arrays
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.pipeline.frontend.samples import Samples, as_samples
from edgeopt.progress import counter, track
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.onnxruntime import OnnxRuntime
from edgeopt.runtimes.reference.executor import run_program

EXECUTOR_BYTES = 80 << 20
"""What the largest tensor of one executor run may take as float32: the executor holds a batch's live
tensors, its kernels' wider accumulators and im2col blocks (float32 in a float island), all in proportion.
On EfficientNet-Lite0 (largest tensor 112x112x96) that is 16 samples a run; measured over 200 images with
every conv in float, the peak above the model was 3.7 GB a run of 200, 1.3 GB of 64 and 0.5 GB of 16, and
16 was also the fastest (23 s against 42 s for 64; 15 s at every size all-int8)."""
MAX_EXECUTOR_BATCH = 256
"""At most this many samples a run: small models gain nothing from larger runs."""


def run_float(graph: Graph, x: np.ndarray | Samples, batch: int = 256) -> np.ndarray:
    """The float Graph's first output on ``x`` (ONNX Runtime; several inputs: ``ir.input_arrays``), run
    ``batch`` samples at a time (progress: ``fp32 inference``); ``Samples`` are read a batch at a time."""
    session = OnnxRuntime(graph_to_onnx(graph))
    if isinstance(x, np.ndarray) and len(x) <= batch:
        return session.run_batch(x)[0]
    chunks = track(as_samples(x).chunks(batch), "fp32 inference (samples)", len(x), len)
    return np.concatenate([session.run_batch(chunk)[0] for chunk in chunks])


def quantize_input(program: QProgram, x: np.ndarray, index: int = 0) -> np.ndarray:
    """Data laid out as the source model expects → the program's input ``index`` (layout, then scale and
    zero point for a quantized input; integer inputs such as token ids are cast to the program's dtype)."""
    perm = program.input_layouts[index] if program.input_layouts else None
    if perm:
        x = x.transpose(perm)
    tensor = program.tensor(program.inputs[index])
    return tensor.qparams.quantize(x) if tensor.qparams is not None else x.astype(tensor.dtype)


def program_inputs(program: QProgram, x: np.ndarray) -> list[np.ndarray]:
    """A batch of model inputs (``ir.input_arrays``) → one array per program input (``quantize_input``)."""
    return [quantize_input(program, a, i) for i, a in enumerate(input_arrays(x, program.inputs))]


def dequantize_output(program: QProgram, q: np.ndarray, index: int = 0) -> np.ndarray:
    """An int8 output of the program → float, in the source model's layout."""
    y = program.tensor(program.outputs[index]).qparams.dequantize(q)
    perm = program.output_layouts[index] if program.output_layouts else None
    return y.transpose(np.argsort(perm)) if perm else y


def executor_batch(program: QProgram) -> int:
    """Samples per executor run: as many as keep the program's largest tensor, as float32, within
    ``EXECUTOR_BYTES`` (at least 1, at most ``MAX_EXECUTOR_BATCH``)."""
    largest = max((math.prod(t.shape[1:]) for t in program.tensors.values() if not t.is_constant), default=1)
    return max(1, min(MAX_EXECUTOR_BATCH, EXECUTOR_BYTES // (4 * max(largest, 1))))


def run_int8(program: QProgram, x: np.ndarray | Samples, batch: int | None = None) -> np.ndarray:
    """The program's first output, dequantized, on ``x``, run in the integer reference executor ``batch``
    samples at a time (default ``executor_batch``; progress: ``int8 inference``); ``Samples`` are read a
    batch at a time."""
    chunks = track(as_samples(x).chunks(batch or executor_batch(program)), "int8 inference (samples)", len(x), len)
    outs = [run_program(program, program_inputs(program, chunk))[0] for chunk in chunks]
    return dequantize_output(program, np.concatenate(outs))


def run_both(graph: Graph, program: QProgram, x: np.ndarray | Samples, batch: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """``run_float`` and ``run_int8`` on ``x`` in one pass: each chunk of ``batch`` samples (default
    ``executor_batch``) is read once and run by both (progress: ``evaluate (samples)``)."""
    session = OnnxRuntime(graph_to_onnx(graph))
    fp32, int8 = [], []
    for chunk in track(as_samples(x).chunks(batch or executor_batch(program)), "evaluate (samples)", len(x), len):
        fp32.append(session.run_batch(chunk)[0])
        int8.append(run_program(program, program_inputs(program, chunk))[0])
    return np.concatenate(fp32), dequantize_output(program, np.concatenate(int8))


def score(graph: Graph, program: QProgram, batches: Iterable[tuple[np.ndarray, np.ndarray | None]], *,
          check: Callable[[np.ndarray], None] | None = None, batch: int | None = None,
          device: QProgram | None = None) -> dict:
    """Top-1 of the float graph and of the int8 program (with labels; else top-1 agreement of int8 with fp32)
    on the first output, over ``batches`` of inputs and labels read one at a time: only counts are kept, so
    memory does not grow with the number of samples (progress: ``evaluate (samples)``).

    ``check``: called on each batch's labels (e.g. ``data.check_labels``) before it is scored; ``batch``: samples
    per executor run (default ``executor_batch``). ``device``: a second int8 program scored on the same
    batches (the device's own weight scheme, ``Target.device_program``).

    Returns:
        The report's ``accuracy`` section: ``metric``, ``fp32``, ``int8``, ``agreement`` (with labels) and ``n``;
        with ``device``, ``device_scheme``: its ``int8`` (and ``agreement``, with labels).
    """
    session = OnnxRuntime(graph_to_onnx(graph))
    batch = batch or executor_batch(program)
    n = fp32_right = int8_right = agree = device_right = device_agree = 0
    labelled = True
    tick = counter("evaluate (samples)", None)
    for x, y in batches:
        for i in range(0, len(x), batch):
            part = x[i:i + batch]
            fp32 = session.run_batch(part)[0].reshape(len(part), -1).argmax(1)
            int8 = _predicted(program, part)
            agree += int(np.sum(fp32 == int8))
            if device is not None:
                emulated = _predicted(device, part)
                device_agree += int(np.sum(fp32 == emulated))
            if y is None:
                labelled = False
            else:
                labels = y[i:i + batch]
                if check is not None:
                    check(labels)
                fp32_right += int(np.sum(fp32 == labels))
                int8_right += int(np.sum(int8 == labels))
                if device is not None:
                    device_right += int(np.sum(emulated == labels))
            n += len(part)
            tick(n)
    if n == 0:
        raise DataError("the evaluation data hold no samples")
    agreement = agree / n * 100
    if not labelled:
        out = {"metric": "top1_agreement", "fp32": 100.0, "int8": agreement, "n": n}
        device_scheme = {"int8": device_agree / n * 100}
    else:
        out = {"metric": "top1", "fp32": fp32_right / n * 100, "int8": int8_right / n * 100, "agreement": agreement,
               "n": n}
        device_scheme = {"int8": device_right / n * 100, "agreement": device_agree / n * 100}
    return out if device is None else {**out, "device_scheme": device_scheme}


def _predicted(program: QProgram, x: np.ndarray) -> np.ndarray:
    """The class ``program`` picks for each sample of ``x`` (its first output's argmax)."""
    out = dequantize_output(program, run_program(program, program_inputs(program, x))[0])
    return out.reshape(len(x), -1).argmax(1)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float(np.mean(logits.reshape(len(logits), -1).argmax(1) == labels) * 100.0)


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Top-1 agreement in percent: how often ``logits`` and ``reference`` (e.g. fp32's) pick the same class."""
    return top1(logits, reference.reshape(len(reference), -1).argmax(1))
