"""convert: a quantized (QDQ) ``.onnx`` → int8 ``.tflite``, with the encodings the file carries.

The QDQ reader turns the file into the QuantizedGraph that ``deploy`` would have made by calibrating,
and from there the path is deploy's: lower to the int8 program for the profile's rounding, emit.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from edgeopt.device_profiles import load_profile
from edgeopt.errors import ModelLoadError, first_line
from edgeopt.fileio import atomic_write_bytes, check_output_file
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.frontend.qdq_onnx import qdq_to_quantized_graph
from edgeopt.qprogram import QProgram


def convert(model: str | Path, out: str | Path, *, device: str) -> QProgram:
    """Convert the QDQ ONNX file ``model`` to an int8 ``.tflite`` at ``out``.

    Args:
        model: a QDQ ``.onnx`` (e.g. from ONNX Runtime's ``quantize_static`` in QDQ format).
        out: the ``.tflite`` to write (atomically; nothing is written on failure).
        device: device profile name or path; its rounding sets the program's parameters.

    Returns:
        The int8 program written.

    Raises:
        ModelLoadError: missing, corrupt or float model (a float model is quantized by ``deploy``).
        UnsupportedOpError: an op or a quantization the int8 path cannot take.
        OutputError: ``out`` is a folder or cannot be written (checked first).
    """
    profile = load_profile(device)
    check_output_file(out, "--out")
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    try:
        proto = onnx.load_model_from_string(path.read_bytes())
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"'{path}' is not a readable ONNX file (corrupt or truncated?): {first_line(exc)}") from exc
    if not proto.graph.node:
        raise ModelLoadError(f"'{path}' holds no ONNX graph (empty or not an ONNX model)")
    qgraph = qdq_to_quantized_graph(proto, path.stem)
    program = lower(qgraph, rounding=profile.runtime.requantization_rounding)
    atomic_write_bytes(out, program_to_tflite(program))
    return program
