"""Conformance suite: real architectures through every common ONNX exporter, deployed end to end.

For each model (torchvision, timm, Hugging Face transformers built from a config, a CIFAR ResNet with
option-A shortcuts, a 1-D audio net; random weights, nothing downloaded) and each exporter (TorchScript
at opsets 13 and 17, dynamo, and the opset-17 file through onnxsim and through onnxslim), one ONNX file
is written and checked in a child process, so that an abort (LiteRT's BUILTIN_REF kills the process on
some files) or a hang becomes a row instead of ending the run:

- loads: edgeopt's loader reads the file;
- deploys: ``deploy`` to ``--device`` on a small random calibration/eval set finishes;
- LiteRT: the emitted ``model.int8.tflite`` loads in LiteRT's reference kernels (BUILTIN_REF);
- bit-exact: the integer executor (double rounding) equals BUILTIN_REF element for element on every
  output;
- SQNR: the first output of the int8 program (dequantized) against ONNX Runtime on the exported fp32 file;
- seconds and peak RSS of the child, or the one-line error.

    PYTHONPATH=. python benchmarks/conformance.py [--models a,b] [--exporters ts13,ts17,dynamo,...]
                                                   [--limit N] [--json rows.json]

torchvision, timm, transformers, onnxsim and onnxslim are optional: a model or exporter whose package is
missing is a row with its build or export error.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

DEVICE = "arm-cortex-a78-xnnpack"
SAMPLES = 4
TIMEOUT_S = 600
# Integer inputs are token ids or masks; ids stay below this so that any vocabulary here holds them.
MAX_TOKEN_ID = 100


@dataclass
class Row:
    """One file's result. ``None`` in a stage field: that stage was not reached."""

    model: str
    exporter: str
    loads: bool | None = None
    deploys: bool | None = None
    litert_loads: bool | None = None
    bitexact: bool | None = None
    sqnr_db: float | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    notes: str | None = None  # what ``reference_interpreter`` changed for BUILTIN_REF to load the file


def one_line(err: BaseException, limit: int = 200) -> str:
    """``Class: first line of the message``, for the table (never a traceback)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    # the list of supported ops that follows an unsupported one is the same in every row
    text = text.split(" (supported: ")[0]
    return f"{type(err).__name__}: {text}"[:limit]


# ---------------------------------------------------------------------------------------------------
# Models. Each builder returns an eval-mode module and its example inputs (batch 1).

Builder = Callable[[], tuple[Any, tuple[Any, ...]]]


def _image(size: int, channels: int = 3) -> tuple[Any, ...]:
    import torch

    return (torch.randn(1, channels, size, size),)


def _torchvision() -> Any:
    """Import torchvision beside CPU torch 2.13: its wheel's compiled ops cannot load here, and its
    Python side registers fake kernels for them at import, which needs their schemas to exist first."""
    import torch

    if not hasattr(torch.ops.torchvision, "nms"):
        lib = torch.library.Library("torchvision", "DEF")  # the schemas only; nothing here runs these ops
        pooled = "float spatial_scale, SymInt pooled_height, SymInt pooled_width"
        roi = f"Tensor input, Tensor rois, {pooled}"
        grad = "Tensor grad, Tensor rois"
        size = "SymInt batch_size, SymInt channels, SymInt height, SymInt width"
        conv = ("Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, "
                "SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, "
                "SymInt groups, SymInt offset_groups, bool use_mask")
        for schema in (
            "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            f"roi_align({roi}, int sampling_ratio, bool aligned) -> Tensor",
            f"qroi_align({roi}, int sampling_ratio, bool aligned) -> Tensor",
            f"_roi_align_backward({grad}, {pooled}, {size}, int sampling_ratio, bool aligned) -> Tensor",
            f"ps_roi_align({roi}, int sampling_ratio) -> (Tensor, Tensor)",
            f"_ps_roi_align_backward({grad}, Tensor channel_mapping, {pooled}, int ratio, {size}) -> Tensor",
            f"roi_pool({roi}) -> (Tensor, Tensor)",
            f"_roi_pool_backward({grad}, Tensor argmax, {pooled}, {size}) -> Tensor",
            f"ps_roi_pool({roi}) -> (Tensor, Tensor)",
            f"_ps_roi_pool_backward({grad}, Tensor channel_mapping, {pooled}, {size}) -> Tensor",
            f"deform_conv2d({conv}) -> Tensor",
            f"_deform_conv2d_backward(Tensor grad, {conv}) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
        ):
            lib.define(schema)
        _torchvision.library = lib  # type: ignore[attr-defined]  # a dropped Library unregisters its ops
    import torchvision

    return torchvision


def _tv(name: str, size: int, **kwargs: Any) -> Builder:
    def build() -> tuple[Any, tuple[Any, ...]]:
        tv = _torchvision()
        return tv.models.get_model(name, weights=None, **kwargs).eval(), _image(size)
    return build


def _tv_segmentation(name: str, size: int) -> Builder:
    def build() -> tuple[Any, tuple[Any, ...]]:
        tv = _torchvision()
        model = getattr(tv.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=21)
        return _pick_output(model, "out").eval(), _image(size)
    return build


def _tv_small_vit() -> tuple[Any, tuple[Any, ...]]:
    tv = _torchvision()
    import torch

    model = tv.models.vision_transformer.VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=4, hidden_dim=128, mlp_dim=256)
    # torchvision starts the head at zero, so every output would be 0 and the check would compare nothing
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model.eval(), _image(64)


def _timm(name: str, size: int, **kwargs: Any) -> Builder:
    def build() -> tuple[Any, tuple[Any, ...]]:
        _torchvision()  # timm imports torchvision
        import timm

        return timm.create_model(name, pretrained=False, **kwargs).eval(), _image(size)
    return build


def _pick_output(model: Any, key: str | int) -> Any:
    """Wrap a module whose output is a dict or a ModelOutput so that it returns the one tensor at ``key``."""
    from torch import nn

    class Pick(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return self.model(*args)[key]

    return Pick()


def _text_inputs(seq: int) -> tuple[Any, ...]:
    import torch

    ids = torch.randint(0, MAX_TOKEN_ID, (1, seq))
    mask = torch.ones(1, seq, dtype=torch.int64)
    mask[:, seq * 3 // 4:] = 0
    return ids, mask


def _hf_bert() -> tuple[Any, tuple[Any, ...]]:
    _torchvision()
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=64, attn_implementation="eager")
    return _pick_output(BertModel(config), 0).eval(), _text_inputs(32)


def _hf_distilbert() -> tuple[Any, tuple[Any, ...]]:
    _torchvision()
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=1000, dim=128, n_layers=2, n_heads=2, hidden_dim=512,
                              max_position_embeddings=64, attn_implementation="eager")
    return _pick_output(DistilBertModel(config), 0).eval(), _text_inputs(32)


def _hf_vit() -> tuple[Any, tuple[Any, ...]]:
    _torchvision()
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(image_size=64, patch_size=16, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=256, attn_implementation="eager")
    return _pick_output(ViTModel(config, add_pooling_layer=False), 0).eval(), _image(64)


def _hf_whisper_encoder() -> tuple[Any, tuple[Any, ...]]:
    import torch

    _torchvision()
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    # Whisper-tiny's layout (80 mel bins, two convolutions, pre-norm blocks) at a quarter of its width and a
    # short window: the encoder only accepts inputs of exactly 2 * max_source_positions frames.
    config = WhisperConfig(d_model=96, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=384,
                           num_mel_bins=80, max_source_positions=50, attn_implementation="eager")
    return _pick_output(WhisperEncoder(config), 0).eval(), (torch.randn(1, 80, 100),)


def _espcn() -> tuple[Any, tuple[Any, ...]]:
    """ESPCN-style x3 super-resolution: sub-pixel convolution, PixelShuffle (ONNX DepthToSpace, CRD)."""
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.Tanh(), nn.Conv2d(32, 16, 3, padding=1), nn.Tanh(),
                          nn.Conv2d(16, 3 * 9, 3, padding=1), nn.PixelShuffle(3))
    return model.eval(), _image(32)


def _yolov8n() -> tuple[Any, tuple[Any, ...]]:
    _torchvision()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", verbose=False).eval()
    model.model[-1].export = True  # the head as ultralytics exports it: one (1, 84, anchors) tensor
    return model, _image(128)


def _cifar_resnet20() -> tuple[Any, tuple[Any, ...]]:
    from benchmarks.cifar_resnet import CifarResNet

    return CifarResNet(3).eval(), _image(32)


def _audio_cnn1d() -> tuple[Any, tuple[Any, ...]]:
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    cin = 1
    for cout, stride in ((16, 4), (32, 2), (32, 2), (64, 2)):
        layers += [nn.Conv1d(cin, cout, 9, stride, 4), nn.BatchNorm1d(cout), nn.ReLU()]
        cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(cin, 12))
    return model.eval(), (torch.randn(1, 1, 4000),)


MODELS: dict[str, Builder] = {
    "cifar_resnet20": _cifar_resnet20,
    "audio_cnn1d": _audio_cnn1d,
    "mobilenet_v2": _tv("mobilenet_v2", 96),
    "mobilenet_v3_small": _tv("mobilenet_v3_small", 96),
    "efficientnet_b0": _tv("efficientnet_b0", 96),
    "resnet18": _tv("resnet18", 96),
    "shufflenet_v2_x0_5": _tv("shufflenet_v2_x0_5", 96),
    "squeezenet1_0": _tv("squeezenet1_0", 96),
    "mnasnet0_5": _tv("mnasnet0_5", 96),
    "regnet_x_400mf": _tv("regnet_x_400mf", 96),
    "convnext_tiny": _tv("convnext_tiny", 64),
    "resnet50": _tv("resnet50", 96),
    "mobilenet_v3_large": _tv("mobilenet_v3_large", 96),
    "squeezenet1_1": _tv("squeezenet1_1", 96),
    "regnet_y_400mf": _tv("regnet_y_400mf", 96),
    "densenet121": _tv("densenet121", 96),
    "googlenet": _tv("googlenet", 96, aux_logits=False, init_weights=True),
    "swin_t": _tv("swin_t", 112),
    "tv_vit_small": _tv_small_vit,
    "lraspp_mobilenet_v3_large": _tv_segmentation("lraspp_mobilenet_v3_large", 128),
    "deeplabv3_mobilenet_v3_large": _tv_segmentation("deeplabv3_mobilenet_v3_large", 128),
    "timm_mobilevit_xxs": _timm("mobilevit_xxs", 128),
    "timm_efficientnet_lite0": _timm("efficientnet_lite0", 96),
    "timm_ghostnet_100": _timm("ghostnet_100", 96),
    "timm_vit_tiny": _timm("vit_tiny_patch16_224", 64, img_size=64),
    "timm_mobilenetv3_large_100": _timm("mobilenetv3_large_100", 96),
    "timm_repvgg_a0": _timm("repvgg_a0", 96),
    "hf_bert": _hf_bert,
    "hf_distilbert": _hf_distilbert,
    "hf_vit": _hf_vit,
    "hf_whisper_encoder": _hf_whisper_encoder,
    "yolov8n": _yolov8n,
    "espcn": _espcn,
}


def settle_batch_norm(model: Any, inputs: tuple[Any, ...], batches: int = 4, batch: int = 8) -> None:
    """Give the batch norms of a randomly initialised model the statistics of random inputs.

    Fresh batch norms hold mean 0 and variance 1, so a deep random network's activations grow or vanish
    layer after layer and the int8-vs-fp32 SQNR measures that, not quantization; a few training-mode passes
    on inputs like the example ones put every layer's output back near unit scale, as trained weights do.
    Models with integer inputs (token ids) are left as they are.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or any(not x.is_floating_point() for x in inputs):
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(*(torch.randn(batch, *x.shape[1:]) for x in inputs))
    model.eval()


# ---------------------------------------------------------------------------------------------------
# Exporters.

def _input_names(count: int) -> list[str]:
    return ["x"] if count == 1 else ["input_ids", "attention_mask"][:count] + [f"in{i}" for i in range(2, count)]


def export_onnx(model: Any, inputs: tuple[Any, ...], exporter: str, path: Path) -> None:
    """Write ``model`` to ``path`` with ``exporter``: ``ts13``/``ts17`` (TorchScript, that opset),
    ``dynamo`` (torch.export, its default opset), or ``ts17+onnxsim``/``ts17+onnxslim`` (the opset-17
    TorchScript file passed through that simplifier)."""
    import torch

    if "+" in exporter:
        base, simplifier = exporter.split("+")
        export_onnx(model, inputs, base, path)
        _simplify(path, simplifier)
        return

    names = _input_names(len(inputs))
    # The exporters' deprecation and constant-folding warnings would bury the progress lines. nn.MultiheadAttention's
    # inference fast path (one fused aten op) has no ONNX export: turn it off as a user exporting a ViT must.
    fast_path = torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            if exporter == "dynamo":
                torch.onnx.export(model, inputs, str(path), dynamo=True, input_names=names, external_data=False,
                                  verbose=False)
            else:
                torch.onnx.export(model, inputs, str(path), dynamo=False, opset_version=int(exporter[2:]),
                                  input_names=names)
        finally:
            torch.backends.mha.set_fastpath_enabled(fast_path)


def _simplify(path: Path, simplifier: str) -> None:
    import onnx

    if simplifier == "onnxsim":
        import onnxsim

        simplified, ok = onnxsim.simplify(onnx.load(str(path)))
        if not ok:
            raise RuntimeError("onnxsim could not check its simplified model against the original")
    else:
        import onnxslim

        simplified = onnxslim.slim(onnx.load(str(path)))
    onnx.save(simplified, str(path))


EXPORTERS = ("ts13", "ts17", "dynamo", "ts17+onnxsim", "ts17+onnxslim")


# ---------------------------------------------------------------------------------------------------
# The per-file check (runs in the child process; the test calls it directly).

def random_data(path: Path, samples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs for every input of the ONNX file, ``samples`` along the batch axis, keyed by input name.

    Float inputs are standard normal; integer inputs named like a mask are ones with the last quarter
    zero, other integer inputs are token ids below ``MAX_TOKEN_ID``.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    data: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = [samples, *(d.dim_value for d in tensor_type.shape.dim[1:])]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating):
            data[value.name] = rng.standard_normal(shape).astype(dtype)
        elif "mask" in value.name:
            mask = np.ones(shape, dtype)
            mask[..., shape[-1] * 3 // 4:] = 0
            data[value.name] = mask
        else:
            data[value.name] = rng.integers(0, MAX_TOKEN_ID, shape).astype(dtype)
    return data


def _fp32_outputs(path: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    """ONNX Runtime's first output of the exported file, sample by sample (its batch is fixed at 1)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    count = len(next(iter(data.values())))
    return np.concatenate([session.run(None, {k: v[i:i + 1] for k, v in data.items()})[0] for i in range(count)])


def _program_inputs(program: Any, data: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The data as the program takes it: its layout, quantized where the input is quantized, else cast."""
    arrays = []
    for i, (name, x) in enumerate(zip(program.inputs, data.values(), strict=True)):
        tensor = program.tensor(name)
        perm = program.input_layouts[i] if i < len(program.input_layouts) else None
        x = x.transpose(perm) if perm else x
        arrays.append(tensor.qparams.quantize(x) if tensor.qparams is not None else x.astype(tensor.dtype))
    return arrays


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(signal power / noise power); inf when equal."""
    noise = float(np.sum((reference.astype(np.float64) - approx) ** 2))
    signal_power = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal_power / noise)


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (or last exec'd), in MiB.

    ``getrusage``'s ``ru_maxrss`` would carry the parent's peak over through fork and exec, so a child of
    the suite (which holds torch and the models) would report the parent's size; ``VmHWM`` belongs to the
    address space that exec made.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # no procfs (macOS: bytes)


MAX_VERSION_EDITS = 4  # op versions ``reference_interpreter`` may lower in one file


def packed_model(model: Any) -> bytes:
    """A flatbuffer ``ModelT`` packed back into ``.tflite`` bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def reference_interpreter(data: bytes, kernels: str) -> tuple[Any, list[str]]:
    """LiteRT on ``data`` with ``kernels``, and what had to change for it to load: ai-edge-litert 2.3's
    reference resolver registers some ops only up to an older version than TensorFlow 2.21's converter
    writes (TILE: int8 is version 3, the reference registers 1 to 2, though its kernel runs int8), so an
    opcode LiteRT refuses by version is read one version lower, and the change is noted."""
    from edgeopt.errors import ModelLoadError
    from edgeopt.runtimes.litert import LiteRT

    notes: list[str] = []
    while True:
        try:
            return LiteRT(data, kernels=kernels), notes  # type: ignore[arg-type]
        except ModelLoadError as err:
            missing = re.search(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'", str(err))
            if missing is None or int(missing[2]) <= 1 or len(notes) >= MAX_VERSION_EDITS:
                raise
            kind, version = missing[1], int(missing[2])
            data = _with_op_version(data, kind, version - 1)
            notes.append(f"{kind} v{version} read as v{version - 1}")


def _with_op_version(data: bytes, kind: str, version: int) -> bytes:
    """``data`` with the operator code of builtin ``kind`` set to ``version``."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    code = getattr(schema.BuiltinOperator, kind)
    for opcode in model.operatorCodes:
        if max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == code:
            opcode.version = version
    return packed_model(model)


def row_finisher(row: Any, start: float, progress: Callable[[Any], None]) -> Callable[..., Any]:
    """``finish(error=None)``: stamp ``row`` (a Row or TfliteRow) with its seconds since ``start``, peak
    memory and one-line error, show it to ``progress``, and return it."""
    def finish(error: BaseException | None = None) -> Any:
        row.seconds = round(time.perf_counter() - start, 1)
        row.peak_rss_mb = peak_rss_mb()
        row.error = None if error is None else one_line(error)
        progress(row)
        return row
    return finish


def check_file(path: Path, row: Row, workdir: Path, device: str = DEVICE, samples: int = SAMPLES,
               progress: Callable[[Row], None] = lambda _: None) -> Row:
    """Load, deploy and check one ONNX file; fill ``row`` stage by stage (``progress`` sees each stage).

    Every failure ends the row with its one-line error; nothing is raised.
    """
    from edgeopt.pipeline.evaluate import dequantize_output
    from edgeopt.pipeline.frontend.load import load
    from edgeopt.runtimes.reference.executor import run_program
    from edgeopt.workflows.deploy import deploy

    start = time.perf_counter()

    finish = row_finisher(row, start, progress)

    def begin(stage: str) -> None:
        """Mark ``stage`` started and not done, so that a parent seeing this process die knows where."""
        setattr(row, stage, False)
        progress(row)

    try:
        begin("loads")
        load(str(path))
        row.loads = True
        progress(row)
        data = random_data(path, samples, np.random.default_rng(0))
        npz = workdir / "data.npz"
        # a single-input model takes ``x``; a multi-input one, one array per input name
        np.savez(npz, **({"x": next(iter(data.values()))} if len(data) == 1 else data))
        begin("deploys")
        result = deploy(str(path), device, data=str(npz), out=str(workdir / "out"))
        row.deploys = True
        progress(row)
        begin("litert_loads")  # BUILTIN_REF may abort the process from here on
        litert, notes = reference_interpreter((result.out_dir / "model.int8.tflite").read_bytes(), "reference")
        row.notes = "; ".join(notes) or None
        row.litert_loads = True
        program = result.program.replace(rounding="double")
        inputs = _program_inputs(program, data)
        expected = litert.run(inputs)
        got = run_program(program, inputs)
        row.bitexact = len(got) == len(expected) and all(
            g.shape == e.shape and np.array_equal(g, e) for g, e in zip(got, expected))
        fp32 = _fp32_outputs(path, data)
        row.sqnr_db = round(sqnr_db(fp32, dequantize_output(program, got[0], 0).reshape(fp32.shape)), 1)
    except Exception as err:  # noqa: BLE001  every failure is a row
        return finish(err)
    return finish()


def check_isolated(path: Path, row: Row, device: str = DEVICE, timeout_s: float = TIMEOUT_S) -> Row:
    """``check_file`` in a child process: an abort, a crash or a timeout becomes the row's error."""
    command = [sys.executable, str(Path(__file__).resolve()), "--check", str(path), "--device", device]
    return run_isolated(command, row, timeout_s)


RowT = TypeVar("RowT")


def run_isolated(command: list[str], row: RowT, timeout_s: float) -> RowT:
    """Run ``command --row FILE`` in a child process that fills the row (a dataclass) in ``FILE`` stage by
    stage; an abort, a crash or a timeout becomes the row's error, naming the stage the child was in
    (the first field the child set to False: started, not done)."""
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        row_file = Path(tmp) / "row.json"
        row_file.write_text(json.dumps(asdict(row)))  # type: ignore[call-overload]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        try:
            proc = subprocess.run([*command, "--row", str(row_file)], env=env, timeout=timeout_s,
                                  capture_output=True, text=True, check=False)
            status: str | None = None if proc.returncode == 0 else _exit_reason(proc.returncode, proc.stderr)
        except subprocess.TimeoutExpired:
            status = f"Timeout: no result after {timeout_s:.0f} s"
        done = type(row)(**json.loads(row_file.read_text()))
        if status is not None and done.error is None:  # type: ignore[attr-defined]
            done.error = f"{status} during {_stage(done)}"  # type: ignore[attr-defined]
            done.seconds = round(time.perf_counter() - start, 1)  # type: ignore[attr-defined]
        return done


def _exit_reason(returncode: int, stderr: str) -> str:
    if returncode < 0:
        return f"Abort: child killed by {signal.Signals(-returncode).name}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return f"Crash: child exited {returncode} ({last[:100]})"


STAGES = {"loads": "load", "deploys": "deploy", "litert_loads": "the BUILTIN_REF check"}
"""Stage fields of a row, in order, and how an error names them."""


def _stage(row: Any) -> str:
    """The stage a child was in when it died: the first stage field set to False (started, not done)."""
    stages = getattr(row, "STAGES", STAGES)
    for name, label in stages.items():
        if getattr(row, name, None) is False:
            return label
    return "the check"


# ---------------------------------------------------------------------------------------------------
# The table.

def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return str(value)


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table, errors escaped for table cells."""
    header = ["model", "exporter", "loads", "deploys", "LiteRT loads", "bit-exact", "SQNR dB", "s", "peak MB",
              "error", "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.model, row.exporter, row.loads, row.deploys, row.litert_loads, row.bitexact, row.sqnr_db,
                 row.seconds, row.peak_rss_mb, (row.error or "").replace("|", "\\|"), row.notes or ""]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def summary(rows: Sequence[Row]) -> str:
    """``N of M deploy; K of N bit-exact``, counting the files that were exported."""
    files = [r for r in rows if r.loads is not None]
    deployed = [r for r in files if r.deploys]
    exact = [r for r in deployed if r.bitexact]
    skipped = len(rows) - len(files)
    return (f"{len(deployed)} of {len(files)} ONNX files deploy; {len(exact)} of {len(deployed)} bit-exact with "
            f"LiteRT BUILTIN_REF" + (f" ({skipped} not built or exported, not counted)" if skipped else ""))


def run_suite(models: Sequence[str], exporters: Sequence[str], device: str, timeout_s: float,
              settle: bool = True, echo: Callable[[str], None] = print) -> list[Row]:
    """Build, export and check every (model, exporter) pair; one row each, in order.

    ``settle``: give batch norms the statistics of random inputs first (``settle_batch_norm``).
    """
    import torch

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="conformance-files-") as tmp:
        for name in models:
            torch.manual_seed(0)
            try:
                model, inputs = MODELS[name]()
                if settle:
                    settle_batch_norm(model, inputs)
            except Exception as err:  # noqa: BLE001  a model that cannot be built (package missing) is a row
                rows += [Row(name, e, error=f"build: {one_line(err)}") for e in exporters]
                echo(f"{name}: build failed: {one_line(err)}")
                continue
            for exporter in exporters:
                path = Path(tmp) / f"{name}.{exporter}.onnx"
                try:
                    export_onnx(model, inputs, exporter, path)
                except Exception as err:  # noqa: BLE001
                    row = Row(name, exporter, error=f"export: {one_line(err)}")
                else:
                    row = check_isolated(path, Row(name, exporter), device, timeout_s)
                    path.unlink(missing_ok=True)
                rows.append(row)
                echo(f"{name} {exporter}: " + (row.error or f"ok, bit-exact={row.bitexact}, SQNR {row.sqnr_db} dB"))
    return rows


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--exporters", default=",".join(EXPORTERS), help=f"comma-separated subset of {EXPORTERS}")
    parser.add_argument("--limit", type=int, help="only the first N models")
    parser.add_argument("--device", default=DEVICE)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per file")
    parser.add_argument("--fresh-batch-norm", action="store_true",
                        help="keep batch norms as initialised (mean 0, variance 1) instead of settling them")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)  # child mode: one file
    parser.add_argument("--row", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite (or, with ``--check``, one file in child mode) and print the table."""
    args = _parse(argv)
    if args.check is not None:
        row = Row(**json.loads(args.row.read_text()))
        with tempfile.TemporaryDirectory(prefix="conformance-check-") as tmp:
            check_file(args.check, row, Path(tmp), args.device,
                       progress=lambda r: args.row.write_text(json.dumps(asdict(r))))
        return 0
    models = args.models.split(",") if args.models else list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    exporters = args.exporters.split(",")
    if unknown or set(exporters) - set(EXPORTERS):
        sys.exit(f"unknown models {unknown} or exporters {sorted(set(exporters) - set(EXPORTERS))}; "
                 f"models: {', '.join(MODELS)}; exporters: {', '.join(EXPORTERS)}")
    rows = run_suite(models[:args.limit], exporters, args.device, args.timeout, settle=not args.fresh_batch_norm)
    print(markdown_table(rows))
    print()
    print(summary(rows))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
