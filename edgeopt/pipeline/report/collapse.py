"""Collapse: int8 accuracy far below fp32 is never reported silently.

A collapse is int8 top-1 agreement with fp32 under ``AGREEMENT_FLOOR`` %, or a top-1 drop of more than
``DROP_CEILING`` points. The warning names the likeliest cause the program and the profile show, and
what to try, in one line; deploy puts it in the report (``accuracy.collapse``) and the CLI prints it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AGREEMENT_FLOOR = 50.0
DROP_CEILING = 20.0


def collapse_warning(accuracy: Mapping[str, Any], *, depthwise: bool, per_channel: bool, weight_bits: int,
                     activation_bits: int, recipe: bool) -> str | None:
    """The one-line warning when ``accuracy`` (deploy's report section) shows a collapse, else None.

    Args:
        accuracy: ``metric``, ``fp32``, ``int8`` and (with labels) ``agreement``, in percent.
        depthwise: the program has depthwise convolutions.
        per_channel: the profile quantizes conv weights per channel.
        weight_bits: the weight bit width used.
        activation_bits: the profile's default activation bit width.
        recipe: the automatic recipe (``--max-drop``) chose the program.
    """
    agreement = accuracy.get("agreement", accuracy["int8"] if accuracy["metric"] == "top1_agreement" else None)
    drop = accuracy["fp32"] - accuracy["int8"] if accuracy["metric"] == "top1" else None
    if not ((agreement is not None and agreement < AGREEMENT_FLOOR) or (drop is not None and drop > DROP_CEILING)):
        return None
    figures = (f"top-1 {accuracy['fp32']:.2f} % fp32 -> {accuracy['int8']:.2f} % int8" if drop is not None
               else "") + (f"{', ' if drop is not None else ''}agreement with fp32 {agreement:.2f} %"
                           if agreement is not None else "")
    if not per_channel and depthwise:
        cause = ("per-tensor weights on a depthwise model (one scale for all filters, whose ranges differ by "
                 "orders of magnitude)")
        todo = "a per-channel profile, or --max-drop to let the recipe equalize the layers (CLE) and retry"
    elif weight_bits < 8:
        cause, todo = f"{weight_bits}-bit weights", "--weight-bits 8, or --max-drop to try AdaRound"
    elif not per_channel:
        cause, todo = "per-tensor weights", "a per-channel profile, or --max-drop (CLE, AdaRound)"
    elif activation_bits < 16:
        cause = "int8 activations with outliers (wide ranges)"
        todo = "--range-method mse, --precision w8a16, or --sensitivity to find the layers to --override"
    else:
        cause, todo = "a few sensitive layers", "--sensitivity to find them, then --override NAME=float"
    if recipe:
        todo = "--override the layers --sensitivity ranks worst to float, or a device profile with wider kernels"
    return f"int8 accuracy collapsed ({figures}); likely cause: {cause}; try {todo}"
