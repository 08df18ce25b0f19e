"""compare's summary (compare.json) and its table: a ratio per row, 80 columns, numbers never cut."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from edgeopt.pipeline.report.comparison import comparison, render_comparison


def _report(name: str, macs: int, fps: float, measured: dict | None = None, top1: float | None = 91.25) -> dict:
    report = {
        "model": name, "device": "arm-cortex-a78-xnnpack", "macs": macs, "params": macs // 150,
        "size_bytes": {"int8_tflite": macs // 130},
        "accuracy": None if top1 is None else {"metric": "top1", "fp32": top1 + 0.5, "int8": top1, "agreement": 99.1},
        "fps": {"int8": fps, "fp32": fps / 2}, "energy_mj": {"int8": 1.23456, "fp32": 3.2},
    }
    if measured is not None:
        report["measured"] = measured
    return report


def _measured(int8_fps: float, fp32_fps: float) -> dict:
    return {"target": "host", "tool": "LiteRT", "threads": 1, "statistic": "median", "runs": {"int8": 50, "fp32": 50},
            "fps": {"int8": int8_fps, "fp32": fp32_fps},
            "latency_ms": {"int8": 1e3 / int8_fps, "fp32": 1e3 / fp32_fps},
            "spread_ms": {p: {"p10": 1.0, "p50": 1.1, "p90": 1.5} for p in ("int8", "fp32")}}


def test_every_row_has_its_ratio_to_the_base_and_missing_rows_are_left_out() -> None:
    summary = comparison([_report("base", 68_862_592, 1021.1, _measured(2000.0, 640.0)),
                          _report("small", 34_431_296, 1825.9, _measured(2600.0, 1040.0))], ["a", "b"])
    rows = {row["key"]: row for row in summary["rows"]}
    assert summary["target"] == "host" and [m["out_dir"] for m in summary["models"]] == ["a", "b"]
    assert rows["macs"]["ratios"] == [0.5] and rows["fps_int8_measured"]["ratios"] == [1.3]
    assert rows["fps_fp32_measured"]["ratios"] == [1.625]
    assert rows["int8_over_fp32_measured"]["values"] == [pytest.approx(3.125), pytest.approx(2.5)]
    assert "energy_mj_int8_measured" not in rows  # no target measured energy
    assert summary["measured"][1]["runs"] == {"int8": 50, "fp32": 50}


def test_a_row_one_model_lacks_has_no_ratio() -> None:
    summary = comparison([_report("base", 100, 10.0, top1=None), _report("other", 50, 20.0)], ["a", "b"])
    rows = {row["key"]: row for row in summary["rows"]}
    assert rows["top1_int8"]["values"] == [None, 91.25] and rows["top1_int8"]["ratios"] == [None]
    assert "fps_int8_measured" not in rows and summary["target"] == "emulate"


@pytest.mark.parametrize("count", [2, 3])
def test_the_table_fits_80_columns_and_never_cuts_a_number(count: int) -> None:
    reports = [_report(f"a_rather_long_model_name_{i}", 12_345_678_901 // (i + 1), 123456.7 / (i + 1),
                       _measured(99999.9 / (i + 1), 88888.8)) for i in range(count)]
    summary = comparison(reports, [f"out/{i}" for i in range(count)])
    buffer = io.StringIO()
    render_comparison(summary, Console(file=buffer, width=80, color_system=None))
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    table = "\n".join(lines)
    for row in summary["rows"]:
        for value in row["values"]:
            assert row["format"].format(value) in table, row["key"]  # whole, on one line
        for ratio in row["ratios"]:
            assert f"{ratio:.3f}" in table
