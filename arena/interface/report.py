"""Tables for people: aligned columns and hex addresses, as narrow as the terminal allows."""
from __future__ import annotations

import itertools
import textwrap
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from ..harness.run import Outcome
from ..managers import Bounds, HeapState
from ..managers.vocabulary import AnyEvent, after_first, per_request
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


# A table read column by column: a sequence per column, each as long as the table has rows.
_Table: TypeAlias = Sequence[Sequence[str]]


def _lines(column: Iterable[str]) -> list[str]:
    """Every line of every cell of ``column``: a cell with line breaks has several."""
    return "\n".join(column).split("\n")


def _widths(table: _Table) -> list[int]:
    """The width of each column: its widest line (a cell may have several).

    A column is read once, as one string: a trace's table has a row per
    event, tens of thousands, and is measured before it is laid out.
    """
    return [max(map(len, _lines(column))) for column in table]


def _columns_of(rows: Sequence[Sequence[str]]) -> _Table:
    """``rows`` read column by column; the cells a short row lacks are empty."""
    return list(itertools.zip_longest(*rows, fillvalue=""))


def _rows(table: _Table, height: int) -> Iterable[Sequence[str]]:
    """The ``height`` rows of the columns ``table`` (without a column, rows of no cell)."""
    return zip(*table) if table else itertools.repeat((), height)


def _span(widths: Sequence[int]) -> int:
    """How wide columns this wide are, two spaces apart."""
    return sum(widths) + 2 * (len(widths) - 1)


def columns(rows: list[list[str]]) -> str:
    """``rows`` as left-aligned columns two spaces apart; a cell with line breaks spans as many lines."""
    return _laid_out(rows, _widths(_columns_of(rows)))


def _laid_out(rows: Iterable[Sequence[str]], widths: list[int]) -> str:
    """``columns(rows)``, its columns this wide."""
    # Each cell padded to its column's width, a row in one call: a trace's table has tens of thousands.
    padded = "  ".join(f"%-{w}s" for w in widths)
    out = []
    for row in rows:
        # A short row's missing cells are empty: blanks, which the end of the line loses.
        cells = tuple(row) + ("",) * (len(widths) - len(row))
        line = padded % cells
        if "\n" not in line:
            out.append(line.rstrip())
            continue
        for parts in itertools.zip_longest(*(c.split("\n") for c in cells), fillvalue=""):
            out.append((padded % parts).rstrip())
    return "\n".join(out)


# The line breaks width_of (str.splitlines) counts besides "\n", at which columns does not break a cell.
_OTHER_BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _extent(table: _Table) -> int:
    """``width_of(columns(rows))``, ``table`` the columns of ``rows``, without laying the table out.

    A line pads its cells to their columns' widths and loses the blanks at
    its end: the widest ends in the last column with more than blanks, at
    that column's start plus its longest line without its trailing blanks.
    """
    start = extent = 0
    for column in table:
        text = "\n".join(column)
        if any(b in text for b in _OTHER_BREAKS):
            # width_of starts a line there, in the middle of a row: only the laid out text says how wide.
            return width_of(_laid_out(zip(*table), _widths(table)))
        lines = text.split("\n")
        reach = max(map(len, map(str.rstrip, lines)))
        extent = start + reach if reach else extent
        start += max(map(len, lines)) + 2
    return extent


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


def _squeezed(column: Sequence[str], room: int, prose: bool) -> list[str]:
    """Each cell of ``column`` made to fit ``room``: prose wrapped, anything else (a path) elided."""
    # Each text is squeezed once: a trace's reasons are a few sentences, said thousands of times.
    fitted = {c: _wrap(c, room) if prose else elide(c, room) for c in set(column)}
    return [fitted[c] for c in column]


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
    """``columns(rows)`` (``rows[0]`` the headings, and every row as long) in lines of at most ``width`` where it can be.

    Too wide, the ``prose`` columns wrap and the ``paths`` columns lose their
    middle to "..."; with less than ``least`` characters each, those cells go
    on lines of their own under their row; where even the other columns do
    not fit, each row is a record: its first cell, then "heading value" pairs
    filled line by line. No other cell (a number, an address) is ever cut.
    """
    return _fit(_columns_of(rows), len(rows), width, prose=prose, paths=paths, least=least)


def _fit(table: _Table, height: int, width: int | None, *, prose: Sequence[int] = (), paths: Sequence[int] = (),
         least: int = 20) -> str:
    """``fit`` of the ``height`` rows whose columns ``table`` holds."""
    widths = _widths(table)
    if width is None or _span(widths) <= width:
        return _laid_out(_rows(table, height), widths)
    flexible = [i for i in range(len(table)) if i in prose or i in paths]
    natural = [widths[i] for i in flexible]
    # The other columns keep their cells, and so the widths measured above.
    kept = [i for i in range(len(table)) if i not in flexible]
    fixed, fixed_widths = [table[i] for i in kept], [widths[i] for i in kept]
    shares = _shares(natural, width - _span(fixed_widths) - 2 * len(flexible))
    if flexible and all(s >= min(n, least) for s, n in zip(shares, natural)):
        squeezed = list(table)
        for i, share in zip(flexible, shares):
            squeezed[i] = _squeezed(table[i], share, i in prose)
        return _laid_out(_rows(squeezed, height), _widths(squeezed))
    # Each moved cell is squeezed on its own line; the first row's cells are the headings of those lines.
    moved = [_squeezed(table[i], width - len(_UNDER), i in prose) for i in flexible]
    if _span(fixed_widths) <= width:
        return _under(_laid_out(_rows(fixed, height), fixed_widths), [table[i][0] for i in flexible], moved)
    return _records(fixed, moved, height, width)


def _under(text: str, headings: list[str], moved: _Table) -> str:
    """``fit``'s table ``text`` of the cells never cut, each row's ``moved`` cells (columns) on lines of their own under it."""
    lines = text.split("\n")
    out = [lines[0], _UNDER + "  ".join(headings)]
    for line, cells in zip(lines[1:], itertools.islice(zip(*moved), 1, None)):
        out += [line] + [_UNDER + part for c in cells if c for part in c.split("\n")]
    return "\n".join(out)


def _records(fixed: _Table, moved: _Table, height: int, width: int) -> str:
    """``fit``'s ``height`` rows as records: the first cell, then "heading value" pairs filled line by line,
    then the moved cells (``fixed`` and ``moved`` are columns)."""
    # A line break in a cell is a space in a record: replaced only in the columns that have one.
    fixed = [[c.replace("\n", " ") for c in column] if "\n" in "".join(column) else column for column in fixed]
    headings = [column[0] + " " for column in fixed[1:]]
    # Where a record's lines break depends on the lengths of its cells alone: each layout is
    # worked out once, as a format, for the thousands of rows that share it.
    formats: dict[tuple[int, ...], str] = {}
    out = []
    for row, cells in itertools.islice(zip(_rows(fixed, height), _rows(moved, height)), 1, None):
        lengths = tuple(map(len, row))
        layout = formats.get(lengths) or formats.setdefault(lengths, _record_format(headings, lengths, width))
        out.append(layout.format(*row))
        out += [_UNDER + c.replace("\n", "\n" + _UNDER) for c in cells if c]
    return "\n".join(out)


def _record_format(headings: list[str], lengths: tuple[int, ...], width: int) -> str:
    """The format of a record whose cells are this long: its first cell, then each heading and
    value on the line so far if it fits in ``width``, else on a line of its own."""
    parts, used = ["{}"], lengths[0]
    for heading, n in zip(headings, lengths[1:]):
        pair = len(heading) + n
        shown = heading.replace("{", "{{").replace("}", "}}") + "{}"
        if used + 2 + pair <= width:
            parts.append("  " + shown)
            used += 2 + pair
        else:
            parts.append("\n" + _UNDER + shown)
            used = len(_UNDER) + pair
    return "".join(parts)


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
    return "; ".join(_decisions(events))


def _decisions(events: Sequence[AnyEvent]) -> list[str]:
    """Each of ``events`` a table shows, in a few words."""
    words = []
    for e in events:
        verdict, returned = e.verdict, e.returned
        if (e.step, verdict) in _TOLD_BY_COMMIT:
            continue
        at = "" if returned is None else f" {returned:#x}"
        if verdict == "missed" and e.hint is not None:
            words.append(f"asked at {e.hint:#x}, got{at}: released")
            continue
        before, after = e.before, e.after
        lowers = isinstance(after, Bounds) and isinstance(before, Bounds) and after.arena_used < before.arena_used
        words.append(f"{verdict}{at}, moved arena_used DOWN" if lowers else f"{verdict}{at}")
    return words


def legend(outcomes: list[Outcome]) -> str:
    """What ``side_by_side(outcomes)`` means, a line each: ``LEGEND``, then each word its cells use
    that a reader who has not met Go's heap would not know."""
    # The cells' decisions, not grouped into cells (per_request): no word has a space, so none
    # spans two decisions.
    said = " ".join(w for o in outcomes for w in _decisions(after_first(o.events)))
    return "\n".join([LEGEND] + [text for word, text in _WORDS.items() if word in said])


def _heap(state: Bounds | HeapState) -> str:
    if not isinstance(state, HeapState):
        return "-"
    hint = "no hint" if state.hint is None else f"next hint {state.hint:#x}" + (" down" if state.down else "")
    return f"{state.arenas}, {hint}"


def _lost(o: Outcome) -> str:
    # The addresses are in verify's findings, printed below the table.
    return f"{len(o.lost)} of {sum(p is not None for p in o.returned)}" if o.lost else "none"


def _ends(outcomes: list[Outcome]) -> list[list[str]]:
    """The rows below the requests: how each run ended, a row's name and then a cell per rule."""
    rows = []
    if any(isinstance(o.bounds, Bounds) for o in outcomes):
        for name in ("arena_used", "arena_alloc", "arena_end"):
            rows.append([f"{name} after"] + [_hex(getattr(o.bounds, name, None)) for o in outcomes])
    if any(isinstance(o.bounds, HeapState) for o in outcomes):
        rows.append(["heap arenas after"] + [_heap(o.bounds) for o in outcomes])
    rows.append(["allocations lost"] + [_lost(o) for o in outcomes])
    rows.append(["verify"] + [plural(len(o.violations), "violation") if o.violations else "no violation"
                                for o in outcomes])
    rows.append(["bytes intact"] + ["yes" if o.intact else "NO" for o in outcomes])
    return rows


def _table(outcomes: list[Outcome], decided: list[list[str]], wrap: bool) -> list[list[str]]:
    """``side_by_side``'s table of ``outcomes`` as columns: the rows' names, then a column per rule.

    A row per request of the first, then the runs' ends (``_ends``). ``decided``
    holds each rule's cells (``_cell``), already a decision per line with
    ``wrap``, which breaks the other cells after "; " too.
    """
    requests, ends = outcomes[0].requests, _ends(outcomes)
    n = len(requests)
    # Each size is named once: a trace asks for a few sizes, thousands of times. A name, in
    # size_text's words, has no "; " to break.
    names = {r: f"sys_alloc({size_text(r)})" for r in set(requests)}
    table = [[""] + [names[r] for r in requests] + [row[0] for row in ends]]
    for k, (o, cells) in enumerate(zip(outcomes, decided)):
        own = [o.rule] + [row[k + 1] for row in ends]
        own = [c.replace("; ", ";\n") for c in own] if wrap else own
        table.append(own[:1] + cells[:n] + [""] * (n - len(cells)) + own[1:])
    return table


def side_by_side(outcomes: list[Outcome], width: int | None = None) -> str:
    """The demo's table, a column per rule, no wider than ``width`` characters where it can be.

    Too wide, a cell's decisions go one per line; still too wide, the rules
    are stacked in groups that fit, each a table of its own.
    """
    # Each rule's cells are made once, and each table tried is measured without being laid out:
    # a trace's table has a row per request, tens of thousands.
    decided = [[_cell(g) for g in per_request(o.events)] for o in outcomes]
    table = _table(outcomes, decided, wrap=False)
    if width is None or _extent(table) <= width:
        return _laid_out(zip(*table), _widths(table))
    decided = [[c.replace("; ", ";\n") for c in cells] for cells in decided]
    groups: list[list[int]] = [[]]
    for k in range(len(outcomes)):
        tried = groups[-1] + [k]
        if groups[-1] and _extent(_table([outcomes[i] for i in tried], [decided[i] for i in tried], wrap=True)) > width:
            groups.append([])
        groups[-1].append(k)
    # A rule alone still too wide (a long decision, a narrow terminal): its decisions wrap within the width.
    tables = (_table([outcomes[i] for i in group], [decided[i] for i in group], wrap=True) for group in groups)
    return "\n\n".join(_fit(table, len(table[0]), width, prose=range(1, len(table))) for table in tables)


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
    events = o.events
    heap = isinstance(o.bounds, HeapState)
    # Each size is worded once: a trace asks for a few sizes, thousands of times.
    sizes = {n: size_text(n) for n in {e.size for e in events} | {e.request for e in events}}
    # Column by column: a trace's run has tens of thousands of events, and a row each.
    table = [
        ["#"] + [str(i) for i in range(len(events))],
        ["step"] + [e.step for e in events],
        ["request"] + [sizes[e.request] if e.request else "-" for e in events],
        ["hint"] + [_hex(e.hint) for e in events],
        ["size"] + [sizes[e.size] for e in events],
        ["returned"] + [_hex(e.returned) for e in events],
        ["verdict"] + [e.verdict for e in events],
        ["arenas, next hint"] + [_heap(e.after) for e in events] if heap else ["arena_used"] + [_used(e) for e in events],
        ["reason"] + [e.reason for e in events],
    ]
    return _fit(table, len(events) + 1, width, prose=[len(table) - 1], least=_REASON_ROOM)


def _used(e: AnyEvent) -> str:
    """arena_used after a linear arena's event, and before it where the event moved it."""
    before, after = e.before, e.after
    assert isinstance(before, Bounds) and isinstance(after, Bounds)  # a linear arena's events
    used = _hex(after.arena_used)
    return used if after.arena_used == before.arena_used else f"{before.arena_used:#x} -> {used}"
