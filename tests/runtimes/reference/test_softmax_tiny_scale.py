"""SOFTMAX where LiteRT's reference kernels abort: ``beta * input_scale * 2**26 <= 1`` (the whole file) and
wide near-uniform rows (one row). With ``beta * input_scale * 2**26 <= 1``, LiteRT's reference resolver
aborts the process on such a file, its default kernels run it with a float lookup table, and so does the
executor, bit-exact with LiteRT's default kernels with XNNPACK off (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``)."""
from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tests.builders.compute import softmax_program

from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.qprogram import QProgram, QTensor
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.softmax import OUTPUT_SCALE, OUTPUT_ZERO_POINT, softmax_int8_table, softmax_lookup_table


def _program(width: int, scale: float, beta: float = 1.0) -> QProgram:
    program = softmax_program(np.random.default_rng(0), shape=(1, width), beta=beta)
    return program.replace(tensors={**program.tensors, "x": QTensor("x", (1, width), "int8", QParams(scale, 3))},
                           rounding="double")


def _litert_default_no_xnnpack(data: bytes, x: np.ndarray) -> np.ndarray:
    """LiteRT's default kernels without XNNPACK, one row at a time (the file's batch is 1)."""
    interpreter = Interpreter(model_content=data,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    rows = []
    for row in x:
        interpreter.set_tensor(inp, row[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out)[0].copy())
    return np.array(rows)


def _rows(width: int, n: int = 200) -> np.ndarray:
    x = np.random.default_rng(width).integers(-128, 128, (n, width)).astype(np.int8)
    x[:20] = 127  # all equal: the maximum everywhere
    x[20:40, ::3] = -128  # the widest differences the table holds
    return x


# width 512 puts 256 / width exactly on a rounding tie: the row maxima round up, the others down.
@pytest.mark.parametrize("width, scale, beta", [(10, 1e-8, 1.0), (512, 1e-8, 1.0), (7, 2e-8, 0.7), (1000, 1e-9, 1.0)])
def test_tiny_input_scale_runs_as_litert_default_kernels(width: int, scale: float, beta: float) -> None:
    data = program_to_tflite(_program(width, scale, beta))
    program = tflite_to_program(data, "softmax", "double")  # read as emulate reads it: no refusal
    assert "table" in program.ops[0].params
    x = _rows(width)
    got = run_program(program, [x])[0]
    np.testing.assert_array_equal(got, _litert_default_no_xnnpack(data, x))
    if width == 512:
        assert len(np.unique(got)) == 2


@pytest.mark.parametrize("width, scale, beta", [(16, 0.1, 1.0), (1000, 0.02, 1.0), (10, 0.05, 0.5), (5, 0.3, 1.0)])
def test_table_kernel_is_litert_optimised_softmax(width: int, scale: float, beta: float) -> None:
    """The table recipe at ordinary scales, where it is all LiteRT's default kernels run: bit-exact there too."""
    x = _rows(width)
    params = {"table": softmax_lookup_table(scale, beta), "output_scale": np.float32(OUTPUT_SCALE),
              "output_zero_point": OUTPUT_ZERO_POINT}
    want = _litert_default_no_xnnpack(program_to_tflite(_program(width, scale, beta)), x)
    np.testing.assert_array_equal(softmax_int8_table(x, params), want)


def test_builtin_ref_aborts_on_a_tiny_input_scale(tmp_path) -> None:
    """Why the tiny-scale cases compare with the default kernels: ``BUILTIN_REF`` kills the process."""
    path = tmp_path / "tiny.tflite"
    path.write_bytes(program_to_tflite(_program(10, 1e-8)))
    script = ("from ai_edge_litert.interpreter import Interpreter, OpResolverType\n"
              f"i = Interpreter(model_path={str(path)!r}, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)\n"
              "i.allocate_tensors()\n")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGABRT


def _wide_rows(width: int) -> np.ndarray:
    """Near-uniform rows (every exponential near 1: the sum reaches 2**9 when width >= 512) and peaked rows."""
    rng = np.random.default_rng(width)
    flat = rng.integers(100, 104, (20, width))
    peaked = rng.integers(-128, -60, (20, width))
    peaked[:, ::7] = 127
    return np.concatenate([flat, peaked]).astype(np.int8)


@pytest.mark.parametrize("width", [1000, 600])
def test_wide_uniform_rows_where_builtin_ref_aborts_run_as_the_default_kernels(width: int, tmp_path) -> None:
    """A 1000-class random-weight classifier: BUILTIN_REF aborts on its near-uniform rows (the final
    RoundingDivideByPOT exponent reaches 32); the executor gives LiteRT's default kernels' values there and
    stays bit-exact with BUILTIN_REF on every other row."""
    data = program_to_tflite(_program(width, 0.01))
    program = tflite_to_program(data, "softmax", "double")
    x = _wide_rows(width)
    got = run_program(program, [x])[0]
    np.testing.assert_array_equal(got[:20], _litert_default_no_xnnpack(data, x[:20]))
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    for row, want in zip(x[20:], got[20:]):
        interpreter.set_tensor(inp, row[None])
        interpreter.invoke()
        np.testing.assert_array_equal(interpreter.get_tensor(out)[0], want)
    path = tmp_path / "wide.tflite"
    path.write_bytes(data)
    np.save(tmp_path / "row.npy", x[:1])
    script = ("import numpy as np\nfrom ai_edge_litert.interpreter import Interpreter, OpResolverType\n"
              f"i = Interpreter(model_path={str(path)!r}, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)\n"
              "i.allocate_tensors()\n"
              f"i.set_tensor(i.get_input_details()[0]['index'], np.load({str(tmp_path / 'row.npy')!r}))\n"
              "i.invoke()\n")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGABRT
