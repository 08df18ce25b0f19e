"""Host latency under LiteRT's default kernels (XNNPACK, 1 thread): edgeopt's int8 .tflite against the
float .tflite and against an int8 .tflite made by litert-torch with PyTorch's PT2E quantizer.

    python benchmarks/xnnpack_latency.py --peer-dir DIR [--images 300]

DIR holds `efficientnet_lite0.fp32.tflite` and `efficientnet_lite0.pt2e_int8.tflite`, written by
`benchmarks/peers/litert_torch_export.py` (run in its own virtualenv: see its docstring); a missing
file is skipped. Goal (issue 3): our int8 at least 1.5x faster than float on EfficientNet-Lite0, with no
stray TRANSPOSE/QUANTIZE/DEQUANTIZE. Also prints each file's top-1 on ImageNet val1300 (first N) under
the same kernels, and its op histogram. Needs ../shared/data.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import require  # noqa: E402

from edgeopt.workflows.deploy import deploy  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch  # noqa: E402
from edgeopt.runtimes.litert import LiteRT  # noqa: E402

STRAY = ("TRANSPOSE", "QUANTIZE", "DEQUANTIZE")
OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def op_histogram(data: bytes) -> collections.Counter:
    model = schema.Model.GetRootAs(data, 0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    graph = model.Subgraphs(0)
    return collections.Counter(OP_NAMES[codes[graph.Operators(i).OpcodeIndex()]] for i in range(graph.OperatorsLength()))


def model_input(runner: LiteRT, x_nchw: np.ndarray) -> np.ndarray:
    """``x`` laid out (NCHW or NHWC, by the model's input shape) and typed as the model takes it."""
    spec = runner.input_details[0]
    x = x_nchw if spec.shape[1] == x_nchw.shape[1] else x_nchw.transpose(0, 2, 3, 1)
    if spec.dtype == np.float32:
        return np.ascontiguousarray(x)
    scale, zp = spec.quantization
    return np.clip(np.round(x / scale) + zp, -128, 127).astype(spec.dtype)


def measure(name: str, data: bytes, x: np.ndarray, y: np.ndarray, runs: int) -> dict:
    runner = LiteRT(data, kernels="default", num_threads=1)
    times = runner.time_inference([model_input(runner, x[:1])], runs=runs, warmup=5)
    logits = runner.run([model_input(runner, x)])[0]
    hist = op_histogram(data)
    return {"name": name, "ms": float(np.median(times) * 1e3), "top1": float(np.mean(logits.argmax(1) == y) * 100),
            "ops": sum(hist.values()), "stray": {k: hist[k] for k in STRAY if hist[k]}, "kb": len(data) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-dir", type=Path, default=Path("peer-tflite"))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    require("imagenet/val1300", "imagenet/calib_samples")
    from imagenet import calib_samples, efficientnet_lite0, val1300

    x, y = val1300(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "m.onnx").write_bytes(export_torch(efficientnet_lite0(), torch.zeros(1, 3, 224, 224)).SerializeToString())
        np.savez(tmp / "calib.npz", x=calib_samples(100))
        np.savez(tmp / "data.npz", x=x[:4])
        result = deploy(str(tmp / "m.onnx"), "arm-cortex-a78-xnnpack", calib=tmp / "calib.npz",
                        data=tmp / "data.npz", out=tmp / "out")
        ours = Path(result.report["artifacts"]["tflite"]).read_bytes()
    rows = [measure("edgeopt int8", ours, x, y, args.runs)]
    for label, file in (("float (litert-torch)", "efficientnet_lite0.fp32.tflite"),
                        ("PT2E int8 (litert-torch)", "efficientnet_lite0.pt2e_int8.tflite")):
        path = args.peer_dir / file
        if path.is_file():
            rows.append(measure(label, path.read_bytes(), x, y, args.runs))
        else:
            print(f"skipped {label}: {path} not found (see benchmarks/peers/litert_torch_export.py)")
    print(f"\nEfficientNet-Lite0, LiteRT default kernels (XNNPACK), 1 thread, median of {args.runs} runs; "
          f"top-1 on ImageNet val1300 first {len(y)}")
    print(f"  {'file':26s} {'latency ms':>10s} {'top-1 %':>8s} {'ops':>5s} {'KiB':>8s}  stray ops")
    for r in rows:
        print(f"  {r['name']:26s} {r['ms']:10.2f} {r['top1']:8.2f} {r['ops']:5d} {r['kb']:8.0f}  {r['stray'] or 'none'}")
    float_row = next((r for r in rows if r["name"].startswith("float")), None)
    if float_row:
        speedup = float_row["ms"] / rows[0]["ms"]
        print(f"  edgeopt int8 speed-up over float: {speedup:.2f}x (goal >= 1.5x: {'met' if speedup >= 1.5 else 'MISSED'})")


if __name__ == "__main__":
    main()
