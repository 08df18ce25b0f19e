"""The Python API in one call each: ``edgeopt.equalize``, ``edgeopt.QuantSim``, ``edgeopt.deploy``,
``edgeopt.compress``."""
from __future__ import annotations

from typing import Any

from edgeopt.ir import QuantizedGraph
from edgeopt.torch.equalize import equalize
from edgeopt.torch.quantsim import QuantSim
from edgeopt.workflows import deploy as deploy_workflow
from edgeopt.workflows.compress import compress
from edgeopt.workflows.deploy import DeployResult

__all__ = ["QuantSim", "compress", "deploy", "equalize"]


def deploy(model: QuantSim | QuantizedGraph | str | None, device: str, **options: Any) -> DeployResult:
    """Write the int8 artifacts and report for ``model``, as ``edgeopt deploy`` does.

    Args:
        model: a QuantSim (its current weights and encodings are exported as they are: no new
            calibration), a QuantizedGraph, or a model spec as the CLI takes it.
        device: a device profile name or the path of a profile .toml.
        **options: the fields of ``workflows.deploy.DeployOptions`` (``data``, ``out``, ``calib``,
            ``max_drop`` …), and ``progress``.

    Returns:
        The report, the output directory and the int8 program.
    """
    if isinstance(model, QuantSim):
        model = model.export()
    return deploy_workflow.deploy(model, device, **options)
