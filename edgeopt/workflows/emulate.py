"""emulate: run any int8 ``.tflite`` in the integer reference executor on a data set, and price it.

Files with float32 input and output around int8 ops (TensorFlow's converter default for full-integer
models: QUANTIZE at the input, DEQUANTIZE at the output) run as they are, on float data. Data laid out
NCHW, as ``deploy`` took it for an ONNX or torch model whose ``.tflite`` is NHWC, is transposed (and the
result says so).

The file is read into the same QProgram our lowering makes (``tflite_reader``), so the executor runs
another converter's model exactly as it runs ours: bit-exact with LiteRT's reference kernels for the
rounding mode chosen (the device profile's unless overridden).
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.errors import DataError, ModelLoadError
from edgeopt.fileio import atomic_write_bytes, check_output_file
from edgeopt.pipeline.evaluate import executor_batch
from edgeopt.pipeline.frontend.data import LABELS, check_finite, check_labels, read_npz
from edgeopt.pipeline.frontend.sources import ArraySource, DataSource, open_source, sized_batches
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.pipeline.quantize.weight_scheme import device_weights_program
from edgeopt.qprogram import QProgram, QTensor, Rounding
from edgeopt.runtimes.cost import CostReport, estimate
from edgeopt.runtimes.reference.executor import run_program


@dataclass(frozen=True)
class EmulateResult:
    """The program that ran, its raw outputs (one array per model output, model dtype), top-1 when the
    data had labels, the cost model's estimate for the profile, and what was done to the data (a
    transposition from NCHW)."""

    program: QProgram
    outputs: list[np.ndarray]
    n: int
    top1: float | None
    cost: CostReport
    profile: str
    notes: tuple[str, ...] = ()
    device_top1: float | None = None
    """On a profile whose device quantizes weights otherwise than the file (SNPE's asymmetric per-tensor
    weights): top-1 of the file's weights re-quantized on the device's grid (``device_weights_program``)."""


def emulate(model: str | Path, data: str | Path, *, device: str, rounding: Rounding | None = None,
            save_outputs: str | Path | None = None,
            preprocess: str | Path | Mapping[str, Any] | None = None) -> EmulateResult:
    """Run the int8 ``.tflite`` ``model`` on the ``x`` of ``data`` in the integer reference executor.

    Args:
        model: path of an int8 ``.tflite`` file (made by any converter; float32 input and output around
            int8 ops too).
        data: ``.npz`` with ``x`` (in the model input's own dtype, used as is, or real values, quantized
            with the input tensor's scale and zero point; for a float32 input, real values fed as float32;
            NCHW for an NHWC input is transposed) and optional integer labels ``y``; or another data source
            (``frontend.sources``: an .npy, an image folder or list, an entry point). It is read and run
            ``evaluate.executor_batch`` samples at a time; only the outputs are kept.
        device: device profile name or path: its rounding (unless ``rounding`` is given) and cost model.
        rounding: ``"single"`` or ``"double"`` requantization rounding, overriding the profile's.
        save_outputs: where to write the raw outputs as ``.npz`` (``output_0``, ... in output order, and
            each under its tensor name), atomically (the file's own outputs).
        preprocess: how the images of an image-folder source become samples (``frontend.preprocess``).

    Raises:
        ModelLoadError: missing, corrupt or float model.
        UnsupportedOpError: an op without an integer kernel.
        DataError: the data do not fit the model (shape, dtype, NaN/Inf, labels beyond its outputs).
        OutputError: ``save_outputs`` cannot be written (checked before the run).
    """
    profile = load_profile(device)
    if save_outputs is not None:
        check_output_file(save_outputs, "--save-outputs")
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    program = tflite_to_program(path.read_bytes(), path.name, rounding or profile.runtime.requantization_rounding)
    cost = estimate(program, profile)
    notes: list[str] = []
    device = device_weights_program(program, profile.quantization)
    outputs, n, top1, device_top1 = _run(program, _source(Path(data), program, preprocess), notes, device)
    if device_top1 is not None:
        notes.append(f"{profile.name} quantizes weights asymmetrically per tensor, which no .tflite carries: "
                     f"'device scheme' top-1 is the file's weights re-quantized on that grid (a second "
                     f"rounding), emulated; top-1 is the file's own")
    if save_outputs is not None:
        atomic_write_bytes(save_outputs, _npz_bytes(program, outputs))
    return EmulateResult(program, outputs, n, top1, cost, profile.name, tuple(notes), device_top1)


def _source(path: Path, program: QProgram, preprocess: str | Path | Mapping[str, Any] | None) -> DataSource:
    """The data source at ``path``: an .npz (which must hold ``x``, the input's name, or one array per input
    name), or another source (``frontend.sources``)."""
    if path.suffix == ".npz" and preprocess is None:
        keys = list(program.inputs) if len(program.inputs) > 1 else ["x", program.inputs[0]]
        return ArraySource(str(path), read_npz(path, keys))
    return open_source(path, preprocess)


def _run(program: QProgram, source: DataSource, notes: list[str], device: QProgram | None = None
         ) -> tuple[list[np.ndarray], int, float | None, float | None]:
    """Run the program on the source read ``executor_batch`` samples at a time (whole multiples of the
    program's batch): its outputs (one array per model output), the sample count, top-1 and, with
    ``device`` (the device's weight scheme of the same program), that program's top-1 on the same batches
    (both None without labels); a transposition from NCHW is added to ``notes``. Labels are checked before
    the run where the source gives them without reading its inputs (``DataSource.labels``), else batch by
    batch."""
    name = Path(source.name)
    batch = program.tensor(program.inputs[0]).shape[0] or 1
    classes = int(np.prod(program.tensor(program.outputs[0]).shape[1:]))
    if source.length is not None:
        if source.length % batch:
            raise DataError(f"'{program.name}' takes batches of {batch}; x holds {source.length} samples")
        _check_y(name, source.labels(), source.length, classes)
    transposed: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]] = {}
    outs: list[list[np.ndarray]] = [[] for _ in program.outputs]
    n = right = device_right = 0
    labelled = True
    for arrays in sized_batches(source, max(executor_batch(program) // batch, 1) * batch):
        xs = _inputs(name, arrays, program, transposed)
        if len(xs[0]) % batch:
            raise DataError(f"'{program.name}' takes batches of {batch}; x holds {n + len(xs[0])} samples")
        y = arrays.get(LABELS)
        _check_y(name, y, len(xs[0]), classes)
        result = run_program(program, xs)
        for k, out in enumerate(result):
            outs[k].append(out)
        if y is None:
            labelled = False
        else:
            right += int(np.sum(result[0].reshape(len(y), -1).argmax(1) == y))
            if device is not None:
                device_right += int(np.sum(run_program(device, xs)[0].reshape(len(y), -1).argmax(1) == y))
        n += len(xs[0])
    if n == 0:
        raise DataError(f"'{source.name}' holds no samples")
    for key, (nchw, nhwc, tensor) in transposed.items():
        notes.append(f"{key} {(n, *nchw)} is NCHW; transposed to NHWC {(n, *nhwc)} for the model input '{tensor}'")
    top1 = right / n * 100.0 if labelled else None
    device_top1 = device_right / n * 100.0 if labelled and device is not None else None
    return [np.concatenate(parts) for parts in outs], n, top1, device_top1


def _check_y(path: Path, y: np.ndarray | None, n: int, classes: int) -> None:
    """Labels, if any: ``n`` integers, each a class of the model's first output."""
    if y is None:
        return
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"'{path}': y must hold {n} integer class labels, got {y.dtype} {tuple(y.shape)}")
    check_labels(path, y, classes)


def _inputs(path: Path, arrays: dict[str, np.ndarray], program: QProgram,
            transposed: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]) -> list[np.ndarray]:
    """One batch's model-dtype inputs, one per program input: ``x`` for a single input, else one array per
    input name; an NCHW array for an NHWC input is transposed (recorded in ``transposed``)."""
    keys = ["x"] if len(program.inputs) == 1 else list(program.inputs)
    if len(keys) == 1 and "x" not in arrays:
        keys = [program.inputs[0]]
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"'{path}': '{program.name}' takes the inputs {', '.join(program.inputs)}; "
                        f"missing {', '.join(missing)} (save one array per input name)")
    xs = [_input_batch(path, key, _model_layout(key, arrays[key], program.tensor(name), transposed),
                       program.tensor(name)) for key, name in zip(keys, program.inputs)]
    if len({len(x) for x in xs}) > 1:
        raise DataError(f"'{path}': the inputs hold different sample counts ({', '.join(str(len(x)) for x in xs)})")
    return xs


def _model_layout(key: str, x: np.ndarray, tensor: QTensor,
                  transposed: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]) -> np.ndarray:
    """``x`` as is when it fits ``tensor``; NCHW data for an NHWC input (what ``deploy`` took for an ONNX
    or torch model, whose ``.tflite`` is NHWC) transposed to NHWC, recorded in ``transposed``."""
    if x.ndim != 4 or len(tensor.shape) != 4 or tuple(x.shape[1:]) == tuple(tensor.shape[1:]):
        return x
    nhwc = x.transpose(0, 2, 3, 1)
    if tuple(nhwc.shape[1:]) != tuple(tensor.shape[1:]):
        return x
    transposed[key] = (tuple(x.shape[1:]), tuple(nhwc.shape[1:]), tensor.name)
    return np.ascontiguousarray(nhwc)


def _input_batch(path: Path, key: str, x: np.ndarray, tensor: QTensor) -> np.ndarray:
    """``x`` for the program input ``tensor``: as is in its dtype, float for a float input, quantized with
    its parameters when it has them, integers (token ids, masks) cast to its integer dtype."""
    if x.ndim != len(tensor.shape) or tuple(x.shape[1:]) != tensor.shape[1:] or len(x) == 0 \
            or not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"'{path}': {key} is {x.dtype}{tuple(x.shape)} but the model input '{tensor.name}' needs "
                        f"numbers shaped [N, {', '.join(map(str, tensor.shape[1:]))}] (the model's own layout)")
    check_finite(path, key, x)
    if tensor.dtype == "float32":
        # A float-input file (QUANTIZE at its edge) takes real values as they are.
        return x.astype(np.float32)
    if x.dtype == np.dtype(tensor.dtype):
        return x
    if tensor.qparams is None:
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"'{path}': {key} is {x.dtype} but the model input '{tensor.name}' is {tensor.dtype} "
                            f"without quantization parameters (indices, masks); give {key} as integers")
        return x.astype(tensor.dtype)
    # Anything else holds real values (float, or e.g. uint8 pixels): quantize them as the converter
    # told the model's user to.
    return tensor.qparams.quantize(x.astype(np.float64))


def _npz_bytes(program: QProgram, outputs: list[np.ndarray]) -> bytes:
    arrays = {f"output_{i}": out for i, out in enumerate(outputs)}
    for name, out in zip(program.outputs, outputs, strict=True):
        arrays.setdefault(name, out)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
