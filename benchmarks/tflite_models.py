"""Stage 1 of the ``.tflite`` conformance suite: Keras models through TensorFlow's converter.

Runs under a TensorFlow virtualenv (never edgeopt's: TensorFlow is no dependency of edgeopt), imports
nothing from edgeopt, and writes, per model, two full-integer ``.tflite`` files made by
``tf.lite.TFLiteConverter`` with a representative data set of random inputs: int8 input and output
(``inference_input_type = tf.int8``) and float input and output (the converter's default). Weights are
random (``weights=None``), batch norms settled on random inputs (``settle_batch_norm``), inputs small where
the architecture allows; each conversion runs in a child process. ``manifest.json`` lists every file
(or the build or conversion error), the range its random inputs are drawn from, and TensorFlow's version.

    /work/tfvenv/bin/python benchmarks/tflite_models.py OUT_DIR [--models a,b] [--fresh-batch-norm]
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPRESENTATIVE_SAMPLES = 8
SETTLE_SAMPLES = 16
TIMEOUT_S = 900
# Input range of the random data: [-1, 1] for models that expect preprocessed inputs, [0, 255] for those
# that hold their own preprocessing layers (MobileNetV3, EfficientNet).
UNIT, PIXELS = (-1.0, 1.0), (0.0, 255.0)


def _app(name: str, size: int, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), **kwargs)
    return build


def _transformer_block() -> Any:
    """A small encoder: multi-head self-attention and a feed-forward block, each with a residual and
    LayerNormalization, then a pooled classifier."""
    import keras
    from keras import layers

    x = inputs = keras.Input((16, 32))
    attention = layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x)
    x = layers.LayerNormalization(epsilon=1e-6)(x + attention)
    ffn = layers.Dense(32)(layers.Dense(64, activation="relu")(x))
    x = layers.LayerNormalization(epsilon=1e-6)(x + ffn)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def _ds_cnn() -> Any:
    """MLPerf Tiny's keyword-spotting DS-CNN: 49 x 10 MFCC frames, a strided conv, four depthwise-separable
    blocks of 64 channels, average pooling, 12 classes."""
    import keras
    from keras import layers

    x = inputs = keras.Input((49, 10, 1))
    x = layers.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for _ in range(4):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2D(64, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Flatten()(layers.AveragePooling2D(pool_size=(25, 5))(x))
    return keras.Model(inputs, layers.Dense(12, activation="softmax")(x))


def _lstm(unroll: bool) -> Callable[[], Any]:
    """A keyword-spotting-sized recurrent net: one LSTM over 20 frames of 16 features, a classifier. Kept
    as a loop, the converter fuses it into UNIDIRECTIONAL_SEQUENCE_LSTM with state variables; unrolled,
    into plain FULLY_CONNECTED, LOGISTIC, TANH, MUL and ADD ops per frame."""
    def build() -> Any:
        import keras
        from keras import layers

        inputs = keras.Input((20, 16), batch_size=1)
        x = layers.LSTM(32, unroll=unroll)(inputs)
        return keras.Model(inputs, layers.Dense(8, activation="softmax")(x))
    return build


def _unet_small() -> Any:
    """A two-level U-Net for segmentation: strided convs down, transposed conv and nearest / bilinear
    upsampling up, skip connections concatenated, per-pixel sigmoid."""
    import keras
    from keras import layers

    x = inputs = keras.Input((64, 64, 3))
    d1 = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    d2 = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(d1)
    d3 = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(layers.MaxPooling2D(1)(d2))
    u2 = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(d3)
    u2 = layers.Conv2D(32, 3, padding="same", activation="relu")(layers.Concatenate()([u2, d2]))
    u1 = layers.UpSampling2D(2, interpolation="bilinear")(u2)
    u1 = layers.Conv2D(16, 3, padding="same", activation="relu")(layers.Concatenate()([u1, d1]))
    near = layers.UpSampling2D(2, interpolation="nearest")(layers.Conv2D(4, 1)(d2))
    return keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(layers.Add()([layers.Conv2D(4, 1)(u1), near])))


def _conv1d_audio() -> Any:
    """A raw-audio keyword spotter: strided 1-D convolutions with batch norm over 4000 samples, global
    average pooling, a classifier."""
    import keras
    from keras import layers

    x = inputs = keras.Input((4000, 1))
    for filters, stride in ((16, 4), (32, 2), (32, 2), (64, 2)):
        x = layers.ReLU()(layers.BatchNormalization()(layers.Conv1D(filters, 9, strides=stride, padding="same")(x)))
    x = layers.GlobalAveragePooling1D()(layers.MaxPooling1D(2)(x))
    return keras.Model(inputs, layers.Dense(12, activation="softmax")(x))


def _vit_tiny() -> Any:
    """A small vision transformer: 8x8 patches by a strided conv, a learned position embedding, two
    pre-norm encoder blocks with GELU MLPs, mean-pooled tokens, a classifier."""
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 3))
    x = layers.Reshape((16, 64))(layers.Conv2D(64, 8, strides=8)(inputs))
    x = layers.Add()([x, layers.Embedding(16, 64)(keras.ops.arange(16))])
    for _ in range(2):
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + layers.MultiHeadAttention(num_heads=4, key_dim=16)(h, h)
        h = layers.LayerNormalization(epsilon=1e-6)(x)
        x = x + layers.Dense(64)(layers.Dense(128, activation="gelu")(h))
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization(epsilon=1e-6)(x))
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def _gru_unrolled() -> Any:
    """A GRU over 20 frames of 16 features, unrolled (plain ops per frame), and a classifier."""
    import keras
    from keras import layers

    inputs = keras.Input((20, 16), batch_size=1)
    return keras.Model(inputs, layers.Dense(8, activation="softmax")(layers.GRU(32, unroll=True)(inputs)))


def _yolo_tiny() -> Any:
    """A YOLO-style tiny detector: conv, batch norm and LeakyReLU(0.1) stages with max pooling, a nearest
    upsampling path concatenated with an earlier stage, two 1x1 heads."""
    import keras
    from keras import layers

    def stage(x: Any, filters: int) -> Any:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        return layers.LeakyReLU(negative_slope=0.1)(layers.BatchNormalization()(x))

    x = inputs = keras.Input((64, 64, 3))
    for filters in (8, 16, 32):
        x = layers.MaxPooling2D(2)(stage(x, filters))
    route = x = stage(x, 64)
    x = stage(layers.MaxPooling2D(2)(x), 128)
    coarse = layers.Conv2D(18, 1)(x)
    up = layers.UpSampling2D(2)(stage(x, 32))
    fine = layers.Conv2D(18, 1)(stage(layers.Concatenate()([up, route]), 64))
    return keras.Model(inputs, [coarse, fine])


def _espcn() -> Any:
    """ESPCN super-resolution (x3): tanh convolutions, a sub-pixel convolution and depth-to-space."""
    import keras
    import tensorflow as tf
    from keras import layers

    x = inputs = keras.Input((32, 32, 1))
    x = layers.Conv2D(32, 5, padding="same", activation="tanh")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="tanh")(x)
    x = layers.Conv2D(9, 3, padding="same")(x)
    return keras.Model(inputs, layers.Lambda(lambda t: tf.nn.depth_to_space(t, 3))(x))


def _kws_max_pool() -> Any:
    """A keyword spotter with PReLU activations, global max pooling and a softmax classifier."""
    import keras
    from keras import layers

    x = inputs = keras.Input((49, 10, 1))
    for filters in (16, 32):
        x = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(filters, 3, strides=2, padding="same")(x))
    x = layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, layers.Dense(12, activation="softmax")(x))


MODELS: dict[str, tuple[Callable[[], Any], tuple[float, float]]] = {
    "mobilenet_0.25": (_app("MobileNet", 96, alpha=0.25), UNIT),
    "mobilenet_1.0": (_app("MobileNet", 96, alpha=1.0), UNIT),
    "mobilenet_v2": (_app("MobileNetV2", 96), UNIT),
    "mobilenet_v3_small": (_app("MobileNetV3Small", 96), PIXELS),
    "efficientnet_b0": (_app("EfficientNetB0", 96), PIXELS),
    "resnet50": (_app("ResNet50", 64), UNIT),
    "nasnet_mobile": (_app("NASNetMobile", 96), UNIT),
    "densenet121": (_app("DenseNet121", 64), UNIT),
    "transformer_block": (_transformer_block, UNIT),
    "ds_cnn": (_ds_cnn, UNIT),
    "lstm": (_lstm(unroll=False), UNIT),
    "lstm_unrolled": (_lstm(unroll=True), UNIT),
    "mobilenet_v3_large": (_app("MobileNetV3Large", 96), PIXELS),
    "efficientnet_v2_b0": (_app("EfficientNetV2B0", 96), PIXELS),
    "convnext_tiny": (_app("ConvNeXtTiny", 64), PIXELS),
    "unet_small": (_unet_small, UNIT),
    "conv1d_audio": (_conv1d_audio, UNIT),
    "vit_tiny": (_vit_tiny, UNIT),
    "gru_unrolled": (_gru_unrolled, UNIT),
    "yolo_tiny": (_yolo_tiny, UNIT),
    "espcn": (_espcn, UNIT),
    "kws_max_pool": (_kws_max_pool, UNIT),
}
VARIANTS = ("int8_io", "float_io")


def settle_batch_norm(model: Any, value_range: tuple[float, float], samples: int = SETTLE_SAMPLES) -> None:
    """Give every BatchNormalization the statistics of its inputs on random data (momentum 0 for one
    training-mode pass), as ``conformance.py`` does for the ONNX files: with their initial statistics
    (mean 0, variance 1) the deep random-weight nets here shrink their activations layer by layer until the
    logits quantize to a single value (an input scale of 1e-8 for SOFTMAX, on which LiteRT's BUILTIN_REF
    aborts), and most of the file would compute zeros."""
    import keras

    norms = [layer for layer in _layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    shape = (samples, *model.inputs[0].shape[1:])
    if model.inputs[0].shape[0] is not None:  # a fixed batch: one sample per call
        shape = tuple(model.inputs[0].shape)
    model(np.random.default_rng(1).uniform(*value_range, shape).astype(np.float32), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def _layers(model: Any) -> list[Any]:
    """Every layer, nested models' included."""
    out = []
    for layer in model.layers:
        out += _layers(layer) if hasattr(layer, "layers") else [layer]
    return out


def convert(model: Any, value_range: tuple[float, float], variant: str) -> bytes:
    """Full-integer quantization with random representative inputs; int8 or float32 input and output."""
    import tensorflow as tf

    shape = [1, *model.inputs[0].shape[1:]]
    rng = np.random.default_rng(0)

    def representative() -> Any:
        for _ in range(REPRESENTATIVE_SAMPLES):
            yield [rng.uniform(*value_range, shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if variant == "int8_io":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def build_all(out: Path, models: list[str], settle: bool = True, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Convert every (model, variant), each in a child process (TensorFlow's converter crashes on some
    models: a crash or a hang becomes the entry's error); the manifest, also written to
    ``out/manifest.json``."""
    import keras
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    for name in models:
        for variant in VARIANTS:
            entry_file = out / f"{name}.{variant}.json"
            entry_file.unlink(missing_ok=True)
            start = time.perf_counter()
            command = [sys.executable, str(Path(__file__).resolve()), str(out), "--one", name, variant]
            command += [] if settle else ["--fresh-batch-norm"]
            try:
                proc = subprocess.run(command, timeout=timeout_s, capture_output=True, text=True, check=False)
                status = None if proc.returncode == 0 else _exit_reason(proc.returncode)
            except subprocess.TimeoutExpired:
                status = f"Timeout: no file after {timeout_s:.0f} s"
            if entry_file.is_file():
                entry = json.loads(entry_file.read_text())
                entry_file.unlink()
            else:
                entry = {"model": name, "variant": variant, "error": f"convert: {status} in TensorFlow's converter"}
            entry["convert_seconds"] = round(time.perf_counter() - start, 1)
            entries.append(entry)
            print(f"{name} {variant}: {entry.get('error', 'ok')} ({entry['convert_seconds']} s)", flush=True)
    previous = out / "manifest.json"
    if previous.is_file():  # entries of the models not rebuilt now stay
        entries = [e for e in json.loads(previous.read_text())["files"] if e["model"] not in models] + entries
    manifest = {"tensorflow": tf.__version__, "keras": keras.__version__, "files": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def build_one(out: Path, name: str, variant: str, settle: bool = True) -> None:
    """Build and convert one model (child mode); its manifest entry goes to ``out/NAME.VARIANT.json``."""
    import keras

    build, value_range = MODELS[name]
    entry: dict[str, Any] = {"model": name, "variant": variant, "input_range": list(value_range),
                             "batch_norm": "settled" if settle else "fresh"}
    keras.utils.set_random_seed(0)
    try:
        model = build()
        if settle:
            settle_batch_norm(model, value_range)
    except Exception as err:  # noqa: BLE001  a model that cannot be built is an entry
        entry["error"] = f"build: {_one_line(err)}"
    else:
        try:
            path = out / f"{name}.{variant}.tflite"
            path.write_bytes(convert(model, value_range, variant))
            entry["file"] = path.name
        except Exception as err:  # noqa: BLE001  a conversion failure is an entry
            entry["error"] = f"convert: {_one_line(err)}"
    (out / f"{name}.{variant}.json").write_text(json.dumps(entry))


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"Abort: killed by {signal.Signals(-returncode).name}"
    return f"Crash: exit status {returncode}"


def _one_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:200]


def main(argv: list[str] | None = None) -> int:
    """Build the files named by the command line into its output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--fresh-batch-norm", action="store_true",
                        help="keep batch norms as initialised (mean 0, variance 1) instead of settling them")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.one:
        build_one(args.out, *args.one, settle=not args.fresh_batch_norm)
        return 0
    models = args.models.split(",") if args.models else list(MODELS)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        sys.exit(f"unknown models {unknown}; models: {', '.join(MODELS)}")
    build_all(args.out, models, settle=not args.fresh_batch_norm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
