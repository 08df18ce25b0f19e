"""Write the tflite-runtime 2.14 compatibility cases: one ``.tflite`` and one ``.npz`` per case.

Runs in edgeopt's own environment: ``python tests/compat/make_cases.py OUT_DIR``. Each case is an int8
program (from ``tests/builders/programs.py``'s CASES and chains, the newer builders modules, hand-made one-op
programs for the elementwise kernels and exact-tie requantizations, and the built-in example deployed
end to end) written by ``program_to_tflite``. Its ``.npz`` holds ``input_<i>`` (int8, one row per model
run, stacked along the model's batch axis) and ``expected_<i>``: the integer executor's outputs under
``TFLITE_RUNTIME_2_14``, the executor settings that reproduce tflite-runtime 2.14's reference kernels.
``check_tflite_runtime.py`` runs the files in tflite-runtime and compares.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for tests.builders

from tests.builders.programs import (  # noqa: E402
    CASES,
    ProgramBuilder,
    add_program,
    binary_program,
    fully_connected_program,
    random_inputs,
)
from tests.builders.compute import (  # noqa: E402
    batch_matmul_program,
    grouped_conv_program,
    softmax_program,
    transpose_conv_program,
)
from tests.builders.movement import (  # noqa: E402
    concat_program,
    max_pool_program,
    mirror_pad_program,
    one_op_program,
    resize_program,
)

from edgeopt.ir import QParams  # noqa: E402
from edgeopt.workflows.deploy import deploy  # noqa: E402
from edgeopt.pipeline.emit.tflite import program_to_tflite  # noqa: E402
from edgeopt.pipeline.evaluate import quantize_input  # noqa: E402
from edgeopt.pipeline.frontend.load import load  # noqa: E402
from edgeopt.qprogram import QOp, QProgram, QTensor  # noqa: E402
from edgeopt.runtimes.reference.executor import run_program  # noqa: E402
from edgeopt.runtimes.reference.prepare import prepare_program  # noqa: E402

# What the executor must be told to reproduce tflite-runtime 2.14's reference kernels.
TFLITE_RUNTIME_2_14 = {"rounding": "double", "fully_connected_requantization": "fixed_point"}
SEEDS = (0, 1, 2)
RUNS = 100
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")

Case = tuple[str, QProgram, list[np.ndarray]]


def for_tflite_runtime_2_14(program: QProgram) -> QProgram:
    """``program`` with the settings of ``TFLITE_RUNTIME_2_14``, its params prepared for them."""
    return prepare_program(program.replace(**TFLITE_RUNTIME_2_14))


def _qparams(rng: np.random.Generator, lo: float, hi: float) -> QParams:
    return QParams(np.exp(rng.uniform(np.log(lo), np.log(hi))), int(rng.integers(-128, 128)))


def _random(name: str, make: Callable[[np.random.Generator], QProgram], seeds: Iterable[int] = SEEDS,
            runs: int = RUNS) -> Iterator[Case]:
    for seed in seeds:
        rng = np.random.default_rng(seed)
        program = make(rng)
        yield f"{name}_s{seed}", program, random_inputs(rng, program, runs)


def builder_cases() -> Iterator[Case]:
    """Every program of ``builders.programs.CASES`` (chains included) and a two-stage residual network."""
    for name in sorted(CASES):
        yield from _random(name, CASES[name])

    def resnet_like(rng: np.random.Generator) -> QProgram:
        b = ProgramBuilder(rng, "resnet_like")
        x = b.conv(b.input((1, 16, 16, 3)), 8, activation="RELU")
        for width, stride in ((8, (1, 1)), (16, (2, 2))):
            h = b.conv(b.conv(x, width, stride=stride, activation="RELU"), width)
            skip = x if stride == (1, 1) else b.conv(x, width, kernel=(1, 1), stride=stride)
            x = b.add(h, skip, activation="RELU")
        pooled = b.average_pool(x, b.shape(x)[1:3], (1, 1), "VALID")
        return b.build([b.fully_connected(b.reshape(pooled, (1, 16)), 10)])

    yield from _random("resnet_like", resnet_like)

    def wide_fc(rng: np.random.Generator) -> QProgram:
        return fully_connected_program(rng, cin=int(rng.integers(1, 300)), cout=int(rng.integers(1, 40)),
                                       activation=str(rng.choice(ACTIVATIONS)))

    yield from _random("fully_connected_random", wide_fc, seeds=range(10, 20))

    def random_add(rng: np.random.Generator) -> QProgram:
        return add_program(rng, shape=(1, *(int(d) for d in rng.integers(1, 7, 3))),
                           activation=str(rng.choice(ACTIVATIONS)))

    yield from _random("add_random", random_add, seeds=range(10, 15))


def compute_cases() -> Iterator[Case]:
    """SOFTMAX, TRANSPOSE_CONV, grouped CONV_2D and BATCH_MATMUL from ``builders_compute``."""
    yield from _random("softmax", lambda rng: softmax_program(rng, (1, 2, 37), 1.0, (0.003, 0.3)))
    yield from _random("softmax_wide_beta", lambda rng: softmax_program(rng, (1, 3, 20), 0.5, (0.3, 20.0)))
    yield from _random("softmax_1000", lambda rng: softmax_program(rng, (1, 1000)), seeds=(0,), runs=20)
    yield from _random("transpose_conv_same", lambda rng: transpose_conv_program(rng))
    yield from _random("transpose_conv_valid_nobias", lambda rng: transpose_conv_program(
        rng, h=3, w=4, cin=5, cout=3, kernel=(2, 3), stride=(1, 2), padding="VALID", bias=False))
    yield from _random("grouped_conv", lambda rng: grouped_conv_program(rng, activation="RELU"))
    yield from _random("grouped_conv_strided", lambda rng: grouped_conv_program(
        rng, h=9, w=8, cin=8, cout=8, groups=4, stride=(2, 2), padding="VALID"))
    yield from _random("batch_matmul", lambda rng: batch_matmul_program(rng, (1, 5, 7), (1, 7, 4)))
    yield from _random("batch_matmul_4d", lambda rng: batch_matmul_program(rng, (1, 2, 3, 16), (1, 2, 16, 6)))


def movement_cases() -> Iterator[Case]:
    """MAX_POOL_2D, CONCATENATION, RESIZE_*, PADV2 and MIRROR_PAD from ``builders_movement``."""
    yield from _random("max_pool_same", lambda rng: max_pool_program(rng, (1, 9, 8, 3), (3, 3), (2, 2), "SAME"))
    yield from _random("max_pool_valid_relu", lambda rng: max_pool_program(
        rng, (1, 7, 9, 2), (2, 3), (1, 2), "VALID", "RELU"))
    yield from _random("concat_channels", lambda rng: concat_program(rng, [(1, 4, 5, 3), (1, 4, 5, 2)], 3))
    yield from _random("concat_height_const", lambda rng: concat_program(
        rng, [(1, 2, 5, 3), (1, 3, 5, 3), (1, 1, 5, 3)], 1, (1,)))
    for kind in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        for align, half in ((False, False), (True, False), (False, True)):
            name = f"{kind.lower()}_{'align' if align else 'half' if half else 'asym'}"
            yield from _random(name, lambda rng, k=kind, a=align, h=half: resize_program(
                rng, k, (1, 4, 5, 3), (9, 7), a, h))
    yield from _random("bilinear_upsample2", lambda rng: resize_program(
        rng, "RESIZE_BILINEAR", (1, 4, 4, 8), (8, 8), False, True))

    def pad_v2(rng: np.random.Generator) -> QProgram:
        q = QParams(0.05, 7)
        x = QTensor("x", (1, 5, 6, 3), "int8", q)
        paddings = QTensor("paddings", (4, 2), "int32", data=np.array([[0, 0], [1, 2], [0, 1], [0, 0]]))
        value = QTensor("value", (), "int8", q, np.array(-128))
        return one_op_program("PADV2", [x], [paddings, value], (1, 8, 7, 3), {})

    yield from _random("padv2", pad_v2, seeds=(0,))
    for mode in ("REFLECT", "SYMMETRIC"):
        yield from _random(f"mirror_pad_{mode.lower()}", lambda rng, m=mode: mirror_pad_program(
            rng, (1, 5, 6, 3), [(0, 0), (2, 1), (1, 3), (0, 0)], m), seeds=(0,))


def elementwise_cases() -> Iterator[Case]:
    """Activations over every int8 value under random encodings; SUB and MUL with broadcasting."""
    every_value = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    fixed = {"LOGISTIC": QParams(1 / 256, -128), "TANH": QParams(1 / 128, 0)}
    for kind in ("RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "LOGISTIC", "TANH"):
        rng = np.random.default_rng(sum(map(ord, kind)))
        made = 0
        while made < 8:
            x_q, y_q = _qparams(rng, 0.0005, 2.0), fixed.get(kind) or _qparams(rng, 0.0005, 2.0)
            if kind == "HARD_SWISH" and x_q.scale[0] / 128 >= y_q.scale[0]:
                continue  # TFLite rejects an output multiplier >= 1
            tensors = {"x": QTensor("x", (1, 256), "int8", x_q), "y": QTensor("y", (1, 256), "int8", y_q)}
            program = QProgram(kind.lower(), tensors, [QOp(kind, ("x",), ("y",))], ("x",), ("y",))
            yield f"{kind.lower()}_{made}", program, [every_value]
            made += 1
    shapes = [((1, 3, 4, 5), (1, 3, 4, 5)), ((1, 3, 4, 5), (1, 1, 1, 5)), ((1, 1, 4, 1), (1, 3, 1, 5)),
              ((2, 6), (6,))]
    for kind in ("ADD", "SUB", "MUL"):
        rng = np.random.default_rng(sum(map(ord, kind)))
        for i in range(8):
            a_shape, b_shape = shapes[i % len(shapes)]
            program = binary_program(rng, kind, a_shape, b_shape, constant=i % 3 == 0,
                                     activation=ACTIVATIONS[i % 4], name=f"{kind.lower()}_broadcast")
            yield f"{kind.lower()}_broadcast_{i}", program, random_inputs(rng, program, 30)


def tie_cases() -> Iterator[Case]:
    """Power-of-two scales put many requantizations on exact halves, where the roundings differ."""
    for kind in ("CONV_2D", "FULLY_CONNECTED"):
        rng = np.random.default_rng(12)
        if kind == "FULLY_CONNECTED":
            x_shape, w_shape, y_shape = (1, 4), (6, 4), (1, 6)
        else:
            x_shape, w_shape, y_shape = (1, 6, 6, 4), (6, 1, 1, 4), (1, 6, 6, 6)
        tensors = {
            "x": QTensor("x", x_shape, "int8", QParams(2.0**-4, 0)),
            "w": QTensor("w", w_shape, "int8", QParams(np.full(6, 2.0**-6), np.zeros(6), axis=0),
                         rng.integers(-8, 9, w_shape)),
            "b": QTensor("b", (6,), "int32", QParams(np.full(6, 2.0**-10), np.zeros(6), "int32", axis=0),
                         np.zeros(6)),
            "y": QTensor("y", y_shape, "int8", QParams(2.0**-5, 0)),
        }
        options = {"fused_activation_function": "NONE"}
        if kind == "CONV_2D":
            options |= {"padding": "VALID", "stride_h": 1, "stride_w": 1}
        program = QProgram(f"{kind.lower()}_ties", tensors, [QOp(kind, ("x", "w", "b"), ("y",), options)],
                           ("x",), ("y",))
        yield f"{kind.lower()}_ties", program, random_inputs(rng, program, 500)


def deployed_case(work: Path) -> Case:
    """The built-in example through ``deploy`` (load, optimize, calibrate, quantize, lower, emit)."""
    result = deploy(None, "arm-cortex-a78-xnnpack", out=work / "example")
    x = load(None).data[0][:200]
    return "deployed_example", result.program, [quantize_input(result.program, x)]


def all_cases(work: Path) -> Iterator[Case]:
    yield from builder_cases()
    yield from compute_cases()
    yield from movement_cases()
    yield from elementwise_cases()
    yield from tie_cases()
    yield deployed_case(work)


def write_case(out: Path, name: str, program: QProgram, inputs: list[np.ndarray]) -> None:
    """``name.tflite`` and ``name.npz`` (inputs and the executor's outputs under ``TFLITE_RUNTIME_2_14``)."""
    program = for_tflite_runtime_2_14(program)
    expected = run_program(program, inputs)
    (out / f"{name}.tflite").write_bytes(program_to_tflite(program))
    arrays = {f"input_{i}": x for i, x in enumerate(inputs)} | {f"expected_{i}": y for i, y in enumerate(expected)}
    np.savez(out / f"{name}.npz", **arrays)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_cases.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with tempfile.TemporaryDirectory() as work:
        for name, program, inputs in all_cases(Path(work)):
            write_case(out, name, program, inputs)
            count += 1
    print(f"wrote {count} cases to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
