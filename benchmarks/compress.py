"""Compress ResNet-32 (CIFAR-10) and EfficientNet-Lite0 (ImageNet) to 50 % and 70 % of their MACs:
int8 top-1 before compression, after it and after label-free fine-tuning; the ratios chosen; host fps.

    python benchmarks/compress.py [--models resnet32,efficientnet_lite0] [--targets 0.5,0.7]
        [--methods svd,prune] [--channel-multiple N] [--finetune-epochs N] [--no-augment]
        [--lr LR] [--features W] [--mix none|mixup|cutmix]   # distillation (default: distill's)
        [--latency-device host]   # targets as fractions of the latency priced on that profile
        [--prune-groups]          # also prune residual streams' tied channel groups

Each model is exported to a float .onnx and compressed label-free (layers scored by output SQNR against
the uncompressed model on calibration images, pruning re-fit on the same images; kept channel counts
and SVD ranks are multiples of ``--channel-multiple``). Each model is deployed (arm-cortex-a78-xnnpack,
which also writes ``model.fp32.tflite``), then fine-tuned without labels (distillation from the
uncompressed model, logits and residual stream, on random flips and shifts of other calibration images)
and deployed again.

- ResNet-32: scored and re-fit on 64 CIFAR-10 *training* images, deploy-calibrated on 500 others,
  distilled on ``--finetune-size`` others; evaluated on test1000.
- EfficientNet-Lite0: everything on ImageNet's 200 ``calib_samples`` (scored and re-fit on 32 of them,
  deploy-calibrated on 100, distilled on augmented views of all 200); evaluated on val1300, which is
  never used for anything else. Distillation at 224x224 on one CPU thread costs about 0.1 s per image,
  so its epochs are fewer: the defaults keep the whole benchmark near 30-40 CPU-minutes.

Top-1 (fp32 and int8) is measured by running ``model.fp32.tflite`` and ``model.int8.tflite`` under LiteRT
with XNNPACK (single rounding: what the profile emulates; the files are the ones timed). Host fps: the
same files, LiteRT's default kernels (XNNPACK), one thread, median of timed invocations, every file of a
model timed in turns (5 rounds) so that a load change on the shared machine hits them all alike. Estimated fps:
the arm-cortex-a78-xnnpack profile's cost model, and the host profile's. Skips (exit 0) when
../shared/data is absent.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_resnet import load_checkpoint  # noqa: E402
from shared_data import cifar10_nchw, require  # noqa: E402

from edgeopt.device_profiles import load_profile  # noqa: E402
from edgeopt.pipeline.emit.onnx import graph_to_onnx, write_onnx  # noqa: E402
from edgeopt.pipeline.evaluate import quantize_input  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch, load  # noqa: E402
from edgeopt.runtimes.cost import estimate  # noqa: E402
from edgeopt.runtimes.litert import LiteRT  # noqa: E402
from edgeopt.torch.distill import distill  # noqa: E402
from edgeopt.torch.views import MIXES  # noqa: E402
from edgeopt.workflows.compress import CompressResult, compress  # noqa: E402
from edgeopt.workflows.deploy import DeployResult, deploy  # noqa: E402


@dataclass(frozen=True)
class Setup:
    """One model and its data, as the benchmark uses them."""

    title: str
    module: torch.nn.Module
    shape: tuple[int, ...]
    test: tuple[np.ndarray, np.ndarray]
    deploy_calib: np.ndarray
    compress_calib: np.ndarray
    finetune: np.ndarray
    epochs: int
    timed_runs: int
    score_x: np.ndarray | None = None  # label-free scoring inputs apart from the re-fit's (None: the same)


def _resnet32(args: argparse.Namespace) -> Setup:
    ckpt, test, calib = require("models/resnet_cifar10/resnet32-d509ac18.th", "cifar10/test1000_lossless.npz",
                                "cifar10/calib_train5000_lossless.npz")
    pool = cifar10_nchw(calib, 500 + args.finetune_size)[0]
    return Setup("ResNet-32 CIFAR-10 test1000", load_checkpoint(ckpt, 32), (1, 3, 32, 32), cifar10_nchw(test),
                 pool[:500], pool[500 - 64:500], pool[500:], args.finetune_epochs, 200)


def _efficientnet_lite0(args: argparse.Namespace) -> Setup:
    require("imagenet/val1300", "imagenet/calib_samples")
    from imagenet import calib_samples, efficientnet_lite0, val1300

    calib = calib_samples()
    # At 7x7, 32 images give a 1152-input 1x1 conv's least-squares re-fit 1568 rows: it overfits them,
    # and scored on the same images it looks harmless (in-sample SQNR) while it ruins held-out images.
    # So the re-fit sees 96 images and the scoring 64 others.
    return Setup("EfficientNet-Lite0 ImageNet val1300", efficientnet_lite0(), (1, 3, 224, 224), val1300(),
                 calib[:100], calib[-96:], calib, args.imagenet_finetune_epochs, 50, score_x=calib[:64])


MODELS: dict[str, Callable[[argparse.Namespace], Setup]] = {
    "resnet32": _resnet32, "efficientnet_lite0": _efficientnet_lite0}


# The files are timed in turns, this many rounds, so that a load change on a shared machine hits them all.
TIMING_ROUNDS = 5


def _top1_and_fps(deps: list[DeployResult], x: np.ndarray, y: np.ndarray, runs: int
                  ) -> list[dict[str, tuple[float, float]]]:
    """Per deployed model, ``{"int8": (top-1 %, host fps), "fp32": ...}`` of its .tflite files under LiteRT
    XNNPACK, one thread; fps is the median over ``TIMING_ROUNDS`` turns of ``runs / TIMING_ROUNDS`` runs."""
    files = []
    for dep in deps:
        for name in ("int8", "fp32"):
            runtime = LiteRT(dep.out_dir / f"model.{name}.tflite", kernels="default", num_threads=1)
            inputs = quantize_input(dep.program, x) if name == "int8" else x
            if inputs.shape[1:] != tuple(runtime.input_details[0].shape[1:]):  # the float file reads NHWC too
                inputs = np.ascontiguousarray(inputs.transpose(0, 2, 3, 1))
            logits = runtime.run([inputs])[0]
            files.append((runtime, inputs[:1], float(np.mean(logits.reshape(len(x), -1).argmax(1) == y) * 100)))
    times: list[list[float]] = [[] for _ in files]
    per_round = max(1, runs // TIMING_ROUNDS)
    for _ in range(TIMING_ROUNDS):
        for (runtime, one, _), spent in zip(files, times):
            spent += runtime.time_inference([one], runs=per_round, warmup=max(2, per_round // 10))
    results = [(top1, 1.0 / statistics.median(t)) for (_, _, top1), t in zip(files, times)]
    return [{"int8": results[2 * i], "fp32": results[2 * i + 1]} for i in range(len(deps))]


def _every_tenth(prefix: str) -> Callable[[str], None]:
    """A progress callback printing every message but the scoring steps, of which every tenth."""
    def say(message: str) -> None:
        count = message.split()[-1].split("/")
        if message.startswith("scoring layers") and len(count) == 2:
            done = int(count[0])
            if done % 10 and done != 1:
                return
        print(f"{prefix}: {message} ({time.process_time():.0f} CPU s)", flush=True)
    return say


def _short(layer: str) -> str:
    parts = [p for p in layer.split("/") if p][:-1] or [layer]
    return "/".join(parts[-2:]).replace("_blocks.", "b").replace("_project_conv", "proj") \
        .replace("_expand_conv", "exp").replace("layer", "L")


def _ratios(result: CompressResult) -> str:
    by_method: dict[str, list[str]] = {}
    for r in result.rows:
        by_method.setdefault(r.method, []).append(f"{_short(r.layer)} {r.macs_after / r.macs_before:.2f}")
    skipped = len(result.table.skipped)
    return "; ".join(f"{m} ({len(v)}): " + ", ".join(v) for m, v in by_method.items()) + \
        f"; {skipped} layers never compressible"


def _distill_options(args: argparse.Namespace) -> dict[str, object]:
    """The distillation options given on the command line (the others keep ``distill``'s defaults)."""
    given = {"lr": args.lr, "features": args.features, "mix": args.mix}
    return {k: (None if v == "none" else v) for k, v in given.items() if v is not None}


def bench(name: str, args: argparse.Namespace, tmp: Path, device: str) -> None:
    cpu0 = time.process_time()
    setup = MODELS[name](args)
    onnx_path = tmp / f"{name}.onnx"
    onnx_path.write_bytes(export_torch(setup.module, torch.zeros(setup.shape)).SerializeToString())
    np.savez(tmp / f"{name}.calib.npz", x=setup.deploy_calib)
    np.savez(tmp / f"{name}.compress_calib.npz", x=setup.compress_calib)
    score_data = None
    if setup.score_x is not None:
        score_data = tmp / f"{name}.score.npz"
        np.savez(score_data, x=setup.score_x)
    x, y = setup.test
    host = load_profile("host")

    def deployed(model: Path, tag: str) -> DeployResult:
        return deploy(str(model), device, calib=tmp / f"{name}.calib.npz", out=tmp / f"deploy-{name}-{tag}")

    rows: list[tuple[str, float, DeployResult, float, CompressResult | None]] = []
    rows.append(("uncompressed", 1.0, deployed(onnx_path, "base"), 0.0, None))
    teacher = load(str(onnx_path)).graph
    for target in (float(t) for t in args.targets.split(",")):
        start = time.process_time()
        by_macs, by_latency = (None, target) if args.latency_device else (target, None)
        result = compress(str(onnx_path), by_macs, target_latency=by_latency, device=args.latency_device,
                          out=tmp / f"compress-{name}", data=score_data,
                          eval_size=256 if setup.score_x is None else len(setup.score_x),
                          calib=tmp / f"{name}.compress_calib.npz", methods=tuple(args.methods.split(",")),
                          calib_size=len(setup.compress_calib), ratios=tuple(float(r) for r in args.ratios.split(",")),
                          channel_multiple=args.channel_multiple, prune_groups=args.prune_groups, progress=_every_tenth(f"  {name} {target:.0%}"))
        ratio = result.report["macs_after"] / result.report["macs_before"]
        rows.append((f"compressed {target:.0%}", ratio, deployed(tmp / f"compress-{name}" / "model.compressed.onnx",
                                                                 f"{target}"), time.process_time() - start, result))
        if setup.epochs:
            start = time.process_time()
            tuned = distill(result.graph, teacher, setup.finetune, epochs=setup.epochs, augment=not args.no_augment,
                            progress=_every_tenth(f"  {name} {target:.0%}"), **_distill_options(args))
            path = tmp / f"{name}-finetuned{target}.onnx"
            write_onnx(graph_to_onnx(tuned), path)
            rows.append(("  + fine-tuned", ratio, deployed(path, f"ft{target}"), time.process_time() - start, result))
    print(f"\n{setup.title}: device {device}, methods {args.methods}, candidate ratios {args.ratios}, "
          f"channel multiple {rows[-1][4].report['channel_multiple'] if rows[-1][4] else args.channel_multiple}, "
          f"targets of "
          f"{'latency on ' + args.latency_device if args.latency_device else 'MACs'}; label-free re-fit on "
          f"{len(setup.compress_calib)} calibration images, scoring on "
          f"{'the same' if setup.score_x is None else f'{len(setup.score_x)} others'}, distillation {setup.epochs} epochs "
          f"({', '.join(f'{k} {v}' for k, v in _distill_options(args).items()) or 'distill defaults'}) on "
          f"{'augmented views of ' if not args.no_augment else ''}{len(setup.finetune)} calibration images")
    print(f"{'model':16s} {'MACs':>6s} {'fp32':>7s} {'int8':>7s} {'est.fps':>8s} {'est.host':>9s} "
          f"{'host int8':>10s} {'host fp32':>10s} {'CPU s':>7s}")
    base_int8_fps = base_fp32_fps = 1.0
    measured = _top1_and_fps([row[2] for row in rows], x, y, setup.timed_runs)
    for (label, ratio, dep, seconds, _), m in zip(rows, measured):
        (int8_top1, int8_fps), (fp32_top1, fp32_fps) = m["int8"], m["fp32"]
        if label == "uncompressed":
            base_int8_fps, base_fp32_fps = int8_fps, fp32_fps
        est_host = 1000.0 / estimate(dep.program, host).latency_ms
        print(f"{label:16s} {ratio:6.3f} {fp32_top1:6.2f}% {int8_top1:6.2f}% {dep.report['fps']['int8']:8.1f} "
              f"{est_host:9.1f} {int8_fps:7.0f} x{int8_fps / base_int8_fps:.2f} {fp32_fps:6.0f} "
              f"x{fp32_fps / base_fp32_fps:.2f} {seconds:7.1f}", flush=True)
    for label, _, _, _, result in rows:
        if label.startswith("compressed") and result is not None:
            print(f"{label} ratios (MACs kept per layer): {_ratios(result)}")
    print(f"{setup.title}: CPU seconds {time.process_time() - cpu0:.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet32,efficientnet_lite0")
    parser.add_argument("--targets", default="0.5,0.7")
    parser.add_argument("--methods", default="svd,prune")
    parser.add_argument("--ratios", default="0.25,0.5,0.75", help="candidate fractions of a layer's MACs")
    parser.add_argument("--channel-multiple", type=int, default=None,
                        help="kept channels and ranks in multiples of this (default: with --latency-device, that "
                             "profile's int8 blocks, 16 on this host's XNNPACK; else 1)")
    parser.add_argument("--prune-groups", action="store_true",
                        help="also prune residual streams (tied channel groups) as one move")
    parser.add_argument("--finetune-epochs", type=int, default=20,
                        help="ResNet-32 distillation epochs (20: about 9 CPU-minutes at 50 %% MACs)")
    parser.add_argument("--finetune-size", type=int, default=4000, help="ResNet-32 distillation images")
    parser.add_argument("--imagenet-finetune-epochs", type=int, default=2, help="EfficientNet-Lite0 epochs")
    parser.add_argument("--lr", type=float, default=None, help="distillation's Adam learning rate (default: distill's)")
    parser.add_argument("--features", type=float, default=None,
                        help="weight of residual-stream feature matching in distillation (0: logits alone; default: distill's)")
    parser.add_argument("--mix", choices=("none", *MIXES), default=None,
                        help="mix distillation views of two images (default: distill's)")
    parser.add_argument("--no-augment", action="store_true", help="distil on the images as they are")
    parser.add_argument("--device", default="arm-cortex-a78-xnnpack")
    parser.add_argument("--latency-device", default=None,
                        help="targets are fractions of the int8 latency priced on this profile, not of MACs")
    args = parser.parse_args()
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            bench(name, args, Path(tmp), args.device)
    print(f"CPU seconds for the whole run: {time.process_time() - cpu0:.0f} (wall {time.perf_counter() - wall0:.0f})")


if __name__ == "__main__":
    main()
