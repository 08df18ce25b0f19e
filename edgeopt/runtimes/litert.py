"""The LiteRT runtime on this machine: runs a ``.tflite`` model with LiteRT's reference or optimised kernels.

``kernels="reference"`` selects LiteRT's reference kernels (``BUILTIN_REF``), which the integer
executor reproduces bit for bit; ``kernels="default"`` selects the optimised kernels with the default
delegate (XNNPACK) applied, which is what an application gets and what benchmarks measure;
``kernels="default_no_delegates"`` the optimised kernels alone (the reference where ``BUILTIN_REF`` aborts
on a valid file: its SOFTMAX Prepare does on tiny input scales).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edgeopt.errors import DataError, ModelLoadError, first_line

Kernels = Literal["reference", "default", "default_no_delegates"]
_RESOLVERS: dict[str, OpResolverType] = {
    "reference": OpResolverType.BUILTIN_REF,
    "default": OpResolverType.BUILTIN,
    "default_no_delegates": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as LiteRT sees it. ``quantization`` is (scale, zero_point); (0.0, 0) if float."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quantization: tuple[float, int]


@dataclass(frozen=True)
class Delegation:
    """What a delegate took: ``replaced`` of ``total`` ops in ``partitions`` delegate kernels; ``kept``: the
    op kinds left to LiteRT's own kernels. ``delegate`` is None when no delegate took any op."""

    delegate: str | None
    replaced: int
    total: int
    partitions: int
    kept: tuple[str, ...]


class LiteRT:
    """A loaded LiteRT interpreter that runs batches sample by sample and times inference."""

    def __init__(
        self, model: bytes | str | os.PathLike[str], kernels: Kernels = "reference", num_threads: int = 1
    ) -> None:
        """Load ``model`` and allocate its tensors.

        Args:
            model: The flatbuffer's bytes, or the path of a ``.tflite`` file.
            kernels: ``"reference"`` for LiteRT's reference kernels, ``"default"`` for the optimised ones
                with XNNPACK, ``"default_no_delegates"`` for the optimised ones alone.
            num_threads: Threads the kernels (and XNNPACK) may use.

        Raises:
            ModelLoadError: The file is missing or LiteRT rejects the model.
        """
        if kernels not in _RESOLVERS:
            raise ValueError(f"kernels must be one of {', '.join(_RESOLVERS)}, not {kernels!r}")
        content, label = _read_model(model)
        try:
            self._interpreter = Interpreter(
                model_content=content,
                num_threads=num_threads,
                experimental_op_resolver_type=_RESOLVERS[kernels],
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelLoadError(f"LiteRT cannot load {label}: {first_line(err)}") from err
        self.kernels = kernels
        self._inputs = [_spec(d) for d in self._interpreter.get_input_details()]
        self._outputs = [_spec(d) for d in self._interpreter.get_output_details()]
        self._input_indices = [d["index"] for d in self._interpreter.get_input_details()]
        self._output_indices = [d["index"] for d in self._interpreter.get_output_details()]

    @property
    def input_details(self) -> list[TensorSpec]:
        """The model's inputs, in subgraph input order."""
        return list(self._inputs)

    @property
    def output_details(self) -> list[TensorSpec]:
        """The model's outputs, in subgraph output order."""
        return list(self._outputs)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the model on a batch.

        Args:
            inputs: One array per model input, in subgraph input order and in the model's dtypes. The
                first dimension is a batch: any multiple of the model's own batch size.

        Returns:
            One array per model output, in subgraph output order, the per-chunk results stacked along
            the first dimension.

        Raises:
            DataError: An input has the wrong count, dtype or shape.
        """
        chunks = self._chunk_count(inputs)
        results: list[list[np.ndarray]] = [[] for _ in self._outputs]
        for i in range(chunks):
            self._set_inputs([_chunk(x, spec, i) for x, spec in zip(inputs, self._inputs)])
            self._interpreter.invoke()
            for out, index in zip(results, self._output_indices):
                out.append(self._interpreter.get_tensor(index).copy())
        return [np.concatenate(parts, axis=0) for parts in results]

    def time_inference(self, inputs: list[np.ndarray], runs: int, warmup: int) -> list[float]:
        """Time ``invoke`` alone, as ``benchmark_model`` does, on the first model-sized chunk of ``inputs``.

        Args:
            inputs: As for ``run``; only the first chunk is used.
            runs: Timed invocations.
            warmup: Untimed invocations first (caches, XNNPACK packing).

        Returns:
            Seconds per timed invocation, in order.
        """
        self._chunk_count(inputs)
        self._set_inputs([_chunk(x, spec, 0) for x, spec in zip(inputs, self._inputs)])
        for _ in range(warmup):
            self._interpreter.invoke()
        times: list[float] = []
        for _ in range(runs):
            start = time.perf_counter()
            self._interpreter.invoke()
            times.append(time.perf_counter() - start)
        return times

    def delegation(self) -> Delegation:
        """Which of the model's ops the default delegate (XNNPACK) took, read from the interpreter's nodes.

        A delegated partition is one ``DELEGATE`` node whose inputs and outputs bound the original ops it
        replaced; those ops are found by walking back from its outputs to its inputs. With
        ``kernels="default"`` the only delegate LiteRT applies is XNNPACK (it logs "Created TensorFlow
        Lite XNNPACK delegate for CPU"); the other kernel choices apply none.
        """
        nodes = self._interpreter._get_ops_details()  # the node list, delegate nodes included
        original = [n for n in nodes if n["op_name"] != "DELEGATE"]
        producer = {int(t): i for i, n in enumerate(original) for t in n["outputs"]}
        replaced: set[int] = set()
        partitions = 0
        for node in (n for n in nodes if n["op_name"] == "DELEGATE"):
            partitions += 1
            boundary = {int(t) for t in node["inputs"]}
            stack = [int(t) for t in node["outputs"]]
            while stack:
                i = producer.get(stack.pop())
                if i is None or i in replaced:
                    continue
                replaced.add(i)
                stack += [int(t) for t in original[i]["inputs"] if int(t) not in boundary]
        kept = tuple(dict.fromkeys(n["op_name"] for i, n in enumerate(original) if i not in replaced))
        return Delegation("TfLiteXNNPackDelegate" if partitions else None, len(replaced), len(original),
                          partitions, kept)

    def _chunk_count(self, inputs: list[np.ndarray]) -> int:
        """Validate ``inputs`` and return how many model-sized chunks they hold."""
        if len(inputs) != len(self._inputs):
            raise DataError(f"the model takes {len(self._inputs)} input(s), got {len(inputs)}")
        counts = {_chunks_of(np.asarray(x), spec) for x, spec in zip(inputs, self._inputs)}
        if len(counts) != 1:
            raise DataError("the model's inputs have different batch sizes; give every input the same batch")
        return counts.pop()

    def _set_inputs(self, arrays: list[np.ndarray]) -> None:
        for index, x in zip(self._input_indices, arrays):
            self._interpreter.set_tensor(index, x)


def _read_model(model: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "the model bytes"
    path = Path(model)
    try:
        return path.read_bytes(), f"'{path}'"
    except OSError as err:
        raise ModelLoadError(f"cannot read model '{path}': {err.strerror or err}") from err



def _spec(details: dict[str, Any]) -> TensorSpec:
    scale, zero_point = details["quantization"]
    return TensorSpec(
        name=details["name"],
        shape=tuple(int(d) for d in details["shape"]),
        dtype=np.dtype(details["dtype"]),
        quantization=(float(scale), int(zero_point)),
    )


def _chunks_of(x: np.ndarray, spec: TensorSpec) -> int:
    """How many model-sized chunks ``x`` holds along its first dimension; DataError if it doesn't fit."""
    if x.dtype != spec.dtype:
        raise DataError(f"input '{spec.name}' must be {spec.dtype}, got {x.dtype}; quantize it first")
    fits = bool(spec.shape) and x.ndim == len(spec.shape) and x.shape[1:] == spec.shape[1:]
    if not fits or x.shape[0] == 0 or x.shape[0] % spec.shape[0]:
        raise DataError(
            f"input '{spec.name}' has shape {x.shape}; the model wants {spec.shape} with the first "
            "dimension any positive multiple of the model's"
        )
    return x.shape[0] // spec.shape[0]


def _chunk(x: np.ndarray, spec: TensorSpec, i: int) -> np.ndarray:
    batch = spec.shape[0]
    return np.ascontiguousarray(np.asarray(x)[i * batch : (i + 1) * batch])
