"""Post-training quantization recipes (range setting, AdaRound) against ONNX Runtime's quantize_static.

    python benchmarks/ptq.py [--models resnet20,efficientnet] [--calib-size 1000] [--adaround-iters N]
                             [--recipe-device arm-cortex-a78-xnnpack] [--recipe-max-drop -100]
                             [--recipe-samples 500] [--no-recipe]

For each model: fp32 top-1, then each recipe's int8 top-1 measured in the integer executor (the
lowered int8 program that ships), its top-1 agreement with fp32, and its wall time (calibration →
int8 program, evaluation excluded). Recipes: min/max; min/max after cross-layer equalization (CLE);
CLE + empirical bias correction (on 32 calibration samples); percentile (99.99 % per tail); MSE; SQNR
(AIMET's tf_enhanced-like analyser); MSE + AdaRound at W8, and for ResNet-20 W4A8 with nearest
rounding and with AdaRound. Peers on the same calibration and test data: ONNX Runtime's quantize_static
(QDQ, per-channel int8 weights, int8 activations; MinMax, Entropy, Percentile), each evaluated twice:
its QDQ file read back (``onnx_qdq_reader``) and run in the integer executor with the same arithmetic
as ours (the goal's comparison), and in ONNX Runtime's own kernels, which requantize with one rounding
(on ResNet-20 the two differ by 0.3 point for the same encodings, more than recipes differ).
ResNet-20: CIFAR-10 test1000, calibration from the training calibration file. EfficientNet-Lite0:
ImageNet val1300, calibration from calib_samples (200). Skips (exit 0) when ../shared/data is absent.
The model outputs (logits) keep their min/max under every range method: clipping the top logit
turns argmax into ties.

Last row per model: the full automatic recipe as a user runs it, ``edgeopt.deploy(model, device,
data=..., calib=..., max_drop=...)`` from the ONNX file to the written artifacts, timed end to end
(the issue's goal: under 15 minutes on EfficientNet-Lite0 on 2 cores). The default budget (-100
points) is never met, so the recipe runs every step; its steps are listed under the row, each scored
on the first ``--recipe-samples`` test samples as deploy scores them (the row: the chosen step on all). The machine
is shared, so each row also prints the 1-minute load average when it finished (``os.getloadavg``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import cifar10_nchw, require  # noqa: E402
from sim_gap import sim_gap  # noqa: E402

from edgeopt.pipeline.calibrate import calibrate  # noqa: E402
from edgeopt.workflows.deploy import deploy  # noqa: E402
from edgeopt.pipeline.evaluate import run_float, run_int8, top1  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch, load  # noqa: E402
from edgeopt.pipeline.lower import lower  # noqa: E402
from edgeopt.pipeline.frontend.qdq_onnx import qdq_to_quantized_graph  # noqa: E402
from edgeopt.pipeline.optimize import optimize  # noqa: E402
from edgeopt.pipeline.quantize.minmax import quantize_minmax  # noqa: E402
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization  # noqa: E402
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig, adaround  # noqa: E402
from edgeopt.pipeline.quantize.bias_correction import empirical_bias_correction  # noqa: E402
from edgeopt.pipeline.quantize.range_setting import set_ranges  # noqa: E402
from edgeopt.workflows.recipe import BIAS_CORRECTION_SAMPLES  # noqa: E402
from edgeopt.runtimes.onnxruntime import OnnxRuntime  # noqa: E402

ROUNDING = "double"  # LiteRT 2.3 BUILTIN_REF's arithmetic (the executor is bit-exact with it)


def _resnet20():
    from cifar_resnet import load_checkpoint

    ckpt, test, calib = require("models/resnet_cifar10/resnet20-12fca82f.th", "cifar10/test1000_lossless.npz",
                                "cifar10/calib_train5000_lossless.npz")
    return load_checkpoint(ckpt, 20), (1, 3, 32, 32), cifar10_nchw(test), lambda n: cifar10_nchw(calib, n)[0]


def _efficientnet():
    require("imagenet/val1300", "imagenet/calib_samples")
    from imagenet import calib_samples, efficientnet_lite0, val1300

    return efficientnet_lite0(), (1, 3, 224, 224), val1300(), lambda n: calib_samples(n)


MODELS = {"resnet20": ("ResNet-20 CIFAR-10 test1000", _resnet20, True, 0.3),
          "efficientnet": ("EfficientNet-Lite0 ImageNet val1300", _efficientnet, False, 1.0)}


def _ours(graph, calib_x, x, fp32, y, method: str, stats_cache: dict, weight_bits: int = 8,
          ada: AdaRoundConfig | None = None, cle: bool = False, bias_correction: bool = False
          ) -> tuple[float, float, float, float]:
    start = time.perf_counter()
    if cle:
        graph = cross_layer_equalization(graph)
    key = (method != "minmax", cle)
    if key not in stats_cache:  # calibrated once, its time counted in every row that uses it
        t0 = time.perf_counter()
        stats_cache[key] = (calibrate(graph, calib_x, histograms=key[0]), time.perf_counter() - t0)
        start += stats_cache[key][1]
    stats, calib_s = stats_cache[key]
    ranges = set_ranges(stats, method, keep=frozenset(t.name for t in graph.outputs))
    qgraph = quantize_minmax(graph, ranges, weight_bits=weight_bits)
    if ada is not None:
        result = adaround(qgraph, calib_x, ada)
        qgraph = quantize_minmax(result.graph, ranges, weight_bits=weight_bits,
                                 weight_encodings=result.weight_encodings)
    if bias_correction:
        qgraph = empirical_bias_correction(qgraph, calib_x[:BIAS_CORRECTION_SAMPLES])
    program = lower(qgraph, rounding=ROUNDING)
    wall = time.perf_counter() - start + calib_s
    int8 = run_int8(program, x)
    sim = sim_gap(qgraph, x, y, ROUNDING, int8=int8)  # QuantSim's top-1 on the same encodings
    return top1(int8, y), _agree(int8, fp32), wall, sim.sim_top1


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.reshape(len(a), -1).argmax(1) == b.reshape(len(b), -1).argmax(1)) * 100)


def _ort_peer(onnx_path: Path, calib_x: np.ndarray, x: np.ndarray, fp32, y, method: str, tmp: Path):
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    name = onnx.load(onnx_path).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib_x[i:i + 1] for i in range(len(calib_x)))

        def get_next(self) -> dict | None:
            batch = next(self.it, None)
            return None if batch is None else {name: batch}

    out = tmp / f"ort_{method}.onnx"
    start = time.perf_counter()
    quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method))
    wall = time.perf_counter() - start
    q = OnnxRuntime(onnx.load(out)).run([x])[0]
    ours = run_int8(lower(qdq_to_quantized_graph(onnx.load(out)), rounding=ROUNDING), x)
    return (top1(ours, y), _agree(ours, fp32), wall), (top1(q, y), _agree(q, fp32), wall)


def _recipe(onnx_path: Path, calib_x: np.ndarray, x: np.ndarray, y: np.ndarray, device: str, max_drop: float,
            samples: int, tmp: Path) -> tuple[float, float, float, dict]:
    """``deploy`` with the automatic recipe, timed end to end: (int8 top-1, agreement, wall s, report)."""
    np.savez(tmp / "data.npz", x=x, y=y)
    np.savez(tmp / "calib.npz", x=calib_x)
    start = time.perf_counter()
    result = deploy(str(onnx_path), device, data=tmp / "data.npz", calib=tmp / "calib.npz", out=tmp / "deploy",
                    calib_size=len(calib_x), max_drop=max_drop, recipe_samples=samples)
    wall = time.perf_counter() - start
    accuracy = result.report["accuracy"]
    return accuracy["int8"], accuracy["agreement"], wall, result.report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,efficientnet")
    parser.add_argument("--calib-size", type=int, default=1000, help="ResNet-20 calibration images")
    parser.add_argument("--adaround-iters", type=int, default=AdaRoundConfig().iterations)
    parser.add_argument("--peers", default="MinMax,Entropy,Percentile")
    parser.add_argument("--recipe-device", default="arm-cortex-a78-xnnpack", help="profile for the automatic recipe")
    parser.add_argument("--recipe-max-drop", type=float, default=-100.0,
                        help="the recipe's budget in points (default: never met, so every step runs)")
    parser.add_argument("--recipe-samples", type=int, default=500,
                        help="the recipe scores its steps on this many test samples (0: all), as deploy does")
    parser.add_argument("--no-recipe", action="store_true", help="skip the automatic recipe row")
    args = parser.parse_args()
    for key in args.models.split(","):
        title, make, w4, budget = MODELS[key]
        module, shape, (x, y), calib = make()
        calib_x = calib(args.calib_size)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            onnx_path = tmp / "model.onnx"
            onnx_path.write_bytes(export_torch(module, torch.zeros(shape)).SerializeToString())
            graph = optimize(load(str(onnx_path)).graph)
            fp32 = run_float(graph, x)
            fp32_top1 = top1(fp32, y)
            print(f"\n{title} (n={len(x)}), calibration {len(calib_x)} images, {ROUNDING} rounding; "
                  f"fp32 top-1 {fp32_top1:.2f} %")
            print(f"  {'recipe':36s} {'int8 top-1':>10s} {'Δ fp32':>7s} {'agree':>7s} {'wall s':>7s} {'load':>5s} "
                  f"{'sim top-1':>9s} {'sim−int8':>8s}")
            rows: dict[str, float] = {}

            def row(label: str, res: tuple[float, ...]) -> None:
                rows[label] = res[0]
                sim = f" {res[3]:8.2f}% {res[3] - res[0]:+8.2f}" if len(res) > 3 else ""
                print(f"  {label:36s} {res[0]:9.2f}% {res[0] - fp32_top1:+7.2f} {res[1]:6.2f}% {res[2]:7.1f} "
                      f"{os.getloadavg()[0]:5.1f}{sim}", flush=True)

            cache: dict = {}
            ada = AdaRoundConfig(iterations=args.adaround_iters)
            row("ours W8A8 minmax", _ours(graph, calib_x, x, fp32, y, "minmax", cache))
            row("ours W8A8 minmax + CLE", _ours(graph, calib_x, x, fp32, y, "minmax", cache, cle=True))
            row("ours W8A8 minmax + CLE + bias corr.",
                _ours(graph, calib_x, x, fp32, y, "minmax", cache, cle=True, bias_correction=True))
            for method in ("percentile", "mse", "sqnr"):
                row(f"ours W8A8 {method}", _ours(graph, calib_x, x, fp32, y, method, cache))
            row("ours W8A8 mse + AdaRound", _ours(graph, calib_x, x, fp32, y, "mse", cache, ada=ada))
            if w4:
                row("ours W4A8 mse (nearest)", _ours(graph, calib_x, x, fp32, y, "mse", cache, 4))
                row("ours W4A8 mse + AdaRound", _ours(graph, calib_x, x, fp32, y, "mse", cache, 4, ada))
            for method in args.peers.split(","):
                executor, runtime = _ort_peer(onnx_path, calib_x, x, fp32, y, method, tmp)
                row(f"ORT {method}, in the executor", executor)
                row(f"ORT {method}, in ONNX Runtime", runtime)
            if not args.no_recipe:
                *res, report = _recipe(onnx_path, calib_x, x, y, args.recipe_device, args.recipe_max_drop,
                                       args.recipe_samples, tmp)
                row(f"automatic recipe (max drop {args.recipe_max_drop:g})", tuple(res))
                screening = report["recipe_budget"].get("screening")
                on = f"first {screening['samples']}" if screening else "all"
                print(f"    steps scored on the {on} of {len(x)} test samples; chosen "
                      f"'{report['recipe_budget']['chosen']}'")
                for s in report["recipe"]:
                    confirmed = f" ({s['int8_all']:.2f}% on all)" if "int8_all" in s else ""
                    print(f"    step {s['step']:30s} {s['int8']:9.2f}%{confirmed} {s['seconds']:7.1f} s "
                          f"{'adopted' if s['adopted'] else 'dropped'}")
                print(f"  goal full automatic recipe under 15 minutes on 2 cores ({res[2] / 60:.1f} min, "
                      f"load {os.getloadavg()[0]:.1f}): {'met' if res[2] < 15 * 60 else 'MISSED'}")
        ours8 = max(v for k, v in rows.items() if k.startswith("ours W8"))
        peers = [v for k, v in rows.items() if k.startswith("ORT") and k.endswith("executor")]
        print(f"  goal int8 within {budget} point of fp32 (best W8 recipe {ours8:.2f} %): "
              f"{'met' if fp32_top1 - ours8 <= budget else 'MISSED'}")
        if peers:
            print(f"  goal at least as good as the best ORT method, both in the executor ({max(peers):.2f} %): "
                  f"{'met' if ours8 >= max(peers) else 'MISSED'}")
            in_ort = max(v for k, v in rows.items() if k.startswith("ORT") and k.endswith("Runtime"))
            print(f"  (the best ORT method in ONNX Runtime's own single-rounding kernels: {in_ort:.2f} %)")
        if w4:
            w4a8 = rows["ours W4A8 mse + AdaRound"]
            print(f"  goal W4A8 + AdaRound within 2.5 points ({w4a8:.2f} %): "
                  f"{'met' if fp32_top1 - w4a8 <= 2.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
