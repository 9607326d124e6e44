"""Tables for people: aligned columns and hex addresses, as narrow as the terminal allows."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence

from ..harness.run import Outcome
from ..managers import Bounds, HeapState
from ..managers.vocabulary import AnyEvent, per_request
from ..words import plural, size_text

# What the rows of the demo's table mean, for a reader who has not met Go issue 20259.
LEGEND = ("allocations lost: handed out, but no longer counted as heap (contains(p) is false).\n"
          "bytes intact: every allocation still reads back the bytes written into it.\n"
          "verify: the checks run after the last request (each allocation inside the heap and really mapped, no two "
          "overlapping, arena_used never moved down); no violation: the arena kept its bounds.")
# The words a cell may use that need a line of their own below the table, each said once where it appears.
_WORDS = {
    "DOWN": "moved arena_used DOWN: the heap is [arena_start, arena_used), so live allocations above the new "
            "arena_used stop counting as heap: the bug of Go issue 20259, which crashed Go 1.8 with "
            "\"heapBitsForSpan: base out of range\".",
    "fallback": "fallback: after refusing a region (or finding no room), the arena maps just the request, and a "
                "page, wherever the kernel likes, and raises arena_used to its end so that it counts as heap; Go 1.8 "
                "raises arena_end with it. On 32-bit arena_start is 0, so all of [0, arena_used) is heap: a fallback "
                "near the top of the address space makes arena_used jump up there and loses nothing.",
    "asked": "asked at H, got P: released: Go 1.11 keeps a reservation only where it asked for it (its hint H); "
             "the kernel put it at P instead, so it is given back and that hint is dropped.",
    "out-of-memory": "out-of-memory: no memory for the request (a 64-bit arena has no fallback to try): "
                     "sys_alloc returns nothing, Go's nil, and the heap stays as it was.",
}
# Characters a decision's reason needs beside the other columns; with less it gets a line of its own.
_REASON_ROOM = 40
# Heap arenas' steps a table leaves to the commit after them, which names the same address.
_TOLD_BY_COMMIT = {("hint", "honoured"), ("aligned", "reserved"), ("aligned", "trimmed")}


def _widths(rows: list[list[str]]) -> list[int]:
    """The width of each column: its widest line (a cell may have several)."""
    widths = []
    for i in range(max(map(len, rows))):
        lines = "\n".join(row[i] for row in rows if i < len(row)).split("\n")
        widths.append(max(map(len, lines)))
    return widths


def columns(rows: list[list[str]]) -> str:
    """``rows`` as left-aligned columns two spaces apart; a cell with line breaks spans as many lines."""
    widths = _widths(rows)
    out = []
    # Most rows are one line high, and a trace's table has tens of thousands: they take the short way.
    for row in rows:
        if "\n" not in "".join(row):
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            continue
        cells = [c.split("\n") for c in row]
        for k in range(max(map(len, cells))):
            out.append("  ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(out)


def columns_width(rows: list[list[str]]) -> int:
    """``width_of(columns(rows))`` or a little more, without laying the table out."""
    widths = _widths(rows)
    return sum(widths) + 2 * (len(widths) - 1)


def elide(text: str, room: int) -> str:
    """``text`` in at most ``room`` characters: a path keeps its start and (more of) its end around "..."."""
    if len(text) <= room:
        return text
    head = max(room - 3, 0) // 3
    return text[:head] + "..." + text[len(text) - (max(room - 3, 0) - head):] if room > 3 else text[:room]


def _wrap(text: str, room: int) -> str:
    """Prose in lines of at most ``room``: a list ("a; b") breaks after its semicolons first."""
    out = []
    for line in text.split("\n"):
        parts = line.split("; ") if len(line) > room else [line]
        for k, part in enumerate(parts):
            part += ";" if k < len(parts) - 1 else ""
            out.append(_fill(part, room) if len(part) > room else part)
    return "\n".join(out)


def _squeeze(rows: list[list[str]], room: dict[int, int], prose: Sequence[int]) -> list[list[str]]:
    """Each cell of the columns in ``room`` made to fit it: prose wrapped, anything else (a path) elided."""
    return [[(_wrap(c, room[i]) if i in prose else elide(c, room[i])) if i in room else c for i, c in enumerate(row)]
            for row in rows]


def _shares(natural: list[int], room: int) -> list[int]:
    """The widths that share ``room`` among columns this wide: the narrow keep theirs, the wide split the rest."""
    left, cap = room, room
    for k, n in enumerate(sorted(natural)):
        cap = left // (len(natural) - k)
        if n > cap:
            break
        left -= n
    return [min(n, cap) for n in natural]


# The indent of a cell moved to a line of its own under its row.
_UNDER = "   "


def fit(rows: list[list[str]], width: int | None, *, prose: Sequence[int] = (), paths: Sequence[int] = (),
        least: int = 20) -> str:
    """``columns(rows)`` (``rows[0]`` the headings) in lines of at most ``width`` where it can be.

    Too wide, the ``prose`` columns wrap and the ``paths`` columns lose their
    middle to "..."; with less than ``least`` characters each, those cells go
    on lines of their own under their row; where even the other columns do
    not fit, each row is a record: its first cell, then "heading value" pairs
    filled line by line. No other cell (a number, an address) is ever cut.
    """
    if width is None or columns_width(rows) <= width:
        return columns(rows)
    flexible = [i for i in range(len(rows[0])) if i in prose or i in paths]
    fixed = [[c for i, c in enumerate(row) if i not in flexible] for row in rows]
    natural = [w for i, w in enumerate(_widths(rows)) if i in flexible]
    room = width - columns_width(fixed) - 2 * len(flexible)
    shares = _shares(natural, room)
    if flexible and all(s >= min(n, least) for s, n in zip(shares, natural)):
        return columns(_squeeze(rows, dict(zip(flexible, shares)), prose))
    under = width - len(_UNDER)
    # Each moved cell is squeezed on its own line; rows[0]'s cells are the headings of those lines.
    moved = _squeeze([[row[i] for i in flexible] for row in rows], dict.fromkeys(range(len(flexible)), under),
                     [k for k, i in enumerate(flexible) if i in prose])
    if columns_width(fixed) <= width:
        lines = columns(fixed).split("\n")
        out = [lines[0], _UNDER + "  ".join(rows[0][i] for i in flexible)]
        for line, cells in zip(lines[1:], moved[1:]):
            out += [line] + [_UNDER + part for c in cells if c for part in c.split("\n")]
        return "\n".join(out)
    out = []
    for row, cells in zip(fixed[1:], moved[1:]):
        line = row[0].replace("\n", " ")
        for heading, c in zip(fixed[0][1:], row[1:]):
            pair = f"{heading.replace(chr(10), ' ')} {c.replace(chr(10), ' ')}"
            if len(line) + 2 + len(pair) <= width:
                line += "  " + pair
            else:
                out.append(line)
                line = _UNDER + pair
        out += [line] + [_UNDER + part for c in cells if c for part in c.split("\n")]
    return "\n".join(out)


def within(text: str, width: int) -> str:
    """Each line of ``text`` longer than ``width`` wrapped, continued two further in than its own indent."""
    out = []
    for line in text.split("\n"):
        indent = line[:len(line) - len(line.lstrip(" "))]
        out.append(line if len(line) <= width else textwrap.fill(
            line, width, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False))
    return "\n".join(out)


def width_of(text: str) -> int:
    """The widest line of ``text``."""
    return max(map(len, text.splitlines()), default=0)


def _hex(x: int | None) -> str:
    return "-" if x is None else f"{x:#x}"


def _cell(events: Sequence[AnyEvent]) -> str:
    """The decisions one request caused, in a few words."""
    words = []
    for e in events:
        if (e.step, e.verdict) in _TOLD_BY_COMMIT:
            continue
        at = f" {e.returned:#x}" if e.returned is not None else ""
        if e.verdict == "missed" and e.hint is not None:
            words.append(f"asked at {e.hint:#x}, got{at}: released")
            continue
        lowers = isinstance(e.after, Bounds) and isinstance(e.before, Bounds) and e.after.arena_used < e.before.arena_used
        flag = ", moved arena_used DOWN" if lowers else ""
        words.append(f"{e.verdict}{at}{flag}")
    return "; ".join(words)


def legend(outcomes: list[Outcome]) -> str:
    """What ``side_by_side(outcomes)`` means, a line each: ``LEGEND``, then each word its cells use
    that a reader who has not met Go's heap would not know."""
    cells = " ".join(_cell(g) for o in outcomes for g in per_request(o.events))
    return "\n".join([LEGEND] + [text for word, text in _WORDS.items() if word in cells])


def _heap(state: Bounds | HeapState) -> str:
    if not isinstance(state, HeapState):
        return "-"
    hint = "no hint" if state.hint is None else f"next hint {state.hint:#x}" + (" down" if state.down else "")
    return f"{state.arenas}, {hint}"


def _lost(o: Outcome) -> str:
    # The addresses are in verify's findings, printed below the table.
    return f"{len(o.lost)} of {sum(p is not None for p in o.returned)}" if o.lost else "none"


def _table(outcomes: list[Outcome], wrap: bool) -> str:
    """A row per request and a column per rule; with ``wrap``, a cell's decisions one per line."""
    return columns(_rows(outcomes, wrap))


def _rows(outcomes: list[Outcome], wrap: bool) -> list[list[str]]:
    """``_table``'s cells."""
    cells = [[_cell(g) for g in per_request(o.events)] for o in outcomes]
    rows = [[""] + [o.rule for o in outcomes]]
    for i, n in enumerate(outcomes[0].requests):
        rows.append([f"sys_alloc({size_text(n)})"] + [c[i] if i < len(c) else "" for c in cells])
    if any(isinstance(o.bounds, Bounds) for o in outcomes):
        for name in ("arena_used", "arena_alloc", "arena_end"):
            rows.append([f"{name} after"] + [_hex(getattr(o.bounds, name, None)) for o in outcomes])
    if any(isinstance(o.bounds, HeapState) for o in outcomes):
        rows.append(["heap arenas after"] + [_heap(o.bounds) for o in outcomes])
    rows.append(["allocations lost"] + [_lost(o) for o in outcomes])
    rows.append(["verify"] + [plural(len(o.violations), "violation") if o.violations else "no violation"
                                for o in outcomes])
    rows.append(["bytes intact"] + ["yes" if o.intact else "NO" for o in outcomes])
    if wrap:
        rows = [[c.replace("; ", ";\n") for c in row] for row in rows]
    return rows


def side_by_side(outcomes: list[Outcome], width: int | None = None) -> str:
    """The demo's table, a column per rule, no wider than ``width`` characters where it can be.

    Too wide, a cell's decisions go one per line; still too wide, the rules
    are stacked in groups that fit, each a table of its own.
    """
    text = _table(outcomes, wrap=False)
    if width is None or width_of(text) <= width:
        return text
    groups: list[list[Outcome]] = [[]]
    for o in outcomes:
        if groups[-1] and width_of(_table(groups[-1] + [o], wrap=True)) > width:
            groups.append([])
        groups[-1].append(o)
    # A rule alone still too wide (a long decision, a narrow terminal): its decisions wrap within the width.
    return "\n\n".join(fit(rows, width, prose=range(1, len(rows[0])))
                       for rows in (_rows(group, wrap=True) for group in groups))


def _fill(text: str, room: int, indent: str = "") -> str:
    """``textwrap.fill(text, room)``, each line indented by ``indent``; a plain line that fits is
    already that (textwrap costs as much as the rest of a table)."""
    if text and len(indent) + len(text) <= room and text.isprintable() and text == text.strip():
        return indent + text
    return textwrap.fill(text, room, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)


def decisions(o: Outcome, width: int | None = None) -> str:
    """Every event of one run: what was asked, answered and decided, and how arena_used moved.

    Wider than ``width``, the reasons (the last column) wrap onto more lines;
    with less than ``_REASON_ROOM`` characters left for them, each goes on a
    line of its own under its decision (``fit``).
    """
    heap = isinstance(o.bounds, HeapState)
    rows = [["#", "step", "request", "hint", "size", "returned", "verdict", "arenas, next hint" if heap else "arena_used",
             "reason"]]
    for i, e in enumerate(o.events):
        if heap:
            used = _heap(e.after)
        else:
            before, after = e.before, e.after
            assert isinstance(before, Bounds) and isinstance(after, Bounds)  # a linear arena's events
            used = _hex(after.arena_used)
            if after.arena_used != before.arena_used:
                used = f"{before.arena_used:#x} -> {used}"
        rows.append([
            str(i), e.step, size_text(e.request) if e.request else "-", _hex(e.hint), size_text(e.size),
            _hex(e.returned), e.verdict, used, e.reason,
        ])
    return fit(rows, width, prose=[len(rows[0]) - 1], least=_REASON_ROOM)
