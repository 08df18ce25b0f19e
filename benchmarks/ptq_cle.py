"""Min/max vs + cross-layer equalization vs + bias correction on ResNet-20 and EfficientNet-Lite0.

    python benchmarks/ptq_cle.py [--models resnet20,efficientnet] [--imagenet-limit 300] [--bc-samples 32]

For each weight granularity (per-channel, the TFLite spec; per-tensor, where CLE matters) and recipe,
prints fp32 top-1 (ONNX Runtime), int8 top-1 measured by running the lowered int8 program in the integer
executor (double rounding), top-1 agreement with fp32, and the wall time of the recipe (calibrate, CLE,
quantize, bias correction, lower; evaluation excluded). The models go through ``export_torch``, whose
exporter folds batch norms itself, so no batch-norm statistics reach ``fold_batch_norm``: high-bias
absorption and analytical bias correction are skipped here (they need them).
Skips (exit 0) when ../shared/data is absent.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_resnet import load_checkpoint  # noqa: E402
from shared_data import cifar10_nchw, require  # noqa: E402

from edgeopt.ir import Graph, QuantizedGraph  # noqa: E402
from edgeopt.pipeline.calibrate import calibrate  # noqa: E402
from edgeopt.pipeline.evaluate import run_float, run_int8, top1  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch  # noqa: E402
from edgeopt.pipeline.lower import lower  # noqa: E402
from edgeopt.pipeline.frontend.onnx import onnx_to_graph  # noqa: E402
from edgeopt.pipeline.optimize import optimize  # noqa: E402
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization  # noqa: E402
from edgeopt.pipeline.quantize.minmax import quantize_minmax  # noqa: E402
from edgeopt.pipeline.quantize.bias_correction import (  # noqa: E402
    analytical_bias_correction, empirical_bias_correction)
from edgeopt.pipeline.quantize.per_tensor_weights import per_tensor_weights  # noqa: E402


Recipe = tuple[str, str, bool]  # (name, bias correction: "", "empirical", "analytical"; CLE)
RECIPES: list[Recipe] = [("min/max", "", False), ("+ CLE", "", True), ("+ CLE + empirical BC", "empirical", True),
                         ("min/max + empirical BC", "empirical", False)]


def run_recipe(graph: Graph, calib: np.ndarray, bc_x: np.ndarray, recipe: Recipe, per_tensor: bool,
               relu6: str) -> tuple[QuantizedGraph, float, object]:
    start = time.perf_counter()
    _, bc, cle = recipe
    if cle:
        graph = cross_layer_equalization(graph, relu6=relu6)
    qgraph = quantize_minmax(graph, calibrate(graph, calib))
    if per_tensor:
        qgraph = per_tensor_weights(qgraph)
    if bc == "empirical":
        qgraph = empirical_bias_correction(qgraph, bc_x)
    elif bc == "analytical":
        qgraph = analytical_bias_correction(qgraph)
    program = lower(qgraph, rounding="double")
    return qgraph, time.perf_counter() - start, program


def bench(title: str, graph: Graph, calib: np.ndarray, x: np.ndarray, y: np.ndarray, bc_samples: int,
          relu6_policies: list[str], log: Callable[[str], None]) -> None:
    fp32 = run_float(graph, x)
    fp32_top1 = top1(fp32, y)
    log(f"\n{title}: n={len(x)}, calibration {len(calib)} images, bias correction on {bc_samples}")
    log(f"  fp32 top-1 (ONNX Runtime) {fp32_top1:6.2f} %")
    log(f"  {'weights':11} {'recipe':30} {'int8 top-1':>10} {'drop':>6} {'agree':>7} {'wall s':>7}")
    for per_tensor in (False, True):
        for relu6 in relu6_policies:
            for recipe in RECIPES:
                if relu6 != relu6_policies[0] and not recipe[2]:
                    continue  # the ReLU6 policy only changes recipes with CLE
                _, wall, program = run_recipe(graph, calib, calib[:bc_samples], recipe, per_tensor, relu6)
                int8 = run_int8(program, x)
                acc = top1(int8, y)
                agree = float(np.mean(int8.reshape(len(x), -1).argmax(1) == fp32.reshape(len(x), -1).argmax(1)) * 100)
                name = recipe[0] + (f" [relu6={relu6}]" if recipe[2] and len(relu6_policies) > 1 else "")
                weights = "per-tensor" if per_tensor else "per-channel"
                log(f"  {weights:11} {name:30} {acc:9.2f}% {acc - fp32_top1:+6.2f} {agree:6.2f}% {wall:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,efficientnet")
    parser.add_argument("--calib-size", type=int, default=1000, help="CIFAR-10 calibration images")
    parser.add_argument("--imagenet-limit", type=int, default=1300, help="ImageNet val images evaluated")
    parser.add_argument("--bc-samples", type=int, default=32, help="calibration images for empirical BC")
    args = parser.parse_args()
    log = lambda s: print(s, flush=True)  # noqa: E731
    models = args.models.split(",")
    if "resnet20" in models:
        ckpt, test, calib = require("models/resnet_cifar10/resnet20-12fca82f.th", "cifar10/test1000_lossless.npz",
                                    "cifar10/calib_train5000_lossless.npz")
        onnx_model = export_torch(load_checkpoint(ckpt, 20), torch.zeros(1, 3, 32, 32))
        graph = optimize(onnx_to_graph(onnx_model, "resnet20"))
        x, y = cifar10_nchw(test)
        bench("ResNet-20 CIFAR-10 test1000", graph, cifar10_nchw(calib, args.calib_size)[0], x, y,
              args.bc_samples, ["exact"], log)
    if "efficientnet" in models:
        require("imagenet/dataset.txt", "imagenet/calib_samples")
        from imagenet import calib_samples, efficientnet_lite0, val1300

        onnx_model = export_torch(efficientnet_lite0(), torch.zeros(1, 3, 224, 224))
        graph = optimize(onnx_to_graph(onnx_model, "efficientnet_lite0"))
        x, y = val1300(args.imagenet_limit)
        bench("EfficientNet-Lite0 ImageNet val", graph, calib_samples(), x, y, args.bc_samples,
              ["exact", "relu"], log)


if __name__ == "__main__":
    main()
