"""The report's ``precision`` section: what the program holds (int8, int16 and float32 ops and
activations, and the ``mode`` that follows from them), where those precisions came from, which nodes
asked for int16 stayed int8 and why, and the profile rules a node could not follow."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from edgeopt.pipeline.quantize.mixed_precision import Promotion
from edgeopt.pipeline.quantize.profile_checks import RuleException
from edgeopt.pipeline.quantize.profile_rules import Int8Fallback
from edgeopt.qprogram import CONVERSION_KINDS, QOp, QProgram, op_mode

# The mode of a program whose layers all run in one precision.
_SINGLE_MODES = {"int8": "w8a8", "int16": "w8a16", "float32": "float"}


def op_dtype(op: QOp, program: QProgram) -> str:
    """``"int16"`` for an op reading or writing an int16 activation (a 16x8 op, or a QUANTIZE to or from
    int16), ``"float32"`` for an op of a float island (DEQUANTIZE included), else its output's dtype."""
    mode = op_mode(op, program)
    return {"16x8": "int16", "float32": "float32"}.get(mode, program.tensor(op.outputs[0]).dtype)


def program_mode(program: QProgram) -> str:
    """``w8a8``, ``w8a16`` or ``float`` when every op but the QUANTIZE/DEQUANTIZE joints runs in that one
    precision, else ``mixed``."""
    dtypes = {op_dtype(op, program) for op in program.ops if op.kind not in CONVERSION_KINDS}
    if len(dtypes) > 1:
        return "mixed"
    return _SINGLE_MODES.get(next(iter(dtypes), "int8"), "w8a8")  # no layer at all: nothing but int8 joints


def precision_source(base: str, overrides: Mapping[str, str] | None = None, promoted: Sequence[Promotion] = (),
                     float_only: Iterable[str] = ()) -> str:
    """Where the program's precisions come from, in the order they were applied, joined by `` + ``.

    Args:
        base: the plan's origin (``--precision w8a16``, ``profile default``: ``ResolvedPlan.source``).
        overrides: the user's per-node / per-op-type overrides (``--override``).
        promoted: the layers the automatic recipe's mixed precision promoted.
        float_only: nodes in float islands that no override or promotion put there (ops the device runs
            only in float32, or with no int8 kernel at all, like LayerNormalization).
    """
    parts = [base]
    if overrides:
        parts.append("--override " + " ".join(f"{name}={dtype}" for name, dtype in overrides.items()))
    if promoted:
        counts = Counter(p.to for p in promoted)
        parts.append("recipe: " + ", ".join(f"{n} layer{'s' if n > 1 else ''} to {to}"
                                            for to, n in sorted(counts.items())))
    if n := len(set(float_only)):
        parts.append(f"{n} float-only node{'s' if n > 1 else ''}")
    return " + ".join(parts)


def precision_summary(program: QProgram, requested: str, fallbacks: Sequence[Int8Fallback] = (),
                      source: str | None = None, rule_exceptions: Sequence[RuleException] = ()) -> dict:
    """``mode`` (what the program holds, ``program_mode``), the precision ``requested``, the count of
    int16, int8 and float32 ops and of int8 <-> int16 requantizations, ops by kind and dtype, the dtype of
    every activation tensor (constants left out), the int16 requests kept int8 and a one-line ``summary``.

    Args:
        program: the lowered program.
        requested: the precision asked for (``w8a8``, ``w8a16``; the profile's default kernel when unset).
        fallbacks: nodes that were to run int16 and stayed int8, with the reason (``resolve_plan``).
        source: where the precisions came from (``precision_source``).
        rule_exceptions: profile quantization rules some node could not follow (``profile_checks``).
    """
    requantize = sum(1 for op in program.ops if op.kind == "QUANTIZE"
                     and {program.tensor(op.inputs[0]).dtype, program.tensor(op.outputs[0]).dtype} == {"int8", "int16"})
    by_kind: dict[str, Counter] = {}
    for op in program.ops:
        by_kind.setdefault(op.kind, Counter())[op_dtype(op, program)] += 1
    totals = sum(by_kind.values(), Counter())
    by_profile = sum(1 for f in fallbacks if f.by_profile)
    summary = " | ".join(f"{dtype}: {totals[dtype]} ops" for dtype in ("int16", "int8", "float32") if totals[dtype])
    if fallbacks:
        summary += (f" | {len(fallbacks)} nodes kept int8 ({by_profile} by profile rules, "
                    f"{len(fallbacks) - by_profile} without a 16x8 kernel)")
    section = {
        "mode": program_mode(program),
        "requested": requested,
        "summary": summary,
        "int16_ops": totals["int16"],
        "float_ops": totals["float32"],
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
    console.print(f"precision {section['mode']} ({section.get('source', 'given')}): {section['summary']}",
                  highlight=False)
    weights = section.get("weights")
    if weights is not None:
        sqnr = weights.get("sqnr_db")
        cost = "" if sqnr is None else (f"; weight SQNR median {sqnr['device_median']:.1f} dB on the device's grid, "
                                        f"{sqnr['shipped_median']:.1f} dB shipped (worst layer "
                                        f"-{sqnr['worst_layer_loss']:.1f} dB)")
        console.print(f"weights: the device uses {weights['device']}, the files carry {weights['shipped']}; "
                      f"int8 accuracy is the shipped program's, 'device scheme' the device's weights "
                      f"emulated{cost}", highlight=False)
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
