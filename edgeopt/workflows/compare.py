"""compare: deploy several models to one device profile and put their reports side by side.

The usual question is compressed against uncompressed: the same task, the same data, two models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt.fileio import atomic_write_text
from edgeopt.pipeline.report.html import compare_html
from edgeopt.workflows.deploy import DeployResult, deploy


def compare(models: list[str], device: str, *, out: str | Path | None = None, **options: Any) -> list[DeployResult]:
    """Deploy each model in ``models`` with the same options; each writes to ``OUT/<index>-<name>``, and
    ``OUT/report.html`` puts them side by side (accuracy against fps and energy, linking each model's page).

    Args:
        models: model specs, as for ``deploy`` (at least two).
        device: the device profile every model is deployed to.
        out: parent folder of the per-model outputs (default ``./edgeopt-out/compare``).
        options: passed to ``deploy`` (data, calib, target, ...).
    """
    root = Path(out) if out is not None else Path("edgeopt-out") / "compare"
    results = [deploy(spec, device, out=root / f"{i}-{Path(spec).stem.replace(':', '-')}", **options)
               for i, spec in enumerate(models)]
    atomic_write_text(root / "report.html", compare_html([r.report for r in results],
                                                         [r.out_dir / "report.html" for r in results], root))
    return results
