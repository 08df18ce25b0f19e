"""Placeholder shapes in ``.tflite`` files: TensorFlow's converter stores a tensor whose ``shape_signature``
has unknown (-1) dimensions with a placeholder shape (a Keras ``Dense`` on a sequence writes its
``Tensordot`` RESHAPE target as a SHAPE/GATHER/REDUCE_PROD/PACK chain and the reshaped tensor as ``[1, 1]``),
which TFLite's Prepare replaces. The reader gives such tensors the shapes their ops compute."""
from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tests.builders.converter_files import conv_flatten_softmax_program, converter_style_bytes, edit_model

from edgeopt.errors import ModelLoadError
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program


def _placeholder_reshape(stored: tuple[int, ...], signature: tuple[int, ...] | None) -> bytes:
    """The converter-style CONV_2D → shape chain → RESHAPE → FC → SOFTMAX file, its RESHAPE output stored as
    ``stored`` with ``signature``, every activation's batch marked unknown as Keras leaves it."""

    def edit(model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        reshaped = next(subgraph.tensors[int(op.outputs[0])] for op in subgraph.operators
                        if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.RESHAPE)
        for t in subgraph.tensors:
            if model.buffers[t.buffer].data is None and len(t.shape) > 1:
                t.shapeSignature = np.array([-1, *t.shape[1:]], np.int32)
        reshaped.shape = np.array(stored, np.int32)
        reshaped.shapeSignature = None if signature is None else np.array(signature, np.int32)

    return edit_model(converter_style_bytes(conv_flatten_softmax_program(np.random.default_rng(0))), edit)


def test_placeholder_shape_takes_the_shape_its_op_computes_and_runs_bit_exact() -> None:
    data = _placeholder_reshape((1, 1), (-1, -1))
    program = tflite_to_program(data, "dynamic", "double")
    reshape = next(op for op in program.ops if op.kind == "RESHAPE")
    assert program.tensor(reshape.outputs[0]).shape == (1, 6 * 5 * 4)
    x = np.random.default_rng(1).integers(-128, 128, (50, 6, 5, 3)).astype(np.int8)
    want = LiteRT(data, kernels="reference").run([x])[0]
    np.testing.assert_array_equal(run_program(program, [x])[0], want)


def test_a_wrong_static_shape_is_still_refused() -> None:
    """Without an unknown dimension in its signature, a stored shape that disagrees with its op is a corrupt file."""
    with pytest.raises(ModelLoadError, match="RESHAPE .* has output .* of shape \\(1, 1\\)"):
        tflite_to_program(_placeholder_reshape((1, 1), None), "static", "double")
