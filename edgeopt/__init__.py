"""edgeopt: optimize, quantize, convert and emulate models for phones and edge devices.

The Python API (``QuantSim``, ``compress``, ``deploy``, ``equalize``, ``sweep``) lives in ``edgeopt.api``; it is imported on
first use so that the CLI does not pay for importing torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["QuantSim", "compress", "deploy", "equalize", "sweep"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgeopt import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
