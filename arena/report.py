"""Tables for people: aligned columns and hex addresses."""
from __future__ import annotations

from .manager import Event
from .run import Outcome, per_request, size_text


def columns(rows: list[list[str]]) -> str:
    """``rows`` as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _hex(x: int | None) -> str:
    return "-" if x is None else f"{x:#x}"


def _cell(events: list[Event]) -> str:
    """The decisions one request caused, in a few words."""
    words = []
    for e in events:
        at = f" {e.returned:#x}" if e.returned is not None else ""
        flag = " LOWERS used" if e.after.arena_used < e.before.arena_used else ""
        words.append(f"{e.verdict}{at}{flag}")
    return "; ".join(words)


def _lost(o: Outcome) -> str:
    if not o.lost:
        return "none"
    return f"{len(o.lost)} of {sum(p is not None for p in o.returned)}: " + ", ".join(map(_hex, o.lost))


def side_by_side(outcomes: list[Outcome]) -> str:
    """The demo's table: a row per request and a column per rule."""
    cells = [[_cell(g) for g in per_request(o.events)] for o in outcomes]
    rows = [[""] + [o.rule for o in outcomes]]
    for i, n in enumerate(outcomes[0].requests):
        rows.append([f"sys_alloc({size_text(n)})"] + [c[i] if i < len(c) else "" for c in cells])
    rows.append(["arena_used after"] + [_hex(o.bounds.arena_used) for o in outcomes])
    rows.append(["arena_alloc after"] + [_hex(o.bounds.arena_alloc) for o in outcomes])
    rows.append(["arena_end after"] + [_hex(o.bounds.arena_end) for o in outcomes])
    rows.append(["allocations lost"] + [_lost(o) for o in outcomes])
    rows.append(["verify"] + [f"{len(o.violations)} violations" if o.violations else "sound" for o in outcomes])
    rows.append(["live bytes read back"] + ["intact" if o.intact else "CHANGED" for o in outcomes])
    return columns(rows)


def decisions(o: Outcome) -> str:
    """Every event of one run: what was asked, answered and decided, and how arena_used moved."""
    rows = [["#", "step", "request", "hint", "size", "returned", "verdict", "arena_used", "reason"]]
    for i, e in enumerate(o.events):
        used = _hex(e.after.arena_used)
        if e.after.arena_used != e.before.arena_used:
            used = f"{e.before.arena_used:#x} -> {used}"
        rows.append([
            str(i), e.step, size_text(e.request) if e.request else "-", _hex(e.hint), size_text(e.size),
            _hex(e.returned), e.verdict, used, e.reason,
        ])
    return columns(rows)
