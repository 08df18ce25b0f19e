"""The report's ``precision`` section: which activations and ops of the program are int8 or int16, which
nodes asked for int16 stayed int8 and why, and the profile rules a node could not follow."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from edgeopt.pipeline.quantize.profile_checks import RuleException
from edgeopt.pipeline.quantize.profile_rules import Int8Fallback
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.reference.int16_registry import runs_in_int16


def precision_summary(program: QProgram, precision: str, fallbacks: Sequence[Int8Fallback] = (),
                      source: str | None = None, rule_exceptions: Sequence[RuleException] = ()) -> dict:
    """``mode``, the count of 16x8 ops and of int8 <-> int16 requantizations, ops by kind and dtype, the
    dtype of every activation tensor (constants left out), the int16 requests kept int8 and a one-line
    ``summary``.

    Args:
        program: the lowered program.
        precision: the precision it was made with (``w8a8``, ``w8a16``, or ``profile default``).
        fallbacks: nodes that were to run int16 and stayed int8, with the reason (``resolve_plan``).
        source: where the precision came from (``--precision w8a16``, ``profile default``).
        rule_exceptions: profile quantization rules some node could not follow (``profile_checks``).
    """
    requantize = sum(1 for op in program.ops if op.kind == "QUANTIZE"
                     and {program.tensor(op.inputs[0]).dtype, program.tensor(op.outputs[0]).dtype} == {"int8", "int16"})
    by_kind: dict[str, Counter] = {}
    for op in program.ops:
        dtype = "int16" if runs_in_int16(op, program) else program.tensor(op.outputs[0]).dtype
        by_kind.setdefault(op.kind, Counter())[dtype] += 1
    int16_ops = sum(c["int16"] for c in by_kind.values())
    by_profile = sum(1 for f in fallbacks if f.by_profile)
    summary = f"int16: {int16_ops} ops | int8: {sum(c['int8'] for c in by_kind.values())} ops"
    if fallbacks:
        summary += (f" | {len(fallbacks)} nodes kept int8 ({by_profile} by profile rules, "
                    f"{len(fallbacks) - by_profile} without a 16x8 kernel)")
    section = {
        "mode": precision,
        "summary": summary,
        "int16_ops": int16_ops,
        "requantize_ops": requantize,
        "int8_fallbacks": [f.to_json() for f in fallbacks],
        "rule_exceptions": [e.to_json() for e in rule_exceptions],
        "ops_by_dtype": {kind: dict(c) for kind, c in sorted(by_kind.items())},
        "tensor_dtypes": {name: t.dtype for name, t in program.tensors.items() if not t.is_constant},
    }
    if source is not None:
        section["source"] = source
    return section


def render_precision(report: dict, console: Console) -> None:
    """Print the precision summary line, and the nodes kept int8 and the rules not followed, if any."""
    section = report.get("precision")
    if not section or "summary" not in section:
        return
    console.print(f"precision {section['mode']} ({section.get('source', 'given')}): {section['summary']}")
    if section["int8_fallbacks"]:
        table = Table(title="asked for int16, kept int8")
        for column in ("node", "op", "why"):
            table.add_column(column)
        for f in section["int8_fallbacks"]:
            table.add_row(f["node"], f["op"], f["reason"])
        console.print(table)
    if section["rule_exceptions"]:
        table = Table(title="profile quantization rules not followed")
        for column in ("node", "op", "rule", "why"):
            table.add_column(column)
        for e in section["rule_exceptions"]:
            table.add_row(e["node"], e["op"], e["rule"], e["reason"])
        console.print(table)
