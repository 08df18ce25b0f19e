"""Compression stages, each Graph → Graph: spatial and weight SVD, channel pruning with reconstruction,
and the choice of per-layer ratios for a MAC budget."""
