"""report.html: one self-contained static page per run (styles, plots as inline SVG, a few lines of script
to sort tables; nothing fetched from the network), rendered with Jinja2 from report.json's dicts.

Templates are package data under ``templates/``. Every value is escaped by Jinja2's autoescape; the
plots are matplotlib's own SVG, marked safe.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from edgeopt.pipeline.report import plots


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("edgeopt.pipeline.report", "templates"),
                       autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def deploy_plots(report: Mapping[str, Any]) -> dict[str, str]:
    """The plots of one deploy's page (``Report.to_json``'s dict), by section: ``placement`` always,
    ``recipe``, ``sensitivity`` and ``equalization`` when the report has them."""
    svg = {"placement": plots.placement_time_svg(report["placement"]["ops"])}
    if report.get("recipe"):
        svg["recipe"] = plots.recipe_svg(report["recipe"], report["recipe_budget"])
    if report.get("sensitivity") is not None:
        svg["sensitivity"] = plots.sensitivity_svg(report["sensitivity"])
    if (report.get("equalization") or {}).get("layers"):
        svg["equalization"] = plots.weight_ranges_svg(report["equalization"]["layers"])
    return svg


def deploy_html(report: Mapping[str, Any], svgs: Mapping[str, str] | None = None) -> str:
    """The page of one deploy (``Report.to_json``'s dict): summary, recipe, sensitivity, equalization,
    and per-op placement and time (a sortable table and a chart by op type and unit). ``svgs``: its plots
    (``deploy_plots``), when the caller has drawn them already."""
    svg = {key: Markup(text) for key, text in (deploy_plots(report) if svgs is None else svgs).items()}
    return _environment().get_template("deploy.html").render(r=report, acc=_accuracy(report), plots=svg)


def compare_html(reports: Sequence[Mapping[str, Any]], pages: Sequence[Path], out_dir: Path) -> str:
    """The page of a compare: accuracy against fps and energy for every model, and a sortable table linking
    to each model's own page (``pages``, written under ``out_dir``)."""
    links = [_relative(p, out_dir) for p in pages]
    return _environment().get_template("compare.html").render(
        reports=reports, links=links, plot=Markup(plots.compare_svg(reports)))


def sweep_html(report: Mapping[str, Any], out_dir: Path) -> str:
    """The page of a sweep (its sweep.json dict, written under ``out_dir``): accuracy against latency for every
    combination, and a sortable table linking each combination's own page, failed ones with their error."""
    links = {r["name"]: _relative(Path(r["html"]), out_dir) for r in report["combinations"] if r.get("html")}
    return _environment().get_template("sweep.html").render(
        r=report, links=links, plot=Markup(plots.sweep_svg(report["combinations"])))


def _relative(page: Path, out_dir: Path) -> str:
    return str(page.relative_to(out_dir)) if page.is_relative_to(out_dir) else str(page)


def compress_html(report: Mapping[str, Any]) -> str:
    """The page of a compress (its compress.json dict): before/after figures, the score table as one panel
    per layer, and the chosen ratios."""
    return _environment().get_template("compress.html").render(
        r=report, plot=Markup(plots.compress_svg(report["score_table"]["entries"])))


def _accuracy(report: Mapping[str, Any]) -> dict | None:
    acc = report.get("accuracy")
    if acc is None:
        return None
    return {"label": "top-1 %" if acc["metric"] == "top1" else "top-1 agreement %", "fp32": acc["fp32"],
            "int8": acc["int8"], "delta": acc["int8"] - acc["fp32"], "agreement": acc.get("agreement"), "n": acc["n"],
            "device_scheme": acc.get("device_scheme")}
