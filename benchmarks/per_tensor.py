"""Per-tensor-weight target (snapdragon-845-hexagon-dsp, SNPE's scheme): each technique and the automatic
recipe, measured on the integer program that would ship.

    python benchmarks/per_tensor.py [--models resnet20,efficientnet] [--calib-size 200] [--max-drop 0.5]
                                    [--adaround-iters 300] [--adaround-samples 256] [--finetune-epochs 2]
                                    [--no-recipe] [--no-chain] [--skip N] [--rows N]

For each model: fp32 top-1; then a cumulative chain, each row adding one technique to the row before
(whether it helped or not), quantized through the profile's ``Target`` and lowered, executed int8 top-1
on all evaluation samples (the integer executor, bit-exact with LiteRT BUILTIN_REF) and the seconds the
row's own technique took (evaluation excluded): min/max; + CLE (``relu6="exact"``: only provably inactive
clips); + CLE across ReLU6 (``relu6="clip"``: per-channel MINIMUM), the chain goes on from it; + bias
correction; + weight-range search (per-tensor MSE); + AdaRound; + fine-tuning (quantization-aware,
distilled from fp32 on the calibration images, no labels). Last row: the automatic recipe as a user runs
it, ``edgeopt.deploy(model, "snapdragon-845-hexagon-dsp", data=..., calib=..., max_drop=...)`` from the
ONNX file to the written artifacts, timed end to end, with its steps, the step that met the budget and
its accuracy on the held-out half of the data it did not select on (drop paired with fp32, with its
standard error, and whether the budget is met there and on both halves together); the recipe's steps are
logged with the time as they end.

The device's weights are asymmetric per tensor (SNPE); the shipped .tflite carries symmetric per-tensor
int8 weights (LiteRT's int8 kernels take weight zero point 0), and the first accuracy of each row is that
shipped program's. Each row then gives the device scheme's executed top-1 (``Target.device_program``:
the same graph with SNPE's asymmetric per-tensor weights, rounded to nearest from the row's float
weights, run by the integer executor with its weight offset; the row's biases are kept as they are) and
the output SQNR (dB, against fp32 on the evaluation samples) of the shipped program and of the device
scheme's. The cost of the representation is also printed per model as the weight SQNR (dB) of each layer
under the device's asymmetric 8-bit grid and under the shipped symmetric one (min/max, per tensor), and,
under the bias-correction row, the QDQ model in ONNX Runtime with the shipped symmetric weights and with
the device's asymmetric ones (bias correction run for each; both simulated in float between quantize and
dequantize, so the two figures compare with each other, not with the executed ones). ``--rows N`` scores
only the chain's first N rows (a long model within a CPU budget).

ResNet-20: CIFAR-10 test1000, calibration from the training calibration file. EfficientNet-Lite0:
ImageNet val1300, calibration from calib_samples (200). Skips (exit 0) when ../shared/data is absent.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ptq import MODELS  # noqa: E402

from edgeopt.device_profiles import load_profile  # noqa: E402
from edgeopt.ir import Graph, QuantizedGraph  # noqa: E402
from edgeopt.pipeline.emit.onnx import quantized_to_onnx  # noqa: E402
from edgeopt.pipeline.evaluate import run_float, run_int8, top1  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch, load  # noqa: E402
from edgeopt.pipeline.optimize import optimize  # noqa: E402
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization  # noqa: E402
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig, adaround  # noqa: E402
from edgeopt.pipeline.quantize.bias_correction import empirical_bias_correction  # noqa: E402
from edgeopt.pipeline.quantize.spec import WEIGHTED_OPS  # noqa: E402
from edgeopt.pipeline.quantize.weight_scheme import asymmetric_sqnr_db, device_weights, symmetric_sqnr_db  # noqa: E402
from edgeopt.pipeline.target import Target  # noqa: E402
from edgeopt.torch.finetune import finetune_quantized  # noqa: E402
from edgeopt.workflows.deploy import deploy  # noqa: E402
from edgeopt.runtimes.onnxruntime import OnnxRuntime  # noqa: E402
from edgeopt.workflows.recipe import BIAS_CORRECTION_SAMPLES  # noqa: E402

DEVICE = "snapdragon-845-hexagon-dsp"
FINETUNE_SAMPLES = 256  # the recipe's FineTuneConfig.samples: all of the default 200 calibration images


def weight_scheme_cost(graph: Graph) -> tuple[float, float, float]:
    """Median over layers of the weight SQNR (dB) under SNPE's asymmetric per-tensor 8-bit grid, under the
    shipped symmetric per-tensor int8 grid, and the largest loss of one layer (asymmetric - symmetric)."""
    asym, sym = [], []
    for node in graph.nodes:
        if node.op not in WEIGHTED_OPS or node.inputs[1] not in graph.initializers:
            continue
        w = np.asarray(graph.initializers[node.inputs[1]], np.float64)
        asym.append(asymmetric_sqnr_db(w))
        sym.append(symmetric_sqnr_db(w))
    gap = np.array(asym) - np.array(sym)
    return float(np.median(asym)), float(np.median(sym)), float(gap.max())


def qdq_top1(qgraph: QuantizedGraph, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of the QDQ model of ``qgraph`` in ONNX Runtime (float arithmetic between quantize-dequantize)."""
    return top1(OnnxRuntime(quantized_to_onnx(qgraph)).run_batch(x)[0], y)


def sqnr_db(reference: np.ndarray, got: np.ndarray) -> float:
    """Output SQNR (dB) of ``got`` against ``reference``."""
    noise = float(np.sum((reference.astype(np.float64) - got) ** 2))
    return float(10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(noise, 1e-30)))


class RowsDone(Exception):
    """The chain scored the rows ``--rows`` asked for."""


def chain(graph: Graph, calib_x: np.ndarray, x: np.ndarray, y: np.ndarray, fp32: np.ndarray, target: Target,
          ada: AdaRoundConfig, epochs: int, skip: int = 0, limit: int | None = None) -> list[tuple]:
    """(row, int8 top-1, seconds, device-scheme top-1, shipped output SQNR, device-scheme output SQNR) of the
    cumulative chain (module docstring; ``fp32``: the float outputs on ``x``); the first ``skip`` rows are
    built but not scored (to resume a run), and it stops after ``limit`` rows."""
    rows: list[tuple] = []

    def score(name: str, qgraph: QuantizedGraph, t: Target, seconds: float) -> None:
        if len(rows) < skip:
            rows.append((name, float("nan"), seconds))
            print(f"  {name:32s} (not scored: --skip)", flush=True)
            return
        shipped = t.ship(qgraph)
        out = run_int8(shipped.program, x)
        device = run_int8(t.device_program(shipped), x)
        rows.append((name, top1(out, y), seconds, top1(device, y), sqnr_db(fp32, out), sqnr_db(fp32, device)))
        print(f"  {name:32s} {rows[-1][1]:6.2f} %  {seconds:7.1f} s  device scheme {rows[-1][3]:6.2f} %  "
              f"output SQNR shipped {rows[-1][4]:5.2f} dB, device {rows[-1][5]:5.2f} dB  "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
        if limit is not None and len(rows) >= limit:
            raise RowsDone

    start = time.perf_counter()
    q = target.quantize(graph, target.ranges(graph, calib_x))
    score("min/max", q, target, time.perf_counter() - start)
    start = time.perf_counter()
    exact = cross_layer_equalization(graph, relu6="exact")
    score("+ CLE (provable ReLU6 only)", target.quantize(exact, target.ranges(exact, calib_x)), target,
          time.perf_counter() - start)
    start = time.perf_counter()
    clip = cross_layer_equalization(graph, relu6="clip")
    stats = target.ranges(clip, calib_x)
    q = target.quantize(clip, stats)
    score("+ CLE across ReLU6 (MINIMUM)", q, target, time.perf_counter() - start)
    start = time.perf_counter()
    q_bc = empirical_bias_correction(q, calib_x[:BIAS_CORRECTION_SAMPLES])
    score("+ bias correction", q_bc, target, time.perf_counter() - start)
    if len(rows) > skip:
        device = empirical_bias_correction(device_weights(q, target.rules), calib_x[:BIAS_CORRECTION_SAMPLES])
        print(f"    (QDQ in ONNX Runtime, this row: shipped symmetric weights {qdq_top1(q_bc, x, y):.2f} %, "
              f"device's asymmetric weights {qdq_top1(device, x, y):.2f} %)", flush=True)
    start = time.perf_counter()
    mse = replace(target, weight_range_method="mse")
    q = empirical_bias_correction(mse.quantize(clip, stats), calib_x[:BIAS_CORRECTION_SAMPLES])
    score("+ weight-range search (mse)", q, mse, time.perf_counter() - start)
    start = time.perf_counter()
    result = adaround(mse.quantize(clip, stats), calib_x, ada)
    q = mse.quantize(result.graph, stats, weight_encodings=result.weight_encodings)
    q = empirical_bias_correction(q, calib_x[:BIAS_CORRECTION_SAMPLES])
    score("+ AdaRound", q, mse, time.perf_counter() - start)
    start = time.perf_counter()
    trained = finetune_quantized(q, graph, calib_x[:FINETUNE_SAMPLES], mse, epochs=epochs)
    score("+ fine-tuning (QAT, distilled)", mse.quantize(trained, stats), mse, time.perf_counter() - start)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,efficientnet")
    parser.add_argument("--calib-size", type=int, default=200)
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--adaround-iters", type=int, default=300)
    parser.add_argument("--adaround-samples", type=int, default=256)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--no-recipe", action="store_true")
    parser.add_argument("--no-chain", action="store_true", help="only fp32 and the automatic recipe")
    parser.add_argument("--skip", type=int, default=0, help="build but do not score the chain's first N rows")
    parser.add_argument("--rows", type=int, default=None, help="score only the chain's first N rows")
    args = parser.parse_args()
    logging.basicConfig(format="    %(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("edgeopt.workflows.recipe").setLevel(logging.INFO)
    torch.set_num_threads(1)
    target = Target(load_profile(DEVICE))
    for key in args.models.split(","):
        title, make, _, _ = MODELS[key]
        try:
            module, shape, (x, y), calib = make()
        except SystemExit:
            print(f"{title}: data not found, skipped")
            continue
        calib_x = calib(args.calib_size)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / f"{key}.onnx"
            onnx_path.write_bytes(export_torch(module, torch.zeros(shape)).SerializeToString())
            graph = optimize(load(str(onnx_path)).graph)
            print(f"\n{title} on {DEVICE} ({len(x)} eval, {len(calib_x)} calib samples)", flush=True)
            fp32 = run_float(graph, x)
            print(f"  {'fp32':32s} {top1(fp32, y):6.2f} %")
            a, s, worst = weight_scheme_cost(graph)
            print(f"  weights, median SQNR over layers: device asymmetric {a:.2f} dB, shipped symmetric {s:.2f} dB "
                  f"(worst layer loses {worst:.2f} dB)")
            if not args.no_chain:
                try:
                    chain(graph, calib_x, x, y, fp32, target,
                          AdaRoundConfig(iterations=args.adaround_iters, samples=args.adaround_samples),
                          args.finetune_epochs, args.skip, args.rows)
                except RowsDone:
                    pass
            if args.no_recipe:
                continue
            np.savez(Path(tmp) / "data.npz", x=x, y=y)
            np.savez(Path(tmp) / "calib.npz", x=calib_x)
            start = time.perf_counter()
            result = deploy(str(onnx_path), DEVICE, data=Path(tmp) / "data.npz", calib=Path(tmp) / "calib.npz",
                            out=Path(tmp) / "out", max_drop=args.max_drop)
            seconds = time.perf_counter() - start
            budget = result.report["recipe_budget"]
            for step in result.report["recipe"]:
                extra = f", {step['int8_all']:.2f} on the whole split" if "int8_all" in step else ""
                print(f"    recipe step {step['step']:28s} {step['int8']:6.2f} %{extra}  {step['seconds']:6.1f} s"
                      f"{'' if step['adopted'] else '  (dropped)'}")
            held = budget["held_out"]
            both = held["combined"]
            device = result.report["accuracy"].get("device_scheme", {}).get("int8", float("nan"))
            print(f"  {'automatic recipe':32s} {result.report['accuracy']['int8']:6.2f} % on all {len(x)}  "
                  f"(device scheme {device:.2f} %)  "
                  f"{seconds:7.1f} s  (load {os.getloadavg()[0]:.1f})  budget {args.max_drop} "
                  f"{'met' if budget['met'] else 'missed'} on {budget.get('tuned_on')} by '{budget['chosen']}'; "
                  f"held out ({held['source']}): int8 {held['int8']:.2f} vs fp32 {held['fp32']:.2f}, drop "
                  f"{held['drop']:.2f} ±{held['drop_se']:.2f} ({_verdict(held)}); both halves: drop "
                  f"{both['drop']:.2f} ±{both['drop_se']:.2f} ({_verdict(both)})", flush=True)


def _verdict(entry: dict) -> str:
    if entry["met"]:
        return "within the budget"
    return "over the budget" + (", by less than one standard error" if entry["within_error"] else "")


if __name__ == "__main__":
    main()
