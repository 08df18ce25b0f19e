"""A ``.tflite`` op reading a variable tensor (UNIDIRECTIONAL_SEQUENCE_LSTM's hidden and cell state, what
TensorFlow's converter makes of a Keras LSTM kept as a loop) is refused in one line naming op and node."""
from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tests.builders.compute import softmax_program
from tests.builders.converter_files import edit_model

from edgeopt.errors import UnsupportedOpError
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.tflite import tflite_to_program


def test_an_op_reading_a_state_variable_is_refused_by_name() -> None:
    def stateful(model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        state = schema.TensorT()
        x = subgraph.tensors[int(subgraph.inputs[0])]
        state.name, state.shape, state.type = b"lstm/state", x.shape, x.type
        state.quantization, state.isVariable = x.quantization, True
        model.buffers.append(schema.BufferT())
        state.buffer = len(model.buffers) - 1
        subgraph.tensors.append(state)
        code = model.operatorCodes[subgraph.operators[0].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
        op = subgraph.operators[0]
        op.inputs = [int(op.inputs[0]), len(subgraph.tensors) - 1]
        op.builtinOptionsType, op.builtinOptions = 0, None

    data = edit_model(program_to_tflite(softmax_program(np.random.default_rng(0))), stateful)
    with pytest.raises(UnsupportedOpError) as err:
        tflite_to_program(data, "lstm", "double")
    message = str(err.value)
    assert err.value.op == "UNIDIRECTIONAL_SEQUENCE_LSTM" and "operator 0" in err.value.node
    assert "state variable 'lstm/state'" in message and "unroll=True" in message and "\n" not in message
