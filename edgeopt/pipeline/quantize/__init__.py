"""quantize: float Graph + calibration statistics → QuantizedGraph (encodings per the TFLite 8-bit spec)."""
from __future__ import annotations

from edgeopt.pipeline.quantize.minmax import quantize_minmax

__all__ = ["quantize_minmax"]
