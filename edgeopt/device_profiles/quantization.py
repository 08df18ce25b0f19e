"""Quantization rules of a device, in the vocabulary of AIMET's quantsim config files.

AIMET's config (``aimet_common/quantsim_config/*.json``) has ``defaults`` (``ops``: activation quantizers,
``params``: weight quantizers, ``per_channel_quantization``, ``strict_symmetric``, ``unsigned_symmetric``,
``supported_kernels``), ``params`` (per parameter name, e.g. ``bias``), ``op_type`` (per ONNX op type
overrides), ``supergroups`` (op sequences quantized as one: no quantizer between them), ``model_input``
and ``model_output``. This is the same tree in TOML, with booleans as booleans, and op types named as in
ONNX (the IR's names). ``supported_kernels`` lists the (activation, weight) bit widths the accelerator has
kernels for, first the default: ``[{activation = 8, param = 8}, {activation = 16, param = 8}]`` is w8a8
with w8a16 allowed.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edgeopt.device_profiles.base import NonEmpty, Section


class Kernel(Section):
    """One supported (activation, parameter) precision, as AIMET's ``supported_kernels`` entries."""

    activation: Literal[8, 16]
    """Activation bit width."""
    param: Literal[4, 8, 16]
    """Weight bit width."""
    dtype: Literal["int", "float"] = "int"


class ActivationQuantizer(Section):
    """AIMET ``ops`` settings: how an op's activations are quantized."""

    is_input_quantized: bool | None = None
    is_output_quantized: bool | None = None
    is_symmetric: bool | None = None


class ParamQuantizer(Section):
    """AIMET ``params`` settings: how a parameter (weight, bias) is quantized."""

    is_quantized: bool | None = None
    is_symmetric: bool | None = None
    bitwidth: Literal[4, 8, 16, 32] | None = None
    """Storage width; AIMET leaves it to the kernel, TFLite fixes biases at 32."""
    device_is_symmetric: bool | None = None
    """The device's own weight symmetry where a TFLite program cannot follow it (SNPE's DSP: asymmetric,
    ``false``): the program carries ``is_symmetric``'s weights, and the report states both schemes and
    what the difference costs in weight SQNR (``pipeline.quantize.weight_scheme``)."""


class Defaults(Section):
    """AIMET ``defaults``."""

    ops: ActivationQuantizer
    params: ParamQuantizer
    per_channel_quantization: bool
    """Weights per output channel (True) or one scale per tensor (False)."""
    strict_symmetric: bool = False
    """Symmetric weights use the range [-127, 127] (True) or [-128, 127]."""
    unsigned_symmetric: bool = False
    supported_kernels: Annotated[list[Kernel], Field(min_length=1)]
    """Precisions allowed for every op unless its ``op_type`` entry says otherwise; the first is the default."""


class OpType(Section):
    """AIMET ``op_type`` entry: overrides for one ONNX op type."""

    is_input_quantized: bool | None = None
    is_output_quantized: bool | None = None
    is_symmetric: bool | None = None
    per_channel_quantization: bool | None = None
    params: dict[str, ParamQuantizer] = {}
    supported_kernels: list[Kernel] | None = None


class Supergroup(Section):
    """Ops fused for quantization: no quantizer between them, e.g. ``["Conv", "Relu"]``."""

    op_list: Annotated[list[NonEmpty], Field(min_length=2)]


class ModelInput(Section):
    is_input_quantized: bool


class ModelOutput(Section):
    is_output_quantized: bool = True


class Quantization(Section):
    """The device's quantization rules (AIMET's quantsim config tree)."""

    defaults: Defaults
    params: dict[str, ParamQuantizer] = {}
    op_type: dict[str, OpType] = {}
    supergroups: list[Supergroup] = []
    model_input: ModelInput
    model_output: ModelOutput = ModelOutput()

    def kernels(self, op_type: str) -> list[Kernel]:
        """The precisions allowed for ``op_type`` (an ONNX op type); the first is the default."""
        override = self.op_type.get(op_type)
        if override is not None and override.supported_kernels is not None:
            return override.supported_kernels
        return self.defaults.supported_kernels

    def per_channel(self, op_type: str) -> bool:
        """Whether ``op_type``'s weights are quantized per output channel."""
        override = self.op_type.get(op_type)
        if override is not None and override.per_channel_quantization is not None:
            return override.per_channel_quantization
        return self.defaults.per_channel_quantization


def tflite_int8_spec() -> Quantization:
    """TensorFlow Lite's 8-bit quantization spec, the rules of a profile that states none: int8
    asymmetric activations, int8 symmetric per-channel weights in [-127, 127], int32 biases."""
    return Quantization(
        defaults=Defaults(
            ops=ActivationQuantizer(is_output_quantized=True, is_symmetric=False),
            params=ParamQuantizer(is_quantized=True, is_symmetric=True, bitwidth=8),
            per_channel_quantization=True,
            strict_symmetric=True,
            supported_kernels=[Kernel(activation=8, param=8)],
        ),
        params={"bias": ParamQuantizer(is_quantized=True, is_symmetric=True, bitwidth=32)},
        model_input=ModelInput(is_input_quantized=True),
    )
