"""Float ``.tflite`` files of Keras applications through ``edgeopt deploy``: loads, deploys, fp32 IR vs LiteRT,
int8 SQNR, executor bit-exact with LiteRT BUILTIN_REF.

Two steps, two interpreters (TensorFlow is never an edgeopt dependency):

    /path/to/tf-venv/bin/python benchmarks/keras_float_tflite.py convert --dir DIR [--models a,b] [--logits]
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/keras_float_tflite.py check --dir DIR [--json rows.json]

``convert`` builds each Keras application with random weights (``weights=None``), sets every batch
norm's moving statistics to those of one training-mode pass over random images (so activations keep a
sane scale, as trained statistics would), and writes the float32 ``.tflite`` of TensorFlow's converter
(``TFLiteConverter.from_keras_model``, default options: no quantization). ``check`` then, per file:
reads it (``load``), compares the float IR run in ONNX Runtime with LiteRT on the float file (max abs
difference of the outputs on 4 random NHWC images), deploys it to ``arm-cortex-a78-xnnpack`` on those
images, runs the int8 file in LiteRT in a child process, compares the integer executor (double rounding)
with it element for element, and reports the int8 output's SQNR against LiteRT's float output. LiteRT's
``BUILTIN_REF`` aborts without a message on some valid int8 files (a 1000-class int8 SOFTMAX of a Keras
MobileNetV3Small here); the row then compares with the builtin kernels without XNNPACK
(``BUILTIN_WITHOUT_DEFAULT_DELEGATES``) and says so in ``reference``.
Random weights and random inputs: the SQNR is a smoke signal, not accuracy.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = 4
DEVICE = "arm-cortex-a78-xnnpack"
RESOLVERS = ("BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
# Runs the int8 file in LiteRT with one resolver, sample by sample, in its own process (an abort is a result).
LITERT_CHILD = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
path, resolver, workdir = sys.argv[1:]
it = Interpreter(model_path=path, experimental_op_resolver_type=getattr(OpResolverType, resolver))
it.allocate_tensors()
q = np.load(workdir + "/q.npy")
inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
outs = []
for i in range(len(q)):
    it.set_tensor(inp, q[i:i + 1])
    it.invoke()
    outs.append(it.get_tensor(out).copy())
np.save(workdir + "/expected.npy", np.concatenate(outs))
"""


def _models(head: str | None = "softmax") -> dict[str, Callable[[], Any]]:
    """Each model's builder; ``head`` is the classifier's activation (None: logits)."""
    import keras

    apps = keras.applications
    common = {"input_shape": (128, 128, 3), "weights": None, "classifier_activation": head}
    return {
        "mobilenet_025": lambda: apps.MobileNet(alpha=0.25, **common),
        "mobilenet_v2": lambda: apps.MobileNetV2(**common),
        "mobilenet_v3_small": lambda: apps.MobileNetV3Small(**common),
        "efficientnet_b0": lambda: apps.EfficientNetB0(**common),
        "resnet50": lambda: apps.ResNet50(**common),
        "mobilenet_v3_large": lambda: apps.MobileNetV3Large(**common),
        "efficientnet_v2_b0": lambda: apps.EfficientNetV2B0(**common),
        "densenet121": lambda: apps.DenseNet121(**common),
        "nasnet_mobile": lambda: apps.NASNetMobile(**common),
        "inception_v3": lambda: apps.InceptionV3(**common),
        "mlperf_tiny_resnet8": lambda: _resnet8(head),
        "mlperf_tiny_dscnn": lambda: _ds_cnn(head),
    }


def _resnet8(head: str | None) -> Any:
    """MLPerf Tiny's image-classification ResNet-8 (CIFAR-10, 32x32), as in its reference training code."""
    import keras
    from keras import layers

    x = inputs = keras.Input((32, 32, 3))
    x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same")(x)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
        x = layers.Activation("relu")(layers.add([x, y]))
    x = layers.Flatten()(layers.AveragePooling2D(pool_size=x.shape[1])(x))
    return keras.Model(inputs, layers.Dense(10, activation=head)(x))


def _ds_cnn(head: str | None) -> Any:
    """MLPerf Tiny's keyword-spotting DS-CNN (49x10 MFCC input, 12 classes)."""
    import keras
    from keras import layers

    x = inputs = keras.Input((49, 10, 1))
    x = layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same")(x)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    for _ in range(4):
        x = layers.Activation("relu")(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x)))
        x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(64, 1)(x)))
    x = layers.Flatten()(layers.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x))
    return keras.Model(inputs, layers.Dense(12, activation=head)(x))


def convert(out_dir: Path, names: list[str], logits: bool) -> None:
    """Write ``<name>.tflite`` (float32) for each model (runs under a TensorFlow interpreter); ``logits``: without
    the final softmax (whose near-uniform output on random weights makes the SQNR meaningless)."""
    import keras
    import tensorflow as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        keras.utils.set_random_seed(0)
        model = _models(None if logits else "softmax")[name]()
        shape = (8, *model.input_shape[1:])
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.0  # one training pass sets the moving statistics to that batch's
        model(np.random.default_rng(0).uniform(0, 255 if shape[-1] == 3 else 1, shape).astype(np.float32),
              training=True)
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        (out_dir / f"{name}.tflite").write_bytes(data)
        print(f"{name}: {len(data) / 1e6:.1f} MB", flush=True)


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(signal power / noise power); inf when equal."""
    noise = float(np.sum((reference.astype(np.float64) - approx) ** 2))
    return math.inf if noise == 0 else 10.0 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / noise)


def check(path: Path, workdir: Path) -> dict[str, Any]:
    """One file's row: every stage it passed, its figures, or the one-line error of the first failure."""
    from edgeopt.pipeline.evaluate import dequantize_output, run_float
    from edgeopt.pipeline.frontend.load import load
    from edgeopt.runtimes.litert import LiteRT
    from edgeopt.runtimes.reference.executor import run_program

    done: subprocess.CompletedProcess[str] | None = None
    from edgeopt.workflows.deploy import deploy

    row: dict[str, Any] = {"model": path.stem}
    start = time.perf_counter()
    try:
        loaded = load(str(path))
        row["loads"] = True
        float_rt = LiteRT(path, kernels="reference")
        shape = float_rt.input_details[0].shape
        high = 255.0 if shape[-1] == 3 else 1.0
        x = np.random.default_rng(0).uniform(0, high, (SAMPLES, *shape[1:])).astype(np.float32)
        reference = np.concatenate([float_rt.run([x[i:i + 1]])[0] for i in range(SAMPLES)])
        ours = np.concatenate([run_float(loaded.graph, loaded.to_graph_layout(x[i:i + 1])) for i in range(SAMPLES)])
        row["fp32_max_abs_diff"] = float(np.max(np.abs(reference - ours.reshape(reference.shape))))
        np.savez(workdir / "data.npz", x=x)
        result = deploy(str(path), DEVICE, data=str(workdir / "data.npz"), out=str(workdir / "out"))
        row["deploys"] = True
        program = result.program.replace(rounding="double")
        row["transposes"] = sum(op.kind == "TRANSPOSE" for op in program.ops)
        q = program.tensor(program.inputs[0]).qparams.quantize(x)  # the program's input is the file's NHWC
        np.save(workdir / "q.npy", q)
        for resolver in RESOLVERS:  # BUILTIN_REF aborts on some valid files: then the builtin kernels
            done = subprocess.run([sys.executable, "-c", LITERT_CHILD, str(result.out_dir / "model.int8.tflite"),
                                   resolver, str(workdir)], capture_output=True, text=True, check=False)
            if done.returncode == 0:
                break
        if done.returncode != 0:
            raise RuntimeError(f"LiteRT failed on the int8 file (exit {done.returncode}): {done.stderr[-200:]}")
        row["litert_loads"], row["reference"] = True, resolver
        expected = np.load(workdir / "expected.npy")
        got = run_program(program, [q])[0]
        row["bitexact"] = bool(np.array_equal(got, expected))
        row["sqnr_db"] = round(sqnr_db(reference, dequantize_output(program, got).reshape(reference.shape)), 1)
    except Exception as err:  # noqa: BLE001  every failure is a row
        row["error"] = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("convert", "check"))
    parser.add_argument("--dir", type=Path, required=True, help="where the .tflite files are written / read")
    parser.add_argument("--models", help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="write the check rows here")
    parser.add_argument("--logits", action="store_true", help="convert: leave out the classifiers' softmax")
    args = parser.parse_args()
    if args.step == "convert":
        convert(args.dir, args.models.split(",") if args.models else list(_models()), args.logits)
        return
    names = args.models.split(",") if args.models else sorted(p.stem for p in args.dir.glob("*.tflite"))
    rows = []
    for name in names:
        workdir = args.dir / f"{name}.work"
        workdir.mkdir(exist_ok=True)
        rows.append(check(args.dir / f"{name}.tflite", workdir))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
