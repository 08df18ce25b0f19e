"""Run the cases of ``make_cases.py`` in tflite-runtime 2.14's reference kernels and compare bit for bit.

Runs in its own environment with only ``numpy<2`` and ``tflite-runtime==2.14.0`` (tflite-runtime 2.14
does not load under numpy 2), so it imports nothing from edgeopt:
``python tests/compat/check_tflite_runtime.py CASES_DIR``. Every ``NAME.tflite`` runs under
``OpResolverType.BUILTIN_REF`` (2.14 has it), one model-sized chunk of ``NAME.npz``'s ``input_<i>`` at a
time, and each output is compared element for element with ``expected_<i>``. One line per case, then
``N passed, M failed``; the exit status is 1 on any mismatch.

Measured (tflite-runtime 2.14.0, numpy 1.26.4, x86-64; ``.ci/tflite_runtime_2_14``): 214 cases, every
op kind the executor has (26, each in one-op cases: 1 to 22 cases and 2,048 to 732,900 elements per
kind; plus 10 chains and the built-in example deployed end to end), 2,265,048 output elements, 0
mismatches with the executor at ``rounding="double"`` and ``fully_connected_requantization=
"fixed_point"``. With LiteRT 2.3's settings (FULLY_CONNECTED's double-precision scale) only cases holding
a FULLY_CONNECTED differ: 20 of 214, 103 elements, each by 1. With single rounding 91 cases differ
(16,857 elements: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, BATCH_MATMUL, MUL,
RELU/RELU6/RELU_N1_TO_1 and RESIZE_BILINEAR), so tflite-runtime 2.14's reference kernels round twice
(gemmlowp) everywhere, FULLY_CONNECTED included, and otherwise agree with LiteRT 2.3's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tflite_runtime.interpreter import Interpreter, OpResolverType


def run_reference(model: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs under the reference kernels, chunk by chunk, stacked along the batch axis."""
    interpreter = Interpreter(model_path=str(model), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    in_details, out_details = interpreter.get_input_details(), interpreter.get_output_details()
    if len(in_details) != len(inputs):
        raise ValueError(f"the model takes {len(in_details)} inputs, the case has {len(inputs)}")
    batches = [int(d["shape"][0]) for d in in_details]
    outputs: list[list[np.ndarray]] = [[] for _ in out_details]
    for run in range(len(inputs[0]) // batches[0]):
        for detail, batch, x in zip(in_details, batches, inputs):
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(x[run * batch:(run + 1) * batch]))
        interpreter.invoke()
        for parts, detail in zip(outputs, out_details):
            parts.append(interpreter.get_tensor(detail["index"]).copy())
    return [np.concatenate(parts) for parts in outputs]


def ops_of(model: Path) -> list[str]:
    """The builtin op names of a model, in execution order (2.14's only way to list them is private)."""
    interpreter = Interpreter(model_path=str(model),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    return [op["op_name"] for op in interpreter._get_ops_details()]


def check_case(model: Path) -> tuple[int, int, str]:
    """(elements compared, mismatches, detail) for one case."""
    data = np.load(model.with_suffix(".npz"))
    inputs = [data[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in data.files))]
    expected = [data[f"expected_{i}"] for i in range(sum(k.startswith("expected_") for k in data.files))]
    try:
        got = run_reference(model, inputs)
    except (ValueError, RuntimeError) as err:
        size = sum(e.size for e in expected)
        return size, size, f"tflite-runtime failed: {str(err).splitlines()[0]}"
    compared = mismatched = 0
    worst = 0
    for g, e in zip(got, expected, strict=True):
        if g.shape != e.shape or g.dtype != e.dtype:
            return e.size, e.size, f"output {g.dtype}{g.shape}, expected {e.dtype}{e.shape}"
        compared += e.size
        mismatched += int((g != e).sum())
        worst = max(worst, int(np.abs(g.astype(np.int32) - e.astype(np.int32)).max(initial=0)))
    return compared, mismatched, f"max |diff| {worst}" if mismatched else ""


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_tflite_runtime.py CASES_DIR", file=sys.stderr)
        return 2
    models = sorted(Path(argv[0]).glob("*.tflite"))
    if not models:
        print(f"no .tflite cases in {argv[0]}", file=sys.stderr)
        return 2
    passed = failed = 0
    per_group: dict[str, list[int]] = {}
    for model in models:
        compared, mismatched, detail = check_case(model)
        kinds = sorted(set(ops_of(model)))
        # One-op cases are counted under their op kind, the others together as chains.
        group = kinds[0] if len(kinds) == 1 else "chains (several op kinds)"
        stats = per_group.setdefault(group, [0, 0, 0])
        stats[0], stats[1], stats[2] = stats[0] + 1, stats[1] + compared, stats[2] + mismatched
        status = "ok  " if mismatched == 0 else "FAIL"
        print(f"{status} {model.stem}: {compared - mismatched}/{compared} equal [{', '.join(kinds)}] {detail}".rstrip())
        passed, failed = passed + (mismatched == 0), failed + (mismatched != 0)
    print("by op kind (cases, elements compared, mismatches):")
    for group, (cases, compared, mismatched) in sorted(per_group.items()):
        print(f"  {group}: {cases} cases, {compared} elements, {mismatched} mismatches")
    totals = [sum(stats[i] for stats in per_group.values()) for i in (1, 2)]
    print(f"{totals[0]} elements compared, {totals[1]} mismatches")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
