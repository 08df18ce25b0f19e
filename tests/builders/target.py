"""Targets for tests that exercise the recipe or QuantSim on rules no shipped profile has."""
from __future__ import annotations

from collections.abc import Iterable

from edgeopt.device_profiles import load_profile
from edgeopt.device_profiles.quantization import Kernel, OpType, tflite_int8_spec
from edgeopt.pipeline.target import Target

INT8 = Kernel(activation=8, param=8)
INT16 = Kernel(activation=16, param=8)


def spec_target(*, rounding: str = "double", int16: bool = True, int8_only: Iterable[str] = (),
                weight_bits: int = 8) -> Target:
    """The host profile (every op has a float32 CPU kernel) with TFLite's int8 spec for rules and
    ``rounding``: int16 activations allowed everywhere (``int16``) but on the op types ``int8_only``, and
    kernels with ``weight_bits``-bit weights."""
    profile = load_profile("host")
    spec = tflite_int8_spec()
    kernels = [INT8, *([INT16] if int16 else []), *([Kernel(activation=8, param=4)] if weight_bits == 4 else [])]
    rules = spec.model_copy(update={
        "defaults": spec.defaults.model_copy(update={"supported_kernels": kernels}),
        "op_type": {op: OpType(supported_kernels=[INT8]) for op in int8_only}})
    runtime = profile.runtime.model_copy(update={"requantization_rounding": rounding})
    return Target(profile.model_copy(update={"quantization": rules, "runtime": runtime}), weight_bits=weight_bits)
