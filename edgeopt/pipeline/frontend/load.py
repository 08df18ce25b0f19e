"""load: a model spec (``.onnx``, ``.pt2``, float ``.tflite``, ``package.module:function``, or none) → float Graph.

Torch models go through ``torch.onnx.export`` (the dynamo exporter) into the one ONNX frontend, so
every model enters the pipeline the same way.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeopt.errors import ModelLoadError, first_line
from edgeopt.ir import Graph, TensorInfo
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.pipeline.frontend.batch_norm_stats import batch_norm_stats, with_stats
from edgeopt.pipeline.frontend.onnx import InputShape, onnx_to_graph
from edgeopt.pipeline.frontend.samples import Samples, source_samples
from edgeopt.pipeline.frontend.sources import (
    BATCH,
    ArraySource,
    DataSource,
    checked_batches,
    open_source,
    read_all,
)
from edgeopt.pipeline.frontend.tflite_float import NCHW_FROM_NHWC, tflite_to_graph

log = logging.getLogger(__name__)

EXPORT_OPSET = 18


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model: its float Graph, the float ONNX it came from, and data it ships (the example)."""

    name: str
    graph: Graph
    onnx_model: onnx.ModelProto
    data: tuple[np.ndarray, np.ndarray] | None = None
    calib: np.ndarray | None = None
    data_layout: tuple[int, ...] | None = None
    """The permutation from the user's data (``--data``, ``--calib``) to the graph's input, None when
    they match: a float ``.tflite`` takes NHWC data, as the file does, and its graph NCHW."""

    @property
    def data_input(self) -> TensorInfo:
        """The graph's first input as the user's data lays it out."""
        graph_input = self.graph.inputs[0]
        if self.data_layout is None:
            return graph_input
        inverse = np.argsort(self.data_layout)
        return TensorInfo(graph_input.name, tuple(graph_input.shape[i] for i in inverse), graph_input.dtype)

    @property
    def data_inputs(self) -> tuple[TensorInfo, ...]:
        """The graph's inputs as the user's data lays them out (``data_layout`` applies to the first: a float
        ``.tflite`` has one input)."""
        return (self.data_input, *self.graph.inputs[1:])

    def to_graph_layout(self, x: np.ndarray) -> np.ndarray:
        """User data ``[N, ...]`` laid out as the graph's input wants it."""
        return x if self.data_layout is None else np.ascontiguousarray(x.transpose(self.data_layout))

    def read_data(self, path: str | Path | DataSource, labels: bool = True,
                  arrays: dict[str, np.ndarray] | None = None, limit: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """The inputs of a data source (``frontend.sources``: an ``.npz`` file, an image folder ...; laid out
        as the user's model file takes them, e.g. NHWC for a .tflite) in the graph's layout, and the labels
        (``frontend.data.load_npz``: one array, or one per input name); ``arrays``: an ``.npz`` file's content
        when it was read already (``data.read_checked``); ``limit``: read only the first samples."""
        if arrays is not None:
            path = ArraySource(str(path), arrays)
        x, y = read_all(open_source(path), self.data_inputs, labels=labels, limit=limit)
        return self.to_graph_layout(x), y

    def samples(self, source: DataSource, labels: bool = True) -> Samples:
        """The source's samples in the graph's layout, read in chunks when asked (``frontend.samples``)."""
        return source_samples(source, self.data_inputs, self.to_graph_layout, labels=labels)

    def data_batches(self, source: DataSource, labels: bool = True, size: int = BATCH
                     ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The source's batches, checked (``sources.checked_batches``) and in the graph's layout."""
        for x, y in checked_batches(source, self.data_inputs, labels=labels, size=size):
            yield self.to_graph_layout(x), y


def load(spec: str | None, input_shape: InputShape | None = None) -> LoadedModel:
    """Load ``spec`` into a float Graph.

    Args:
        spec: a path to an ``.onnx`` file, a ``.pt2`` ExportedProgram or a float32 ``.tflite`` (its data
            stays NHWC: ``LoadedModel.data_layout``), a ``package.module:function``
            entry point returning an ``nn.Module`` (or ``(module, example_input)``), or None for the
            built-in example (a depthwise-separable CNN trained on scikit-learn's digits).
        input_shape: the input shape for entry points and for ONNX inputs with unknown dimensions (for
            ONNX, shapes by input name too: ``onnx.InputShape``).

    Raises:
        ModelLoadError: missing, corrupt or unreadable model; an entry point that fails.
    """
    if spec is None:
        return _load_example()
    path = Path(spec)
    if path.suffix == ".onnx":
        return _from_onnx(_read_onnx(path), path.stem, input_shape)
    if path.suffix == ".pt2":
        return _load_exported_program(path, input_shape)
    if path.suffix == ".tflite":
        return _load_tflite(path)
    if ":" in spec and not path.exists():
        return _load_entry_point(spec, input_shape)
    if not path.exists():
        raise ModelLoadError(f"model file '{spec}' does not exist")
    raise ModelLoadError(
        f"cannot tell what kind of model '{spec}' is: give an .onnx file, a .pt2 ExportedProgram, "
        "a float .tflite, or a package.module:function entry point"
    )


def _from_onnx(model: onnx.ModelProto, name: str, input_shape: InputShape | None,
               **extra: Any) -> LoadedModel:
    return LoadedModel(name=name, graph=onnx_to_graph(model, name, input_shape), onnx_model=model, **extra)


def _load_tflite(path: Path) -> LoadedModel:
    """A float ``.tflite``: its NCHW graph, fed NHWC data as the file is (``data_layout``)."""
    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    graph = tflite_to_graph(path.read_bytes(), path.stem)
    layout = NCHW_FROM_NHWC if len(graph.inputs[0].shape) == 4 else None
    return LoadedModel(name=path.stem, graph=graph, onnx_model=graph_to_onnx(graph), data_layout=layout)


def _read_onnx(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"'{path}' is not a readable ONNX file (corrupt or truncated?): {exc}") from exc
    if not model.graph.node:
        raise ModelLoadError(f"'{path}' holds no ONNX graph (empty or not an ONNX model)")
    return model


def _load_example() -> LoadedModel:
    from edgeopt.examples import digits

    model = digits.load_example_model()
    x_test, y_test = digits.example_data("test")
    x_train, _ = digits.example_data("train")
    onnx_model = export_torch(model, digits.example_input())
    return _from_onnx(onnx_model, "digits_dscnn", None, data=(x_test, y_test), calib=x_train)


def _load_exported_program(path: Path, input_shape: InputShape | None) -> LoadedModel:
    import torch

    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"'{path}' is not a readable torch.export .pt2 file: {first_line(exc)}") from exc
    example = program.example_inputs[0] if program.example_inputs else None
    if input_shape is not None:
        example = (torch.zeros(_one_shape(input_shape, str(path))),)
    if not example:
        raise ModelLoadError(f"'{path}' carries no example inputs; pass --input-shape")
    return _from_onnx(export_torch(program, *example), path.stem, None)


def _load_entry_point(spec: str, input_shape: InputShape | None) -> LoadedModel:
    import torch

    module_name, _, func_name = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        result = func()
    except Exception as exc:
        raise ModelLoadError(f"entry point '{spec}' failed: {first_line(exc)}") from exc
    finally:
        sys.path.remove(os.getcwd())
    module, example = (result if isinstance(result, tuple) else (result, None))
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"entry point '{spec}' returned {type(module).__name__}, not an nn.Module")
    if input_shape is not None:
        example = torch.zeros(_one_shape(input_shape, spec))
    if example is None:
        raise ModelLoadError(f"entry point '{spec}' gave no example input; pass --input-shape, e.g. 1,3,32,32")
    return _from_onnx(export_torch(module.eval(), example), func_name, None)


def load_module(module: Any, example: Any, name: str | None = None) -> LoadedModel:
    """An ``nn.Module`` in memory (``edgeopt.deploy(module, ..., example_input=...)``) as a LoadedModel.

    Args:
        module: the torch module (exported in eval mode).
        example: one example input tensor, or a tuple of them for several inputs.
        name: the model's name (default: the module's class name).

    Raises:
        ModelLoadError: not an nn.Module, or the exporter failed.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"expected an nn.Module, got {type(module).__name__}")
    example = example if isinstance(example, tuple) else (example,)
    name = name or type(module).__name__
    return _from_onnx(export_torch(module.eval(), *example), name, None)


def _one_shape(input_shape: InputShape, spec: str) -> tuple[int, ...]:
    """The one float input shape a torch model is exported with (several inputs come from its example)."""
    if not isinstance(input_shape, Mapping):
        return tuple(input_shape)
    if len(input_shape) != 1:
        raise ModelLoadError(f"'{spec}': --input-shape gives {len(input_shape)} named shapes, but a torch model "
                             "takes one float input shape here; return (module, example_inputs) for several inputs")
    return tuple(next(iter(input_shape.values())))


def export_torch(module: Any, *example: Any) -> onnx.ModelProto:
    """Export a torch module (or ExportedProgram) to ONNX with the dynamo exporter, quietly.

    Raises:
        ModelLoadError: the exporter failed; its first line says why.
    """
    import torch

    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            logging.getLogger("torch").setLevel(logging.ERROR)
            exported = _exported_program(module, example)
            source = exported if exported is not None else module
            program = torch.onnx.export(source, tuple(example), dynamo=True, opset_version=EXPORT_OPSET,
                                        verbose=False)
    except Exception as exc:
        raise ModelLoadError(f"torch.onnx.export failed: {first_line(exc)}") from exc
    # The exporter folds batch norms into the layers before them: keep their statistics (batch_norm_stats).
    return with_stats(program.model_proto, batch_norm_stats(exported) if exported is not None else {})


def _exported_program(module: Any, example: tuple[Any, ...]) -> Any:
    """``module`` as a ``torch.export.ExportedProgram`` (non-strict, as the ONNX exporter's first try),
    or None where that capture fails and ``torch.onnx.export`` must try its other strategies."""
    import torch

    if isinstance(module, torch.export.ExportedProgram):
        return module
    try:
        return torch.export.export(module, tuple(example), strict=False)
    except Exception as exc:  # torch.export raises many unrelated types
        log.debug("torch.export failed (%s); exporting without batch-norm statistics", first_line(exc))
        return None
