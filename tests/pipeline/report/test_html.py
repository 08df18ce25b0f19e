"""report.html of a real deploy: self-contained, every section there, the numbers of report.json."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from edgeopt.pipeline.report.html import compare_html
from edgeopt.workflows.deploy import DeployResult

SVG = "{http://www.w3.org/2000/svg}"


def test_report_html_is_one_self_contained_page_with_every_section(example_deploy: DeployResult) -> None:
    html = (example_deploy.out_dir / "report.html").read_text()
    report = json.loads((example_deploy.out_dir / "report.json").read_text())
    assert report["artifacts"]["html"] == str(example_deploy.out_dir / "report.html")
    # nothing fetched: no external script, stylesheet, image or font (SVG namespaces are names, not fetches)
    assert not re.search(r'<(script|link|img|iframe)[^>]*(src|href)=', html)
    assert not re.search(r"url\((?!#)", html) and "@import" not in html  # url(#id): the plots' own clip paths
    for section in ("summary", "recipe", "sensitivity", "equalization", "placement"):
        assert f'<section id="{section}">' in html, section
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.DOTALL)
    assert len(svgs) == 4  # recipe, sensitivity, equalization, time by op type and unit
    for svg in svgs:
        assert ET.fromstring(svg).tag == f"{SVG}svg"
    rows = re.findall(r"<tr><td class=\"n\" data-v=", html)
    assert len(rows) == len(report["placement"]["ops"])
    acc = report["accuracy"]
    assert f"{acc['int8']:.2f}" in html and f"{report['latency_ms']['int8']:.3f} ms" in html
    assert len(html.encode()) < 2 << 20


def test_equalization_section_has_per_channel_ranges_before_and_after(example_deploy: DeployResult) -> None:
    section = example_deploy.report["equalization"]
    assert section["changed_layers"] >= len(section["layers"]) > 0
    names = {op.source for op in example_deploy.program.ops}
    for layer in section["layers"]:
        assert layer["node"] in names
        for key in ("before", "after"):
            ranges = layer[key]
            assert len(ranges["min"]) == len(ranges["max"]) > 1
            assert all(lo <= hi for lo, hi in zip(ranges["min"], ranges["max"]))
        assert layer["before"]["min"] != layer["after"]["min"] or layer["before"]["max"] != layer["after"]["max"]


def test_compare_page_plots_every_model_and_links_their_pages(example_deploy: DeployResult) -> None:
    other = {**example_deploy.report, "model": "other<&>", "fps": {"int8": 10.0, "fp32": 5.0}}
    out = example_deploy.out_dir.parent
    html = compare_html([example_deploy.report, other], [example_deploy.out_dir / "report.html",
                                                        out / "elsewhere" / "report.html"], out)
    assert f'href="{example_deploy.out_dir.name}/report.html"' in html
    assert "other&lt;&amp;&gt;" in html and "other<&>" not in html
    svg = ET.fromstring(re.search(r"<svg.*?</svg>", html, flags=re.DOTALL).group(0))
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert example_deploy.report["model"] in labels and "other<&>" in labels


def test_page_of_a_plain_deploy_without_data_has_only_its_own_sections(example_deploy: DeployResult) -> None:
    from edgeopt.pipeline.report.html import deploy_html

    bare = {k: v for k, v in example_deploy.report.items()
            if k not in ("recipe", "recipe_budget", "sensitivity", "equalization")}
    html = deploy_html({**bare, "accuracy": None})
    assert '<section id="summary">' in html and '<section id="placement">' in html
    assert all(f'<section id="{s}">' not in html for s in ("recipe", "sensitivity", "equalization"))
    assert "top-1" not in html and len(re.findall(r"<svg", html)) == 1
