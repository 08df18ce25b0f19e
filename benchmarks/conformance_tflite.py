"""Conformance suite, ``.tflite`` half: TensorFlow-made int8 files emulated in the integer executor.

Stage 1 (``benchmarks/tflite_models.py``, run under a TensorFlow virtualenv given by ``--tf-python``)
builds Keras applications and small Keras nets with random weights and converts each with TensorFlow's
converter (full-integer quantization) twice: int8 input and output, and float input and output. Stage 2
(here, in edgeopt's environment) checks every file, and MLPerf Tiny's official int8 ResNet-8 from
``../shared/data/models`` when it is there, in a child process (an abort or a hang becomes a row):

- loads: ``tflite_to_program`` reads the file (what ``edgeopt emulate`` runs);
- LiteRT runs: the reference runs the file on random inputs. The reference is LiteRT's ``BUILTIN_REF``
  (where its resolver registers an op only up to an older version than the converter writes, the opcode is
  read one version lower, and the row says so: ``reference_interpreter``). Where it aborts the process
  (its SOFTMAX does on a 1000-class classifier whose classes none dominates, as with random weights), the
  file is checked again in two parts: ``BUILTIN_REF`` on the ops before that SOFTMAX (the executor's logits
  must equal it), then LiteRT's default kernels with XNNPACK off (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``)
  from the SOFTMAX on, fed ``BUILTIN_REF``'s logits (``wide_softmax_cut``); without such a SOFTMAX (a tiny
  input scale aborts its Prepare), the whole file against the default kernels. The ``reference`` column
  says which;
- bit-exact: the executor (double rounding) equals the reference element for element on every output;
- seconds and peak RSS of the child, or the one-line error.

    PYTHONPATH=. python benchmarks/conformance_tflite.py [--tf-python /work/tfvenv/bin/python]
        [--files DIR] [--models a,b] [--json rows.json]

``--files DIR`` holding a ``manifest.json`` reuses stage 1's output (``--rebuild`` makes it again).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmarks.conformance import _cell, packed_model, reference_interpreter, row_finisher, run_isolated

TF_PYTHON = "/work/tfvenv/bin/python"
SAMPLES = 4
TIMEOUT_S = 600
MLPERF_RESNET8 = (Path(__file__).resolve().parents[2] / "shared/data/models/mlperf_tiny_resnet8"
                  / "pretrainedResnet_quant.tflite")
REFERENCES = {"reference": "BUILTIN_REF", "default_no_delegates": "default kernels, XNNPACK off",
              "split": "BUILTIN_REF, from the wide SOFTMAX on default kernels, XNNPACK off"}
# Only a SOFTMAX over this many classes or more can make BUILTIN_REF abort at run time (its sum of
# exponentials must reach 2**9; each is at most 1).
WIDE_SOFTMAX = 512


@dataclass
class TfliteRow:
    """One file's result. ``None`` in a stage field: that stage was not reached."""

    STAGES: ClassVar[dict[str, str]] = {"loads": "load", "litert_runs": "the LiteRT reference run"}

    model: str
    io: str
    loads: bool | None = None
    litert_runs: bool | None = None
    reference: str | None = None
    bitexact: bool | None = None
    max_diff: float | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None


def random_inputs(program: Any, value_range: tuple[float, float], samples: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """Uniform random real inputs in ``value_range``, as the file takes them: float32 for a float input,
    quantized with the input's parameters for an int8 one."""
    arrays = []
    for name in program.inputs:
        tensor = program.tensor(name)
        x = rng.uniform(*value_range, (samples * tensor.shape[0], *tensor.shape[1:]))
        arrays.append(x.astype(np.float32) if tensor.qparams is None else tensor.qparams.quantize(x))
    return arrays


def check_tflite(path: Path, row: TfliteRow, value_range: tuple[float, float], kernels: str = "reference",
                 samples: int = SAMPLES, progress: Callable[[TfliteRow], None] = lambda _: None) -> TfliteRow:
    """Read one ``.tflite`` into the executor and compare it with LiteRT's ``kernels`` (a key of
    ``REFERENCES``); fill ``row`` stage by stage (``progress`` sees each stage). Every failure ends the row
    with its one-line error."""
    from edgeopt.pipeline.frontend.tflite import tflite_to_program
    from edgeopt.runtimes.reference.executor import run_intermediates, run_program

    start = time.perf_counter()

    finish = row_finisher(row, start, progress)

    try:
        row.loads = False
        progress(row)
        data = path.read_bytes()
        program = tflite_to_program(data, path.name, "double")
        row.loads = True
        inputs = random_inputs(program, value_range, samples, np.random.default_rng(0))
        row.litert_runs = False
        progress(row)  # BUILTIN_REF may abort the process from here on
        cut = wide_softmax_cut(data) if kernels == "split" else None
        prefix_exact = True
        if cut is None:
            kernels = "default_no_delegates" if kernels == "split" else kernels
            litert, notes = reference_interpreter(data, kernels)
            expected = litert.run(inputs)
        else:
            prefix, suffix, logits_name = cut
            litert, notes = reference_interpreter(prefix, "reference")
            logits = litert.run(inputs)[0]
            expected = reference_interpreter(suffix, "default_no_delegates")[0].run([logits])
            prefix_exact = np.array_equal(run_intermediates(program, inputs)[logits_name].reshape(logits.shape), logits)
        row.reference = REFERENCES[kernels] + (f" ({'; '.join(notes)})" if notes else "")
        row.litert_runs = True
        progress(row)
        got = run_program(program, inputs)
        same_shapes = len(got) == len(expected) and all(g.shape == e.shape for g, e in zip(got, expected))
        row.bitexact = prefix_exact and same_shapes and all(np.array_equal(g, e) for g, e in zip(got, expected))
        if same_shapes:
            row.max_diff = max(float(np.max(np.abs(g.astype(np.float64) - e), initial=0.0))
                               for g, e in zip(got, expected))
    except Exception as err:  # noqa: BLE001  every failure is a row
        return finish(err)
    return finish()


def check_isolated(path: Path, row: TfliteRow, value_range: tuple[float, float],
                   timeout_s: float = TIMEOUT_S) -> TfliteRow:
    """``check_tflite`` in a child process against ``BUILTIN_REF``; where that aborts, again in a child with
    ``kernels="split"`` (``BUILTIN_REF`` before a wide SOFTMAX, the default kernels from it; the whole file on
    the default kernels, XNNPACK off, when there is no wide SOFTMAX)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--check", str(path),
               f"--range={value_range[0]},{value_range[1]}"]
    done = run_isolated([*command, "--kernels", "reference"], TfliteRow(row.model, row.io), timeout_s)
    reason = _builtin_ref_refusal(done)
    if reason is not None:
        again = run_isolated([*command, "--kernels", "split"], TfliteRow(row.model, row.io), timeout_s)
        again.reference = f"{again.reference} ({reason})"
        return again
    return done


def _builtin_ref_refusal(row: TfliteRow) -> str | None:
    """``"BUILTIN_REF aborts"`` when the child died in the BUILTIN_REF run, else None."""
    if row.litert_runs is False and row.error and row.error.startswith("Abort"):
        return "BUILTIN_REF aborts"
    return None


def wide_softmax_cut(data: bytes) -> tuple[bytes, bytes, str] | None:
    """The file cut at the input of its first SOFTMAX over ``WIDE_SOFTMAX`` classes or more: the ops before it
    (output: the SOFTMAX's input, the logits), the ops from it (input: the logits; the file's outputs), and the
    logits' tensor name. None when there is no such SOFTMAX or the ops from it read other activations."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    subgraph = model.subgraphs[0]
    ops = subgraph.operators or []
    codes = model.operatorCodes
    softmax = schema.BuiltinOperator.SOFTMAX
    cut = next((k for k, op in enumerate(ops) if max(codes[op.opcodeIndex].builtinCode,
                                                     codes[op.opcodeIndex].deprecatedBuiltinCode) == softmax
                and int(subgraph.tensors[int(op.inputs[0])].shape[-1]) >= WIDE_SOFTMAX), None)
    if cut is None:
        return None
    logits = int(ops[cut].inputs[0])
    constant = {i for i, t in enumerate(subgraph.tensors) if model.buffers[t.buffer].data is not None}
    available = {logits} | constant
    for op in ops[cut:]:
        if any(int(i) >= 0 and int(i) not in available for i in op.inputs):
            return None
        available |= {int(o) for o in op.outputs}
    name = subgraph.tensors[logits].name
    name = name.decode() if isinstance(name, bytes) else str(name)
    outputs = list(subgraph.outputs)
    model.signatureDefs = None
    subgraph.operators, subgraph.outputs = ops[:cut], [logits]
    prefix = packed_model(model)
    subgraph.operators, subgraph.inputs, subgraph.outputs = ops[cut:], [logits], outputs
    return prefix, packed_model(model), name


# ---------------------------------------------------------------------------------------------------
# Stage 1 through the TensorFlow environment, then the table.

def build_files(files: Path, tf_python: str, models: Sequence[str] | None, echo: Callable[[str], None]) -> dict:
    """Run stage 1 (``tflite_models.py``) under ``tf_python`` into ``files``; its manifest."""
    command = [tf_python, str(Path(__file__).resolve().parent / "tflite_models.py"), str(files)]
    if models:
        command += ["--models", ",".join(models)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={"TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    for line in proc.stdout.splitlines():
        echo(f"  {line}")
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        sys.exit(f"stage 1 under {tf_python} failed ({proc.returncode}): {last}")
    return json.loads((files / "manifest.json").read_text())


def markdown_table(rows: Sequence[TfliteRow]) -> str:
    """The rows as a markdown table, errors escaped for table cells."""
    header = ["model", "I/O", "loads", "LiteRT runs", "reference", "bit-exact", "max diff", "s", "peak MB", "error"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.model, row.io, row.loads, row.litert_runs, row.reference, row.bitexact,
                 None if row.max_diff is None else f"{row.max_diff:.4g}", row.seconds,
                 row.peak_rss_mb, (row.error or "").replace("|", "\\|")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def summary(rows: Sequence[TfliteRow], tf_version: str) -> str:
    """``N of M .tflite files emulate; K of N bit-exact``, counting the files the converter made."""
    files = [r for r in rows if not (r.error or "").startswith(("build:", "convert:"))]
    emulated = [r for r in files if r.loads and r.litert_runs and r.bitexact is not None]
    exact = [r for r in emulated if r.bitexact]
    fallback = [r for r in emulated if r.reference and "default kernels" in r.reference]
    not_made = len(rows) - len(files)
    return (f"{len(emulated)} of {len(files)} .tflite files emulate ({100 * len(emulated) / max(len(files), 1):.0f} %);"
            f" {len(exact)} of {len(emulated)} bit-exact with BUILTIN_REF ({len(fallback)} of them up to a SOFTMAX on "
            f"which BUILTIN_REF aborts, then with LiteRT's default kernels, XNNPACK off); TensorFlow {tf_version}"
            + (f" ({not_made} not built or converted, not counted)" if not_made else ""))


_IO = {"int8_io": "int8", "float_io": "float"}


def run_suite(manifest: dict, files: Path, timeout_s: float, mlperf: Path | None,
              echo: Callable[[str], None] = print) -> list[TfliteRow]:
    """Check every file of the manifest, then MLPerf Tiny's ResNet-8 when ``mlperf`` exists; one row each."""
    rows: list[TfliteRow] = []
    todo: list[tuple[TfliteRow, Path | None, tuple[float, float], str | None]] = [
        (TfliteRow(e["model"], _IO[e["variant"]]), files / e["file"] if "file" in e else None,
         tuple(e.get("input_range", (-1.0, 1.0))), e.get("error")) for e in manifest["files"]]
    if mlperf is not None and mlperf.is_file():
        todo.append((TfliteRow("mlperf_tiny_resnet8", "int8"), mlperf, (0.0, 255.0), None))
    for row, path, value_range, error in todo:
        if path is None:
            row.error = error
        else:
            row = check_isolated(path, row, value_range, timeout_s)
        rows.append(row)
        echo(f"{row.model} {row.io}: " + (row.error or f"ok, bit-exact={row.bitexact} ({row.reference})"))
    return rows


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", default=TF_PYTHON, help="python of a TensorFlow virtualenv (stage 1)")
    parser.add_argument("--files", type=Path, help="stage 1's folder (kept; reused when it has a manifest)")
    parser.add_argument("--rebuild", action="store_true", help="run stage 1 even if --files has a manifest")
    parser.add_argument("--models", help="comma-separated subset of stage 1's models")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per file")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)  # child mode: one file
    parser.add_argument("--row", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--range", help=argparse.SUPPRESS)
    parser.add_argument("--kernels", default="reference", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite (or, with ``--check``, one file in child mode) and print the table."""
    args = _parse(argv)
    if args.check is not None:
        row = TfliteRow(**json.loads(args.row.read_text()))
        lo, hi = (float(v) for v in args.range.split(","))
        check_tflite(args.check, row, (lo, hi), args.kernels,
                     progress=lambda r: args.row.write_text(json.dumps(asdict(r))))
        return 0
    with tempfile.TemporaryDirectory(prefix="conformance-tflite-") as tmp:
        files = args.files or Path(tmp)
        models = args.models.split(",") if args.models else None
        if args.rebuild or not (files / "manifest.json").is_file():
            print(f"stage 1: Keras models through TensorFlow's converter ({args.tf_python})")
            manifest = build_files(files, args.tf_python, models, print)
        else:
            manifest = json.loads((files / "manifest.json").read_text())
            if models:
                manifest["files"] = [e for e in manifest["files"] if e["model"] in models]
        print("stage 2: each file in the integer executor against LiteRT")
        rows = run_suite(manifest, files, args.timeout, None if args.models else MLPERF_RESNET8)
    print(markdown_table(rows))
    print()
    print(summary(rows, manifest["tensorflow"]))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
