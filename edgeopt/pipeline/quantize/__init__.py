"""quantize: float Graph + calibration statistics -> QuantizedGraph (encodings per the TFLite 8-bit spec)."""
