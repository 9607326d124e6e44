"""A picture of the address space, as hand-written SVG.

One lane per run (rule): a strip of the kernel's answers given back (the low
mapping among them, where it was refused), a map row with the reservations held
and the allocations (those lost by the legacy rule marked, the low mapping
outlined where it was taken), then one row per decision with the arena_start /
arena_used / arena_alloc / arena_end markers (for Go 1.11's heap arenas: the
next hint and the pre-reservation's cursor): a bound's letter where it moves
to, a thin line while it stays. No two boxes of a row overlap, and axis labels
that would collide are left out (their extents estimated from the font size). Empty spans much larger than what is
mapped are drawn as fixed-width breaks marked "≈", and every other segment gets
a minimum width, so a 1 MiB allocation stays visible beside 4 GiB of space.

A long run stays a picture (a 100,000-step trace once made a 132 MB SVG
2.4 million pixels tall): a lane draws at most ``MAX_ROWS`` decisions (the
first, the last and the notable ones, with a row saying how many were left
out), and past ``MAX_SHAPES`` allocations or regions those that touch are
drawn as one.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from xml.sax.saxutils import escape

from ..harness.run import Outcome, arena_part
from ..managers import Bounds, HeapState
from ..managers.vocabulary import AnyEvent
from ..words import plural, size_text

# Decision rows per lane: the first HEAD_ROWS, the last TAIL_ROWS, and the notable ones between.
MAX_ROWS, HEAD_ROWS, TAIL_ROWS = 40, 10, 10
# Decisions that are just the arena working: a row of their own only among the first and last.
ROUTINE = frozenset({"committed", "contiguous", "honoured"})
# Shapes of one kind per lane before touching ones are merged into one shape.
MAX_SHAPES = 300
# Low mappings labelled in a lane's map row (each has a label above it).
MAX_LABELS = 10
# Points on the address axis: past this, only the edges of what is mapped, then a plain linear axis.
MAX_POINTS = 200
GAP_H = 16  # the height of a row saying how many decisions were left out
# What a merged shape of each class stands for, counted in its tip.
_NOUNS = {"allocation": "allocation", "allocation lost": "lost allocation", "region": "reservation",
          "fallback": "fallback mapping", "metadata": "metadata region", "heap": "heap region"}

WIDTH = 1200
LEFT = 250  # room for the decision labels
RIGHT = 70  # room for the last tick label and markers at the top end
BREAK = 26  # pixels for a compressed empty span
MIN_SEGMENT = 14  # pixels at least for any drawn segment
MAP_H = 30
STRIP_H = 12  # the strip of answers given back, above the map row
ROW_H = 24
# Text extents, estimated: a character at most CHAR_W ems wide (DejaVu Sans' digits), a line from
# ASCENT ems above its baseline to DESCENT below; two labels keep LABEL_GAP px apart.
CHAR_W, ASCENT, DESCENT, LABEL_GAP = 0.62, 0.8, 0.25, 3.0
SMALL = 9  # px, the .small class: axis ticks, labels
TICK_ANGLE = -60  # degrees: axis ticks rise to the right
LETTER_W = 7  # px between two letters a row draws at one address
MARKERS = (  # name, colour, letter, offset in a decision row
    ("arena_start", "#2e7d32", "S", 5),
    ("arena_used", "#c62828", "U", 10),
    ("arena_alloc", "#6a1b9a", "A", 15),
    ("arena_end", "#1565c0", "E", 20),
)
HEAP_MARKERS = (  # the same for HeapArenas' state
    ("hint", "#ef6c00", "H", 5),
    ("prereserved_next", "#6a1b9a", "P", 10),
)
RELEASED = ("rejected", "fallback-rejected", "missed")
STYLE = """
text { font-family: DejaVu Sans, Arial, sans-serif; font-size: 11px; fill: #222; }
.title { font-size: 16px; font-weight: bold; }
.small { font-size: 9px; fill: #555; }
.lane-title { font-size: 13px; font-weight: bold; }
.metadata { fill: #e0e0e0; stroke: #9e9e9e; }
.region { fill: #bbdefb; stroke: #1976d2; }
.fallback { fill: #ffe0b2; stroke: #ef6c00; }
.heap { fill: #c8e6c9; stroke: #2e7d32; }
.released { fill: none; stroke: #757575; stroke-dasharray: 4 3; }
.low-mapping { stroke: #ff6f00; stroke-width: 3; }
.low-mapping.released { fill: none; stroke-dasharray: 8 4; }
.allocation { fill: #43a047; stroke: #1b5e20; }
.allocation.lost { fill: url(#lost-hatch); stroke: #b71c1c; stroke-width: 2; }
.grid { stroke: #eeeeee; }
.gap-break { fill: #fafafa; stroke: #bdbdbd; stroke-dasharray: 2 2; }
.row-line { stroke: #e0e0e0; }
.lowered { stroke-width: 3; }
.same { stroke-width: 1.5; stroke-opacity: 0.45; }
"""


class Axis:
    """Addresses to x: piecewise linear over the interesting points, with empty spans compressed.

    ``occupied`` is sorted, disjoint spans (``merged``).
    """

    def __init__(self, points: set[int], occupied: list[tuple[int, int]], x0: float, width: float) -> None:
        if len(points) > MAX_POINTS:
            # Too many to give each a segment of its own: the edges of what is mapped, else just the ends.
            edges = {x for span in occupied for x in span}
            points = edges if len(edges) <= MAX_POINTS else {min(points), max(points)}
        self.points = sorted(points)
        pairs = list(zip(self.points, self.points[1:]))
        covered = sum(b - a for a, b in pairs if _inside(occupied, (a + b) // 2))
        # An empty span is compressed when it dwarfs what is mapped.
        self.threshold = max(covered // 8, 1)
        self.breaks = [not _inside(occupied, (a + b) // 2) and b - a > self.threshold for a, b in pairs]
        lengths = [b - a for (a, b), br in zip(pairs, self.breaks) if not br]
        fixed = BREAK * sum(self.breaks)
        scale = _solve(lengths, width - fixed)
        self.xs = [x0]
        for (a, b), br in zip(pairs, self.breaks):
            self.xs.append(self.xs[-1] + (BREAK if br else max(MIN_SEGMENT, (b - a) * scale)))
        self.scale = scale

    def x(self, addr: int) -> float:
        i = bisect.bisect_right(self.points, addr) - 1
        if i < 0:
            return self.xs[0]
        if i >= len(self.points) - 1:
            return self.xs[-1]
        a, b = self.points[i], self.points[i + 1]
        return self.xs[i] + (self.xs[i + 1] - self.xs[i]) * (addr - a) / (b - a)

    @property
    def right(self) -> float:
        return self.xs[-1]


def approx(n: int) -> str:
    """A byte count to a tenth of its largest unit: ``82.3 MiB``, ``1022 MiB``, ``2.1 GiB``."""
    for unit, name in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= unit:
            return f"{n / unit:.1f}".removesuffix(".0") + f" {name}"
    return plural(n, "byte")


def _inside(spans: list[tuple[int, int]], addr: int) -> bool:
    """Whether ``addr`` lies in one of ``spans``, sorted and disjoint."""
    i = bisect.bisect_right(spans, (addr, float("inf"))) - 1
    return i >= 0 and addr < spans[i][1]


def merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(start, end)`` spans sorted, with those that touch or overlap joined."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def text_corners(x: float, y: float, text: str, size: float, angle: float = 0.0) -> list[tuple[float, float]]:
    """The corners of ``text`` (font ``size`` px) whose baseline starts at ``(x, y)``, turned ``angle``
    degrees about that point as SVG's ``rotate`` turns it: an estimate a little larger than the glyphs."""
    w = len(text) * CHAR_W * size
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(x + u * c - v * s, y + u * s + v * c)
            for u, v in ((0, -ASCENT * size), (w, -ASCENT * size), (w, DESCENT * size), (0, DESCENT * size))]


def overlap(p: Sequence[tuple[float, float]], q: Sequence[tuple[float, float]], gap: float = 0.0) -> bool:
    """Whether the convex polygons ``p`` and ``q`` come closer than ``gap`` px (separating axes)."""
    for poly in (p, q):
        for (x1, y1), (x2, y2) in zip(poly, [*poly[1:], poly[0]]):
            nx, ny = y2 - y1, x1 - x2
            norm = math.hypot(nx, ny)
            if norm == 0:
                continue
            a = [(x * nx + y * ny) / norm for x, y in p]
            b = [(x * nx + y * ny) / norm for x, y in q]
            if max(a) + gap <= min(b) or max(b) + gap <= min(a):
                return False
    return True


def drawn_rows(events: Sequence[AnyEvent]) -> list[int | tuple[int, int]]:
    """The events a lane draws: an index each, and ``(first, last)`` for each stretch left out.

    Past ``MAX_ROWS``: the first and last ones, and between them the notable
    ones (arena_used lowered or a throw first, then anything not ``ROUTINE``).
    """
    n = len(events)
    if n <= MAX_ROWS:
        return list(range(n))
    keep = set(range(HEAD_ROWS)) | set(range(n - TAIL_ROWS, n))

    def rank(i: int) -> int:
        e = events[i]
        lowered = isinstance(e.after, Bounds) and isinstance(e.before, Bounds) and e.after.arena_used < e.before.arena_used
        return 0 if lowered or e.verdict == "throw" else 1

    notable = sorted((i for i in range(HEAD_ROWS, n - TAIL_ROWS) if events[i].verdict not in ROUTINE), key=rank)
    keep.update(notable[: MAX_ROWS - HEAD_ROWS - TAIL_ROWS])
    out: list[int | tuple[int, int]] = []
    last = -1
    for i in sorted(keep):
        if i > last + 1:
            out.append((last + 1, i - 1))
        out.append(i)
        last = i
    return out


def _solve(lengths: list[int], width: float) -> float:
    """The bytes-to-pixels scale at which the segments, each at least MIN_SEGMENT wide, fill ``width``."""
    lo, hi = 0.0, width / max(min(lengths, default=1), 1)
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(max(MIN_SEGMENT, n * mid) for n in lengths) > width:
            hi = mid
        else:
            lo = mid
    return lo


def _released(o: Outcome) -> list[tuple[int, int]]:
    return [(e.returned, e.returned + e.size) for e in o.events if e.verdict in RELEASED and e.returned is not None]


def _low(o: Outcome) -> list[tuple[int, int, str]]:
    """Growth answers below arena_end, the low mmap of Go issue 20259 (heap arenas: answers below
    their hint), with their verdicts."""
    return [
        (e.returned, e.returned + e.size, e.verdict)
        for e in o.events
        if e.returned is not None and e.returned != e.hint
        # (A grow is a linear arena's and a hint step has a hint: the isinstance and "is not None" say so to the type checker.)
        and (e.step == "grow" and isinstance(e.before, Bounds) and e.returned < e.before.arena_end
             or e.step == "hint" and e.hint is not None and e.returned < e.hint)
    ]


def _markers(state: Bounds | HeapState) -> list[tuple[str, str, str, int, int]]:
    """``(name, colour, letter, offset, address)`` of the bounds of ``state`` that are set."""
    table = HEAP_MARKERS if isinstance(state, HeapState) else MARKERS
    found = [(name, colour, letter, dy, getattr(state, name)) for name, colour, letter, dy in table]
    # Unset heap bounds (no hint, no pre-reservation) are not drawn.
    return [m for m in found if m[4] or table is MARKERS]


def _label(e: AnyEvent) -> str:
    what = f"{e.step} {size_text(e.request)}" if e.request else e.step
    at = f" {e.returned:#x}" if e.returned is not None else ""
    if e.verdict == "missed" and e.hint is not None:
        return f"{what}: asked at {e.hint:#x}, got{at}"
    return f"{what}: {e.verdict}{at}"


def _id(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def draw(outcomes: list[Outcome], title: str, note: str = "") -> str:
    """The SVG document for ``outcomes``, one lane each; as large for a long run as for a short one."""
    points: set[int] = set()
    occupied: list[tuple[int, int]] = []
    for o in outcomes:
        spans = [(r.start, r.end) for r in o.regions] + _released(o) + [(p, p + n) for p, n in o.allocations]
        occupied += spans
        points.update(x for span in spans for x in span)
        for i in drawn_rows(o.events):
            if isinstance(i, int):
                e = o.events[i]
                # Before the first reservation the bounds are unset zeros: not drawn.
                for b in ([e.after] if e.step == "first" else [e.before, e.after]):
                    points.update(m[4] for m in _markers(b))
    axis = Axis(points, merged(occupied), LEFT, WIDTH - LEFT - RIGHT)
    out: list[str] = []
    y = 30
    out.append(f'<text class="title" x="10" y="{y}">{escape(title)}</text>')
    for line in note.splitlines():
        y += 15
        out.append(f'<text x="10" y="{y}">{escape(line)}</text>')
    y += 18
    out.append(
        f'<text id="scale" class="small" x="10" y="{y}">Scale: not linear. Empty spans over '
        f"{approx(axis.threshold)} are drawn as \u2248 breaks of {BREAK} px (their size written in them); "
        f"other segments at {1 / axis.scale / 1024 if axis.scale else 0:,.0f} KiB per px, "
        f"but at least {MIN_SEGMENT} px wide.</text>"
    )
    # Room above the axis for its tallest tick label, and clear of the scale's line.
    rise = max((-min(cy for _, cy in text_corners(0, 0, f"{a:#x}", SMALL, TICK_ANGLE)) for a in axis.points), default=0)
    y += max(90, math.ceil(rise) + 16)
    top = y
    out += _ticks(axis, top)
    texts: list[list[tuple[float, float]]] = []  # the lanes' labels and letters, which a break's words keep clear of
    for o in outcomes:
        y = _lane(out, axis, o, y, texts)
    bottom = y
    # Breaks and grid lines run through every lane.
    grid = []
    for i, br in enumerate(axis.breaks):
        x0, x1 = axis.xs[i], axis.xs[i + 1]
        if br:
            gap = axis.points[i + 1] - axis.points[i]
            grid.append(f'<rect class="gap-break" x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" height="{bottom - top}"/>')
            grid.append(f'<text class="gap-break-label" x="{(x0 + x1) / 2:.1f}" y="{top + 14}" text-anchor="middle" '
                        'font-size="16">\u2248</text>')
            words, x = f"{approx(gap)} empty", (x0 + x1) / 2 + 3
            # Down the break from its top, lower where a lane's label or letter stands in the way.
            at = top + 22
            length = len(words) * CHAR_W * SMALL
            while at + length < bottom and any(overlap(text_corners(x, at, words, SMALL, 90), t, LABEL_GAP) for t in texts):
                at += ROW_H // 2
            grid.append(f'<text class="small gap-words" transform="translate({x:.1f},{at}) rotate(90)">{words}</text>')
    for x in axis.xs:
        grid.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
    y = _legend(out, bottom + 20)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y + 10}" '
        f'viewBox="0 0 {WIDTH} {y + 10}">\n<style>{STYLE}</style>\n'
        '<defs><pattern id="lost-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#ffcdd2"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c62828" stroke-width="3"/></pattern>'
        '<marker id="arrow" viewBox="0 0 6 6" refX="5" refY="3" markerWidth="5" markerHeight="5" orient="auto-start-reverse">'
        '<path d="M0,0 L6,3 L0,6 z" fill="context-stroke"/></marker></defs>\n'
        f'<rect width="{WIDTH}" height="{y + 10}" fill="white"/>\n'
    )
    return head + "\n".join(grid + out) + "\n</svg>\n"


def _ticks(axis: Axis, top: int) -> list[str]:
    """Hex addresses at the segment edges, rotated; one that would come within LABEL_GAP of the
    last one kept is left out (parallel labels further left are further away still)."""
    out: list[str] = []
    last: list[tuple[float, float]] = []
    for addr, x in zip(axis.points, axis.xs):
        text = f"{addr:#x}"
        box = text_corners(x + 3, top - 4, text, SMALL, TICK_ANGLE)
        if last and overlap(box, last, LABEL_GAP):
            continue
        last = box
        out.append(f'<text class="small tick" transform="translate({x + 3:.1f},{top - 4}) rotate({TICK_ANGLE})">'
                   f"{text}</text>")
    return out


def _rect(cls: str, x0: float, x1: float, y: float, h: float, ident: str = "", tip: str = "") -> str:
    ident = f' id="{ident}"' if ident else ""
    tip = f"<title>{escape(tip)}</title>" if tip else ""
    # Both ends rounded, not the width: boxes that touch still only touch.
    x0, x1 = round(x0, 1), round(x1, 1)
    return f'<rect class="{cls}"{ident} x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1):.1f}" height="{h}">{tip}</rect>'


def _shapes(spans: list[tuple[int, int, str, str]], axis: Axis) -> list[tuple[int, int, str, str]]:
    """``(start, end, class, tip)`` to draw: all of them, or past ``MAX_SHAPES`` those of a class that
    touch (or fall within a pixel of each other) as one, its tip saying how many it stands for."""
    if len(spans) <= MAX_SHAPES:
        return spans
    out: list[tuple[int, int, str, int]] = []  # (start, end, class, how many shapes it stands for)
    for a, b, cls, _ in sorted(spans, key=lambda s: (s[2], s[0])):
        if out and out[-1][2] == cls and axis.x(a) <= axis.x(out[-1][1]) + 1:
            start, end, _, n = out[-1]
            out[-1] = (start, max(end, b), cls, n + 1)
        else:
            out.append((a, b, cls, 1))
    # A region outlined as the low mapping ("region low-mapping") is counted as its region.
    return [(a, b, cls, f"{plural(n, _NOUNS.get(cls) or _NOUNS[cls.split()[0]])} in [{a:#x}, {b:#x})")
            for a, b, cls, n in out]


def _overlaps(a: int, b: int, spans: Iterable[tuple[int, int, str]]) -> bool:
    return any(x < b and a < y for x, y, _ in spans)


def _low_tip(a: int, b: int, verdict: str) -> str:
    what = "not at its hint" if verdict == "missed" else verdict
    return f"low mmap {a:#x}: {what}" + (", given back" if verdict in RELEASED else "") + f" [{a:#x}, {b:#x})"


def _strip(o: Outcome, held: list[tuple[int, int, str, str]], axis: Axis) -> list[tuple[int, int, str, str]]:
    """The strip's boxes: each answer given back, and a low mapping taken but no longer held; those
    whose boxes would overlap (the same answer given back twice, say) drawn as one."""
    lows = _low(o)
    items = [(a, b, v in RELEASED, (a, b, v) in lows, _low_tip(a, b, v) if (a, b, v) in lows
              else f"{v}, given back [{a:#x}, {b:#x})")
             for a, b, v in ((e.returned, e.returned + e.size, e.verdict) for e in o.events
                             if e.verdict in RELEASED and e.returned is not None)]
    items += [(a, b, False, True, _low_tip(a, b, v)) for a, b, v in lows
              if v not in RELEASED and not _overlaps(a, b, [(x, y, "") for x, y, _, _ in held])]
    groups: list[list[tuple[int, int, bool, bool, str]]] = []
    end = -math.inf
    # Past MAX_SHAPES, boxes within a pixel of each other are one too.
    near = 1.0 if len(items) > MAX_SHAPES else 0.0
    for item in sorted(items):
        x0, x1 = axis.x(item[0]), max(axis.x(item[1]), axis.x(item[0]) + 1)
        if groups and x0 < end + near:
            groups[-1].append(item)
        else:
            groups.append([item])
        end = max(end, x1) if len(groups[-1]) > 1 else x1
    out = []
    for group in groups:
        a, b = min(i[0] for i in group), max(i[1] for i in group)
        cls = " ".join(["released"] * any(i[2] for i in group) + ["low-mapping"] * any(i[3] for i in group))
        tips = [i[4] for i in group]
        tip = tips[0] if len(tips) == 1 else (f"{plural(len(tips), 'answer')} in [{a:#x}, {b:#x}): " + "; ".join(tips[:3])
                                              + ("; ..." if len(tips) > 3 else ""))
        out.append((a, b, cls, tip))
    return out


def _lane(out: list[str], axis: Axis, o: Outcome, y: int, texts: list[list[tuple[float, float]]]) -> int:
    """Draw one run's lane from ``y``; returns where the next begins. The extents of the labels and
    letters drawn are added to ``texts``."""
    rid = _id(o.rule)
    lost = set(o.lost)
    verdict = (f"{plural(len(o.violations), 'violation')}, {plural(len(lost), 'allocation')} lost" if o.violations
               else "no violation")
    out.append(f'<g class="lane" id="lane-{rid}">')
    out.append(f'<text class="lane-title" x="10" y="{y + 14}">{escape(o.rule)} ({escape(o.layout)}): {verdict}</text>')
    label_y, strip_y, y = y + 30, y + 34, y + 34 + STRIP_H + 6
    out.append(f'<text x="10" y="{y + 19}">address space</text>')
    base = arena_part(o.events)
    regions = []
    for r in o.regions:
        cls = {"fallback": "fallback", "metadata": "metadata", "heap": "heap"}.get(r.role, "region")
        tip = f"{r.role} [{r.start:#x}, {r.end:#x}) {size_text(r.size)}"
        if r.role == "first" and r.start < base:
            regions.append((r.start, base, "metadata", f"heap metadata [{r.start:#x}, {base:#x})"))
            if base < r.end:  # an arena of size 0 leaves the metadata alone: no box of no width
                regions.append((base, r.end, cls, tip))
        else:
            regions.append((r.start, r.end, cls, tip))
    # A low mapping taken and still held is its region, outlined; the rest goes to the strip.
    taken = [(a, b, v) for a, b, v in _low(o) if v not in RELEASED]
    regions = [(a, b, cls + " low-mapping", "; ".join([tip] + [_low_tip(*t) for t in taken if t[0] < b and a < t[1]]))
               if _overlaps(a, b, taken) else (a, b, cls, tip) for a, b, cls, tip in regions]
    strip = _strip(o, regions, axis)
    if strip:
        out.append(f'<text class="small" x="10" y="{strip_y + 9}">given back to the kernel</text>')
    lows = 0
    labels: list[list[tuple[float, float]]] = []  # the low mappings' labels drawn
    for row_y, h, shapes in ((strip_y, STRIP_H, strip), (y, MAP_H, _shapes(regions, axis))):
        for a, b, cls, tip in shapes:
            low = "low-mapping" in cls.split()
            out.append(_rect(cls, axis.x(a), axis.x(b), row_y, h, ident=f"low-{rid}-{lows}" if low else "", tip=tip))
            if not low:
                continue
            lows += 1
            text = tip.split("; ")[-1].rsplit(" [", 1)[0]  # the range is in the tip
            box = text_corners(axis.x(a) + 2, label_y, text, SMALL)
            # A label that would run into one already drawn is left to the tip.
            if len(labels) < MAX_LABELS and not any(overlap(box, other, LABEL_GAP) for other in labels):
                labels.append(box)
                texts.append(box)
                out.append(f'<text class="small low-label" x="{axis.x(a) + 2:.1f}" y="{label_y}">{escape(text)}</text>')
    allocations = [(p, p + n, "allocation lost" if p in lost else "allocation",
                    f"allocation [{p:#x}, {p + n:#x}) {size_text(n)}" + (" LOST: not heap any more" if p in lost else ""))
                   for p, n in o.allocations]
    for i, (a, b, cls, tip) in enumerate(_shapes(allocations, axis)):
        out.append(_rect(cls, axis.x(a), axis.x(b), y + 7, MAP_H - 14, ident=f"alloc-{rid}-{i}", tip=tip))
    y += MAP_H + 8
    shown: dict[str, int] = {}  # where each bound's letter was last drawn in this lane
    for row in drawn_rows(o.events):
        if not isinstance(row, int):
            first, last = row
            left = f"\u2026 {plural(last - first + 1, 'decision')} not drawn (#{first} to #{last}; arena replay lists every one)"
            out.append(f'<text class="small gap-rows" x="10" y="{y + 11}">{escape(left)}</text>')
            y += GAP_H
            continue
        i = row
        e = o.events[i]
        out.append(f'<line class="row-line" x1="{LEFT}" y1="{y + ROW_H:.1f}" x2="{axis.right:.1f}" y2="{y + ROW_H:.1f}"/>')
        out.append(f'<text x="10" y="{y + 16}">{escape(_label(e))}</text>')
        was = {} if e.step == "first" else {m[0]: m[4] for m in _markers(e.before)}
        letters: list[tuple[float, int]] = []  # (x, offset) of the letters this row draws
        for name, colour, letter, dy, after in _markers(e.after):
            before = was.get(name)
            # arena_alloc is arena_used except under go1.9; drawn only where they part.
            if name == "arena_alloc":
                assert isinstance(e.before, Bounds) and isinstance(e.after, Bounds)  # only a linear arena has it
                if after == e.after.arena_used and before in (None, e.before.arena_used):
                    shown.pop(name, None)
                    continue
            # A letter only where the bound is not where its letter last stood: a thin line says it stayed.
            x = None
            if shown.get(name) != after:
                shown[name] = after
                x = axis.x(after) + 2
                while any(abs(x - lx) < LETTER_W and abs(dy - ldy) < SMALL for lx, ldy in letters):
                    x += LETTER_W
                letters.append((x, dy))
                texts.append(text_corners(x, y + dy + 3.5, letter, SMALL))
            out.append(_marker(axis, name, colour, letter, y, dy, before, after, f"{rid}-{i}", x))
        y += ROW_H
    out.append("</g>")
    return y + 16


def _marker(axis: Axis, name: str, colour: str, letter: str, row: float, dy: int, before: int | None, after: int,
            ident: str, x: float | None) -> str:
    """Hollow circle where a bound was, an arrow to where it is (red and thick if arena_used fell), and
    its letter at ``x``; without ``x``, a thin line down the row where the bound stays."""
    xa, y = axis.x(after), row + dy
    parts = [f'<g class="marker {name}" id="{name}-{ident}">']
    if before is not None and before != after:
        xb = axis.x(before)
        lowered = name == "arena_used" and after < before
        cls = ' class="lowered"' if lowered else ""
        parts.append(f'<circle class="before" cx="{xb:.1f}" cy="{y}" r="2.5" fill="white" stroke="{colour}">'
                     f"<title>{name} before {before:#x}</title></circle>")
        parts.append(f'<line{cls} x1="{xb:.1f}" y1="{y}" x2="{xa:.1f}" y2="{y}" stroke="{colour}" marker-end="url(#arrow)"/>')
    if x is None:
        parts.append(f'<line class="same" x1="{xa:.1f}" y1="{row}" x2="{xa:.1f}" y2="{row + ROW_H}" stroke="{colour}">'
                     f"<title>{name} still {after:#x}</title></line>")
    else:
        parts.append(
            f'<text class="after" x="{x:.1f}" y="{y + 3.5}" font-size="9" font-weight="bold" fill="{colour}">{letter}'
            f"<title>{name} after {after:#x}</title></text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _legend(out: list[str], y: int) -> int:
    out.append(f'<g id="legend"><text class="lane-title" x="10" y="{y + 12}">Legend</text>')
    items = [
        ("metadata", "heap metadata (first reservation)"),
        ("region", "reservation (arena)"),
        ("heap", "heap arenas (Go 1.11)"),
        ("fallback", "fallback mapping"),
        ("released", "given back to the kernel"),
        ("region low-mapping", "low mmap: answer below the hint"),
        ("released low-mapping", "low mmap, given back"),
        ("allocation", "allocation (committed)"),
        ("allocation lost", "allocation lost: no longer heap"),
        ("gap-break", "\u2248 compressed empty span"),
    ]
    for i, (cls, text) in enumerate(items):
        x, yy = 10 + (i % 4) * 290, y + 24 + (i // 4) * 22
        out.append(_rect(cls, x, x + 26, yy, 14) + f'<text x="{x + 32}" y="{yy + 11}">{escape(text)}</text>')
    yy = y + 24 + (len(items) + 3) // 4 * 22
    x = 10
    for name, colour, letter, _ in MARKERS + HEAP_MARKERS:
        out.append(f'<text x="{x}" y="{yy + 11}" font-weight="bold" fill="{colour}">{letter}</text>'
                   f'<text x="{x + 12}" y="{yy + 11}">{name}</text>')
        x += 130
    x, yy = 10, yy + 22
    out.append(
        f'<text x="{x}" y="{yy + 11}">per decision: \u25cb where a bound was \u2192 its letter where it moved to; '
        "a thin line: it stayed; a thick red arrow: arena_used moved down</text></g>"
    )
    return yy + 24
