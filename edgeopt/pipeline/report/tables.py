"""Terminal tables that fit the terminal without cutting a number (rich shortens a cell to "+64.…" when a
table is wider than the terminal)."""
from __future__ import annotations

from rich.table import Table


def fitted_table(title: str, headers: list[str], rows: list[list[str]], width: int,
                 left: tuple[int, ...] | None = None) -> Table:
    """A table of ``rows`` within ``width`` terminal columns that never cuts a value: every column but the
    first is as wide as its widest value (its header on one line where there is room, else wrapped at
    spaces); the first (names) takes the rest and wraps. Where even that does not fit, the last columns are
    left out, down to three. The columns ``left`` (default: the first and the last) are left-aligned, the
    others right-aligned."""
    keep = len(headers)
    words = [max(len(w) for w in h.split()) for h in headers]
    widths = [max([len(r[i]) for r in rows], default=words[i]) for i in range(keep)]
    left = (0, len(headers) - 1) if left is None else left
    need = [max(v, min(w, 6)) for v, w in zip(widths, words)]
    wide = [max(v, len(h)) for v, h in zip(widths, headers)]
    if sum(wide[1:]) + 3 * keep + 1 + min(widths[0], 12) <= width:  # room for one-line headers
        need = wide
    first = min(widths[0], 12)  # the names column wraps down to this
    while keep > 3 and sum(need[1:keep]) + 3 * keep + 1 + first > width:
        keep -= 1
    table = Table(title=title)
    rest = max(first, width - sum(need[1:keep]) - 3 * keep - 1)
    for i in range(keep):
        table.add_column(headers[i], justify="left" if i in left else "right", overflow="fold",
                         width=min(rest, max(widths[0], words[0])) if i == 0 else need[i])
    for row in rows:
        table.add_row(*row[:keep])
    return table
