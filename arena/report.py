"""Tables for people: aligned columns and hex addresses."""
from __future__ import annotations

from .heaparenas import HeapState
from .manager import Bounds, Event
from .run import Outcome, per_request, size_text

# Heap arenas' steps a table leaves to the commit after them, which names the same address.
_TOLD_BY_COMMIT = {("hint", "honoured"), ("aligned", "reserved"), ("aligned", "trimmed")}


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
        if (e.step, e.verdict) in _TOLD_BY_COMMIT:
            continue
        at = f" {e.returned:#x}" if e.returned is not None else ""
        flag = " LOWERS used" if isinstance(e.after, Bounds) and e.after.arena_used < e.before.arena_used else ""
        words.append(f"{e.verdict}{at}{flag}")
    return "; ".join(words)


def _heap(state: Bounds | HeapState) -> str:
    if not isinstance(state, HeapState):
        return "-"
    hint = "no hint" if state.hint is None else f"next hint {state.hint:#x}" + (" down" if state.down else "")
    return f"{state.arenas}, {hint}"


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
    for name in ("arena_used", "arena_alloc", "arena_end"):
        rows.append([f"{name} after"] + [_hex(getattr(o.bounds, name, None)) for o in outcomes])
    if any(isinstance(o.bounds, HeapState) for o in outcomes):
        rows.append(["heap arenas after"] + [_heap(o.bounds) for o in outcomes])
    rows.append(["allocations lost"] + [_lost(o) for o in outcomes])
    rows.append(["verify"] + [f"{len(o.violations)} violations" if o.violations else "sound" for o in outcomes])
    rows.append(["live bytes read back"] + ["intact" if o.intact else "CHANGED" for o in outcomes])
    return columns(rows)


def decisions(o: Outcome) -> str:
    """Every event of one run: what was asked, answered and decided, and how arena_used moved."""
    heap = isinstance(o.bounds, HeapState)
    rows = [["#", "step", "request", "hint", "size", "returned", "verdict", "arenas, next hint" if heap else "arena_used", "reason"]]
    for i, e in enumerate(o.events):
        if heap:
            used = _heap(e.after)
        else:
            used = _hex(e.after.arena_used)
            if e.after.arena_used != e.before.arena_used:
                used = f"{e.before.arena_used:#x} -> {used}"
        rows.append([
            str(i), e.step, size_text(e.request) if e.request else "-", _hex(e.hint), size_text(e.size),
            _hex(e.returned), e.verdict, used, e.reason,
        ])
    return columns(rows)
