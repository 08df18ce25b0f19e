"""report.html of a real deploy in a real headless browser: Debian's chromium driven by playwright (its
Python package, pointed at /usr/bin/chromium: nothing downloaded). Skips when either is absent."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeopt.workflows.deploy import DeployResult

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install -y chromium")


@pytest.fixture(scope="module")
def browser() -> sync_api.Browser:
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where chromium refuses its sandbox
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _open(browser: sync_api.Browser, page_path: Path, width: int) -> tuple[sync_api.Page, list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: errors.append(f"fetched {req.url}") if not req.url.startswith("file:") else None)
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    return page, errors


def test_report_renders_sorts_and_fits_a_phone(browser: sync_api.Browser, example_deploy: DeployResult) -> None:
    out = example_deploy.out_dir
    page, errors = _open(browser, out / "report.html", 1200)
    plots = page.locator(".plot svg")
    assert plots.count() == 4
    for i in range(plots.count()):
        box = plots.nth(i).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, i
        assert plots.nth(i).locator("path").count() > 5, i  # drawn marks, not an empty frame

    table = page.locator("table#ops")
    header = table.locator("th", has_text="est. µs")
    column = [h.strip() for h in table.locator("th").all_inner_texts()].index(header.inner_text().strip())

    def values() -> list[float]:
        return [float(v) for v in table.locator(f"tbody tr td:nth-child({column + 1})").evaluate_all(
            "cells => cells.map(c => c.dataset.v)")]

    unsorted = values()
    assert len(unsorted) == len(example_deploy.report["placement"]["ops"]) and unsorted != sorted(unsorted)
    header.click()
    assert values() == sorted(unsorted) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert values() == sorted(unsorted, reverse=True) and header.get_attribute("aria-sort") == "descending"
    page.screenshot(path=str(out / "report-screenshot.png"), full_page=True)

    phone, phone_errors = _open(browser, out / "report.html", 390)
    # the page itself never scrolls sideways on a phone; only the wide table's own box does
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone.screenshot(path=str(out / "report-screenshot-phone.png"), full_page=True)
    assert errors == [] and phone_errors == []
    assert (out / "report-screenshot.png").stat().st_size > 10_000
