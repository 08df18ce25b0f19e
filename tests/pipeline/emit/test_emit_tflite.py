"""The TFLite writer and the LiteRT runtime, on every program in ``builders.programs.CASES``.

Each emitted file must load and run under LiteRT's reference and default (XNNPACK) kernels, read back
with the converter's layout (buffers, per-channel axes, op versions, signature), and mean what the
program means: every op's output within one int8 step of the float computation on the same inputs.
"""
from __future__ import annotations

import functools
import zlib

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tests.builders.programs import CASES, fully_connected_program, float_forward, float_op, random_inputs

from edgeopt.errors import DataError, InternalError, ModelLoadError, UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite, write_tflite
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT

# What TensorFlow's converter writes for these ops with int8 data (op_version.cc), independent of the
# writer's own table.
EXPECTED_VERSIONS = {
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "ADD": 2,
    "AVERAGE_POOL_2D": 2,
    "RESHAPE": 1,
    "PAD": 2,
    "STRIDED_SLICE": 2,
    "TRANSPOSE": 2,
}
WEIGHT_AXES = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": 3}
# Share of elements allowed one step off the float result: the 31-bit multiplier and rounding ties.
# AVERAGE_POOL_2D ties often (a sum of 4 values ends in .5 a quarter of the time; RELU'd inputs make
# ties common for any window) and TFLite rounds the raw values' mean half away from zero while float
# rounds the mean offset by the zero point, so ties can go either way.
MAX_OFF_BY_ONE = {"AVERAGE_POOL_2D": 0.5}
DEFAULT_MAX_OFF_BY_ONE = 0.1


@functools.cache
def case(name: str) -> tuple[QProgram, bytes]:
    program = CASES[name](np.random.default_rng(zlib.crc32(name.encode())))
    return program, program_to_tflite(program)


def inputs_for(name: str, batches: int) -> list[np.ndarray]:
    return random_inputs(np.random.default_rng(zlib.crc32(name.encode()) + 1), case(name)[0], batches)


def assert_within_one_step(got: np.ndarray, want: np.ndarray, op: QOp) -> None:
    what = f"{op.kind} {op.source}"
    assert got.shape == want.shape, what
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1, f"{what}: off by up to {diff.max()} at {np.argwhere(diff > 1)[:5].tolist()}"
    budget = MAX_OFF_BY_ONE.get(op.kind, DEFAULT_MAX_OFF_BY_ONE)
    assert np.mean(diff == 1) <= budget, f"{what}: {np.mean(diff == 1):.1%} of elements off by one"


# ---------------------------------------------------------------------------------------------------
# Loading and running


@pytest.mark.parametrize("kernels", ["reference", "default"])
@pytest.mark.parametrize("name", list(CASES))
def test_loads_and_runs_on_a_batch(name: str, kernels: str) -> None:
    program, data = case(name)
    runtime = LiteRT(data, kernels=kernels)

    assert [d.name for d in runtime.input_details] == list(program.inputs)
    assert [d.name for d in runtime.output_details] == list(program.outputs)
    for spec, tensor_name in zip(runtime.input_details + runtime.output_details,
                                 program.inputs + program.outputs):
        tensor = program.tensors[tensor_name]
        assert spec.shape == tensor.shape
        assert spec.dtype == np.int8
        assert spec.quantization == (float(tensor.qparams.scale[0]), int(tensor.qparams.zero_point[0]))

    outputs = runtime.run(inputs_for(name, batches=3))
    for out, tensor_name in zip(outputs, program.outputs):
        shape = program.tensors[tensor_name].shape
        assert out.dtype == np.int8
        assert out.shape == (3 * shape[0], *shape[1:])


@pytest.mark.parametrize("name", list(CASES))
def test_default_kernels_match_float(name: str) -> None:
    program, data = case(name)
    inputs = inputs_for(name, batches=4)
    got = LiteRT(data, kernels="default").run(inputs)
    want = float_forward(program, inputs)
    for g, w, out in zip(got, want, program.outputs):
        if len(program.ops) == 1:
            assert_within_one_step(g, w, program.ops[0])
        else:
            # A chain compounds one-step differences (a pooled feature one step off moves the next
            # layer's output by its gain); the per-op check below is the exact one.
            assert np.mean(np.abs(g.astype(np.int32) - w) <= 1) >= 0.75, out


@pytest.mark.parametrize("name", list(CASES))
def test_every_op_matches_float_under_reference_kernels(name: str) -> None:
    """Each op, fed LiteRT's own inputs, lands within one step of float: catches weight layout, SAME
    padding placement, depthwise channel order, swapped strides or dilations, input order."""
    program, data = case(name)
    interpreter = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    inputs = inputs_for(name, batches=4)
    batch = program.tensors[program.inputs[0]].shape[0]
    for sample in range(4):
        for detail, x in zip(interpreter.get_input_details(), inputs):
            interpreter.set_tensor(detail["index"], x[sample * batch : (sample + 1) * batch])
        interpreter.invoke()
        values = {n: interpreter.get_tensor(i) for n, i in index.items() if not program.tensors[n].is_constant}
        for op in program.ops:
            assert_within_one_step(values[op.outputs[0]], float_op(program, op, values), op)


# ---------------------------------------------------------------------------------------------------
# What the file holds


def read_back(data: bytes) -> schema.ModelT:
    assert schema.Model.ModelBufferHasIdentifier(data, 0)
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.parametrize("name", list(CASES))
def test_flatbuffer_has_the_converters_layout(name: str) -> None:
    program, data = case(name)
    model = read_back(data)
    assert model.version == 3
    assert text(model.description) == "edgeopt"
    assert model.buffers[0].data is None
    (subgraph,) = model.subgraphs
    tensors = {text(t.name): t for t in subgraph.tensors}
    names = [text(t.name) for t in subgraph.tensors]

    assert [names[i] for i in subgraph.inputs] == list(program.inputs)
    assert [names[i] for i in subgraph.outputs] == list(program.outputs)
    (signature,) = model.signatureDefs
    assert text(signature.signatureKey) == "serving_default"
    assert [(text(m.name), names[m.tensorIndex]) for m in signature.inputs] == [(n, n) for n in program.inputs]
    assert [(text(m.name), names[m.tensorIndex]) for m in signature.outputs] == [(n, n) for n in program.outputs]

    buffer_ids = [t.buffer for t in subgraph.tensors]
    assert 0 not in buffer_ids and len(set(buffer_ids)) == len(buffer_ids)
    for name_, t in tensors.items():
        source = program.tensors[name_]
        assert tuple(t.shape) == source.shape
        data_ = model.buffers[t.buffer].data
        if source.is_constant:
            assert bytes(np.asarray(data_, dtype=np.uint8)) == source.data.tobytes()
        else:
            assert data_ is None
        if source.qparams is None:
            assert t.quantization is None
        else:
            np.testing.assert_array_equal(t.quantization.scale, source.qparams.scale)
            np.testing.assert_array_equal(t.quantization.zeroPoint, source.qparams.zero_point)

    codes = [(c.builtinCode, c.version) for c in model.operatorCodes]
    assert len(set(codes)) == len(codes)
    assert [names[i] for op in subgraph.operators for i in op.outputs] == [o for op in program.ops for o in op.outputs]
    for op, written in zip(program.ops, subgraph.operators):
        code = model.operatorCodes[written.opcodeIndex]
        assert code.builtinCode == getattr(schema.BuiltinOperator, op.kind)
        assert code.deprecatedBuiltinCode == min(code.builtinCode, 127)
        assert code.version == EXPECTED_VERSIONS[op.kind]
        assert [names[i] for i in written.inputs] == list(op.inputs)
        if op.kind in WEIGHT_AXES:
            check_per_channel(op, tensors)


def check_per_channel(op: QOp, tensors: dict[str, schema.TensorT]) -> None:
    x, w, b = (tensors[n] for n in op.inputs)
    axis = WEIGHT_AXES[op.kind]
    channels = w.shape[axis]
    assert w.type == schema.TensorType.INT8 and w.quantization.quantizedDimension == axis
    assert len(w.quantization.scale) == channels and not np.any(w.quantization.zeroPoint)
    assert b.type == schema.TensorType.INT32 and b.quantization.quantizedDimension == 0
    assert len(b.quantization.scale) == channels and not np.any(b.quantization.zeroPoint)
    # TFLite's per-channel kernels assume bias scale = input scale * weight scale, and never check it.
    product = (np.float32(x.quantization.scale[0]) * np.asarray(w.quantization.scale, np.float32))
    np.testing.assert_allclose(b.quantization.scale, product, rtol=1e-6)


def test_constant_buffers_are_16_byte_aligned() -> None:
    _, data = case("chain")
    model = schema.Model.GetRootAs(data, 0)
    base = np.frombuffer(data, np.uint8).__array_interface__["data"][0]
    constants = [model.Buffers(i).DataAsNumpy() for i in range(model.BuffersLength())]
    offsets = [c.__array_interface__["data"][0] - base for c in constants if isinstance(c, np.ndarray)]
    assert offsets and all(offset % 16 == 0 for offset in offsets)


# ---------------------------------------------------------------------------------------------------
# Errors and file output


def with_op(program: QProgram, op: QOp) -> QProgram:
    return program.replace(ops=(*program.ops, op), outputs=op.outputs)


def test_unknown_op_kind_is_unsupported() -> None:
    program, _ = case("reshape")
    svdf = QOp("SVDF", program.outputs, program.outputs, source="probs")
    with pytest.raises(UnsupportedOpError) as err:
        program_to_tflite(with_op(program, svdf))
    assert (err.value.op, err.value.node) == ("SVDF", "probs")
    assert "no TFLite writer" in str(err.value)


def test_unknown_option_value_is_unsupported() -> None:
    program, _ = case("conv")
    (op,) = program.ops
    bad = program.replace(ops=(QOp(op.kind, op.inputs, op.outputs, {**op.options, "padding": "FULL"}, source="c"),))
    with pytest.raises(UnsupportedOpError, match="padding 'FULL'"):
        program_to_tflite(bad)


def test_requantizing_data_movement_is_rejected() -> None:
    """TFLite's int8 TRANSPOSE copies raw values: a different output encoding would be silently wrong."""
    program, _ = case("transpose")
    out = program.outputs[0]
    tensors = dict(program.tensors)
    tensors[out] = QTensor(out, tensors[out].shape, "int8", QParams(scale=0.5, zero_point=0))
    with pytest.raises(InternalError, match="encoding"):
        program_to_tflite(program.replace(tensors=tensors))


def test_write_tflite_writes_the_bytes(tmp_path) -> None:
    program, data = case("chain")
    path = write_tflite(program, tmp_path / "out" / "model.int8.tflite")
    assert path.read_bytes() == data
    assert LiteRT(path).output_details[0].shape == (1, 5)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path) -> None:
    program, data = case("reshape")
    broken = with_op(program, QOp("SVDF", program.outputs, program.outputs, source="probs"))
    with pytest.raises(UnsupportedOpError):
        write_tflite(broken, tmp_path / "new.tflite")
    assert list(tmp_path.iterdir()) == []

    old = write_tflite(program, tmp_path / "model.tflite")
    with pytest.raises(UnsupportedOpError):
        write_tflite(broken, old)
    assert old.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


# ---------------------------------------------------------------------------------------------------
# The runtime's own errors and timing


def test_bad_models_raise_model_load_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="not a valid Flatbuffer"):
        LiteRT(b"this is not a flatbuffer at all")
    with pytest.raises(ModelLoadError, match="missing.tflite"):
        LiteRT(tmp_path / "missing.tflite")


def test_run_rejects_inputs_that_do_not_fit() -> None:
    program = fully_connected_program(np.random.default_rng(0), n=2)
    runtime = LiteRT(program_to_tflite(program))
    good = np.zeros((4, 16), np.int8)
    assert runtime.run([good])[0].shape == (4, 10)
    with pytest.raises(DataError, match="int8"):
        runtime.run([good.astype(np.float32)])
    with pytest.raises(DataError, match="multiple"):
        runtime.run([good[:3]])
    with pytest.raises(DataError, match="1 input"):
        runtime.run([good, good])


def test_time_inference_returns_one_time_per_run() -> None:
    _, data = case("chain")
    times = LiteRT(data, kernels="default").time_inference(inputs_for("chain", batches=1), runs=5, warmup=2)
    assert len(times) == 5 and all(t > 0 for t in times)


# ---------------------------------------------------------------------------------------------------
# The builders themselves: realistic encodings, outputs that use the int8 range


@pytest.mark.parametrize("name", list(CASES))
def test_builders_make_realistic_programs(name: str) -> None:
    program, _ = case(name)
    for tensor_name in program.inputs:
        qparams = program.tensors[tensor_name].qparams
        assert 0.01 <= qparams.scale[0] <= 0.1 and -128 <= qparams.zero_point[0] <= 127
    for op in program.ops:
        assert not op.params
        if op.kind in WEIGHT_AXES:
            w = program.tensors[op.inputs[1]]
            assert w.qparams.axis == WEIGHT_AXES[op.kind] and np.abs(w.data).max() == 127
            assert w.data.min() >= -127
    for out in float_forward(program, inputs_for(name, batches=4)):
        # -128 is also where RELU puts its zeros, so only the top end counts as saturation.
        assert np.mean(out == 127) <= 0.3 and np.mean(out > -128) >= 0.2, f"{name}: output mostly saturated"
        assert len(np.unique(out)) >= min(8, out.size // 4), f"{name}: output uses few int8 values"
