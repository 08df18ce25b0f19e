"""One real deploy of the built-in example, shared by the report tests: the automatic recipe (so CLE is
tried) and the sensitivity analysis, so every section and plot of report.html is there.

Its output folder is ``$EDGEOPT_TEST_ARTIFACTS/report-example`` when that variable is set (CI keeps the
folder, the browser test's screenshots included), else a temporary folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeopt.workflows.deploy import DeployResult, deploy


@pytest.fixture(scope="session")
def example_deploy(tmp_path_factory: pytest.TempPathFactory) -> DeployResult:
    root = os.environ.get("EDGEOPT_TEST_ARTIFACTS")
    out = Path(root) / "report-example" if root else tmp_path_factory.mktemp("report-example")
    return deploy(None, "arm-cortex-a78-xnnpack", out=out, max_drop=0.0, sensitivity=True, recipe_samples=200)
