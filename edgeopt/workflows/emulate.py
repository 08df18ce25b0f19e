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
from edgeopt.pipeline.frontend.data import check_finite, check_labels, read_npz
from edgeopt.pipeline.frontend.sources import open_source, source_arrays
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.pipeline.quantize.weight_scheme import device_weights_program
from edgeopt.qprogram import QProgram, QTensor, Rounding
from edgeopt.runtimes.cost import CostReport, estimate
from edgeopt.runtimes.reference.executor import run_program

BATCH = 256


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
            (``frontend.sources``: an .npy, an image folder or list, an entry point), read whole.
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
    x, y = _load_data(Path(data), program, notes, preprocess)
    check_labels(data, y, int(np.prod(program.tensor(program.outputs[0]).shape[1:])))
    outputs = _run(program, x)
    top1 = device_top1 = None
    device = device_weights_program(program, profile.quantization)
    if y is not None:
        top1 = float(np.mean(outputs[0].reshape(len(y), -1).argmax(1) == y) * 100.0)
        if device is not None:
            device_top1 = float(np.mean(_run(device, x)[0].reshape(len(y), -1).argmax(1) == y) * 100.0)
            notes.append(f"{profile.name} quantizes weights asymmetrically per tensor, which no .tflite carries: "
                         f"'device scheme' top-1 is the file's weights re-quantized on that grid (a second "
                         f"rounding), emulated; top-1 is the file's own")
    if save_outputs is not None:
        atomic_write_bytes(save_outputs, _npz_bytes(program, outputs))
    return EmulateResult(program, outputs, len(x[0]), top1, cost, profile.name, tuple(notes), device_top1)


def _load_data(path: Path, program: QProgram, notes: list[str], preprocess: str | Path | Mapping[str, Any] | None
               ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The model-dtype input batches (one per program input: ``x`` for a single input, else one array per
    input name) and the labels from ``path`` (an .npz, or another data source); a transposition is added to
    ``notes``."""
    keys = ["x"] if len(program.inputs) == 1 else list(program.inputs)
    arrays = (read_npz(path, keys if len(keys) > 1 else ["x", program.inputs[0]])
              if path.suffix == ".npz" and preprocess is None else source_arrays(open_source(path, preprocess)))
    if len(keys) == 1 and "x" not in arrays:
        keys = [program.inputs[0]]
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"'{path}': '{program.name}' takes the inputs {', '.join(program.inputs)}; "
                        f"missing {', '.join(missing)} (save one array per input name)")
    xs = [_input_batch(path, key, _model_layout(key, arrays[key], program.tensor(name), notes), program.tensor(name))
          for key, name in zip(keys, program.inputs)]
    if len({len(x) for x in xs}) > 1:
        raise DataError(f"'{path}': the inputs hold different sample counts ({', '.join(str(len(x)) for x in xs)})")
    y = arrays.get("y")
    if y is not None and (y.shape != (len(xs[0]),) or not np.issubdtype(y.dtype, np.integer)):
        raise DataError(f"'{path}': y must hold {len(xs[0])} integer class labels, got {y.dtype} {tuple(y.shape)}")
    return xs, y


def _model_layout(key: str, x: np.ndarray, tensor: QTensor, notes: list[str]) -> np.ndarray:
    """``x`` as is when it fits ``tensor``; NCHW data for an NHWC input (what ``deploy`` took for an ONNX
    or torch model, whose ``.tflite`` is NHWC) transposed to NHWC, with a note."""
    if x.ndim != 4 or len(tensor.shape) != 4 or tuple(x.shape[1:]) == tuple(tensor.shape[1:]):
        return x
    nhwc = x.transpose(0, 2, 3, 1)
    if tuple(nhwc.shape[1:]) != tuple(tensor.shape[1:]):
        return x
    notes.append(f"{key} {tuple(x.shape)} is NCHW; transposed to NHWC {tuple(nhwc.shape)} for the model input "
                 f"'{tensor.name}'")
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


def _run(program: QProgram, xs: list[np.ndarray]) -> list[np.ndarray]:
    batch = program.tensor(program.inputs[0]).shape[0] or 1
    n = len(xs[0])
    if n % batch:
        raise DataError(f"'{program.name}' takes batches of {batch}; x holds {n} samples")
    step = max(BATCH // batch, 1) * batch
    chunks = [run_program(program, [x[i:i + step] for x in xs]) for i in range(0, n, step)]
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(program.outputs))]


def _npz_bytes(program: QProgram, outputs: list[np.ndarray]) -> bytes:
    arrays = {f"output_{i}": out for i, out in enumerate(outputs)}
    for name, out in zip(program.outputs, outputs, strict=True):
        arrays.setdefault(name, out)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
