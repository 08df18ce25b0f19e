"""The Python API in one call each: ``edgeopt.equalize``, ``edgeopt.QuantSim``, ``edgeopt.deploy``,
``edgeopt.compress``, ``edgeopt.sweep``."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from edgeopt.errors import ModelLoadError
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.frontend.load import load_module
from edgeopt.torch.equalize import equalize
from edgeopt.torch.quantsim import QuantSim
from edgeopt.workflows import deploy as deploy_workflow
from edgeopt.workflows.compress import compress
from edgeopt.workflows.deploy import DeployResult
from edgeopt.workflows.sweep import sweep

__all__ = ["QuantSim", "compress", "deploy", "equalize", "sweep"]


def deploy(model: QuantSim | QuantizedGraph | nn.Module | str | None, device: str, *,
           example_input: torch.Tensor | tuple[torch.Tensor, ...] | None = None, **options: Any) -> DeployResult:
    """Write the int8 artifacts and report for ``model``, as ``edgeopt deploy`` does.

    Args:
        model: a QuantSim (its current weights and encodings are exported as they are: no new
            calibration), a QuantizedGraph, an ``nn.Module`` (with ``example_input``, or
            ``input_shape=(1, 3, 224, 224)`` among the options), or a model spec as the CLI takes it.
        device: a device profile name or the path of a profile .toml.
        example_input: for an ``nn.Module``: the input (a tuple for several) it is exported with.
        **options: the fields of ``workflows.deploy.DeployOptions`` (``data``, ``out``, ``calib``,
            ``max_drop`` …), and ``progress``.

    Returns:
        The report, the output directory and the int8 program.

    Raises:
        ModelLoadError: an ``nn.Module`` without ``example_input`` or ``input_shape``, or one the exporter
            cannot take.
    """
    if isinstance(model, QuantSim):
        model = model.export()
    elif isinstance(model, nn.Module):
        if example_input is None and options.get("input_shape") is None:
            raise ModelLoadError(f"edgeopt.deploy of an nn.Module ({type(model).__name__}) needs example_input=a "
                                 "tensor (or a tuple of them), or input_shape=(1, 3, H, W)")
        example = example_input if example_input is not None else torch.zeros(tuple(options["input_shape"]))
        model = load_module(model, example)
    elif not isinstance(model, str | os.PathLike | QuantizedGraph | None):
        raise ModelLoadError(f"edgeopt.deploy takes an nn.Module, a QuantSim, a QuantizedGraph or a model path, "
                             f"not {type(model).__name__}")
    return deploy_workflow.deploy(str(model) if isinstance(model, os.PathLike) else model, device, **options)
