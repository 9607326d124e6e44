"""The picture's own geometry, read back from the SVG: no two axis labels overlap, no two boxes of a
lane overlap (an allocation sits inside its reservation), and a bound's letter is drawn only where
the bound moved, for every rule on both layouts and for drawn scenarios.

Text extents are estimated here independently of arena/interface/svg.py: a character 0.6 of the
font size wide, the line from 0.75 of it above the baseline to 0.2 below, turned as the SVG turns it.
"""
import math
import re
import types
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings

import arena
from arena.harness import hunt
from arena.harness.run import observe
from arena.interface import demo, svg
from arena.managers import NAMES
from budget import budget

NS = "{http://www.w3.org/2000/svg}"
FONT = {"small": 9, "lane-title": 13, "title": 16}  # px by class; 11 otherwise (STYLE)
EPS = 0.05  # px: boxes that only touch do not overlap
CLEAR = 2  # px at least between two labels, to be read apart


def font(e):
    if e.get("font-size"):
        return float(e.get("font-size"))
    return next((FONT[c] for c in e.get("class", "").split() if c in FONT), 11.0)


def corners(e):
    """A text element's estimated box, as four corners on the page."""
    text = "".join(e.itertext()) if e.find(f"{NS}title") is None else (e.text or "")
    size = font(e)
    w = len(text) * 0.6 * size
    x, y, angle = float(e.get("x", 0)), float(e.get("y", 0)), 0.0
    m = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\) rotate\(([-\d.]+)\)", e.get("transform", ""))
    if m:
        x, y, angle = (float(v) for v in m.groups())
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(x + u * c - v * s, y + u * s + v * c) for u, v in ((0, -0.75 * size), (w, -0.75 * size), (w, 0.2 * size),
                                                                (0, 0.2 * size))]


def separated(p, q, clear=CLEAR):
    """Whether two convex polygons are at least ``clear`` px apart (the separating axis theorem)."""
    for poly in (p, q):
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
            n = math.hypot(y2 - y1, x1 - x2)
            a = [(x * (y2 - y1) + y * (x1 - x2)) / n for x, y in p]
            b = [(x * (y2 - y1) + y * (x1 - x2)) / n for x, y in q]
            if max(a) + clear <= min(b) or max(b) + clear <= min(a):
                return True
    return False


def assert_texts_apart(texts, what):
    boxes = [(("".join(t.itertext())), corners(t)) for t in texts]
    for i, (a, p) in enumerate(boxes):
        for b, q in boxes[i + 1:]:
            assert separated(p, q), f"{what}: {a!r} and {b!r} overlap"


def box(r):
    x, y = float(r.get("x")), float(r.get("y"))
    return x, y, x + float(r.get("width")), y + float(r.get("height"))


def apart(a, b):
    return min(a[2], b[2]) - max(a[0], b[0]) <= EPS or min(a[3], b[3]) - max(a[1], b[1]) <= EPS


def covered(lo, hi, spans):
    """Whether ``spans`` (x ranges) cover ``[lo, hi]`` without a gap."""
    for a, b in sorted(spans):
        if a > lo + EPS:
            return False
        lo = max(lo, b)
    return lo >= hi - EPS


def assert_boxes_apart(lane, allocations_may_overlap=False):
    """No two boxes of ``lane`` overlap, but an allocation lies inside the reservations it was made
    in (contiguous growth makes touching ones: an allocation may span several)."""
    rects = [("allocation" in r.get("class").split(), box(r), r.findtext(f"{NS}title")) for r in lane.iter(f"{NS}rect")]
    for i, (alloc_a, a, ta) in enumerate(rects):
        for alloc_b, b, tb in rects[i + 1:]:
            if apart(a, b) or alloc_a != alloc_b:
                continue
            assert alloc_a and allocations_may_overlap, f"{lane.get('id')}: {ta} and {tb} overlap"
    for alloc, a, ta in rects:
        if not alloc:
            continue
        around = [b for is_alloc, b, _ in rects if not is_alloc and not apart(a, b)]
        assert all(b[1] - EPS <= a[1] and a[3] <= b[3] + EPS for b in around), f"{ta} overlaps a box of another row"
        assert covered(a[0], a[2], [(b[0], b[2]) for b in around]), f"{ta} sticks out of its reservations"


def assert_letters_only_where_moved(lane):
    """Each bound's letter stands where it moved to; while it stays, a thin line, no letter."""
    last = {}
    for g in lane.iter(f"{NS}g"):
        name = g.get("class", "").removeprefix("marker ")
        letters = [t for t in g.iter(f"{NS}text") if "after" in t.get("class", "")]
        same = [line for line in g.iter(f"{NS}line") if line.get("class") == "same"]
        if not g.get("class", "").startswith("marker "):
            continue
        assert len(letters) + len(same) == 1, g.get("id")
        if letters:
            where = letters[0].findtext(f"{NS}title").split()[-1]
            assert last.get(name) != where, f"{g.get('id')}: {name}'s letter again at {where}"
            last[name] = where


def check(text, allocations_may_overlap=False):
    root = ET.fromstring(text)
    lanes = root.findall(f"{NS}g[@class='lane']")
    ticks = [t for t in root.iter(f"{NS}text") if "tick" in t.get("class", "").split()]
    assert ticks
    # The axis labels, and the lines above them: the title, the note and the scale.
    head = [t for t in root.findall(f"{NS}text") if "tick" not in t.get("class", "").split()
            and float(t.get("y", 0)) < min(float(t.get("transform").split(",")[1].split(")")[0]) for t in ticks)]
    assert_texts_apart(ticks + head, "axis")
    for lane in lanes:
        assert_boxes_apart(lane, allocations_may_overlap)
        assert_texts_apart([t for t in lane.iter(f"{NS}text") if "low-label" in t.get("class", "")], lane.get("id"))
        assert_letters_only_where_moved(lane)
    # The words in a compressed span's break keep clear of the lanes' labels and letters.
    words = [t for t in root.iter(f"{NS}text") if "gap-words" in t.get("class", "")]
    marks = [t for t in root.iter(f"{NS}text") if {"low-label", "after"} & set(t.get("class", "").split())]
    for w in words:
        for m in marks:
            assert separated(corners(w), corners(m), 0), f"{''.join(w.itertext())!r} runs into {''.join(m.itertext())!r}"
    legend = root.find(f".//{NS}g[@id='legend']")
    assert_texts_apart([t for t in legend.iter(f"{NS}text") if len("".join(t.itertext())) > 1], "legend")
    return root


def outcomes(layout, rules=NAMES):
    found = []
    for rule in rules:
        r = demo.replay_20259(rule, layout)
        with r.arena:
            found.append(observe(r))
    return found


LAYOUTS = [arena.LAYOUT_32, pytest.param(arena.LAYOUT_64, marks=pytest.mark.needs_64_bit)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_demo_picture_every_rule_together(layout):
    root = check(svg.draw(outcomes(layout), "Go issue 20259", demo.explain(layout)[0]))
    assert len(root.findall(f"{NS}g[@class='lane']")) == len(NAMES)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rule", NAMES)
def test_the_demo_picture_of_each_rule(layout, rule):
    check(svg.draw(outcomes(layout, (rule,)), rule))


def test_go1_11s_low_answer_is_apart_from_the_heap_arena_taken_there():
    root = check(svg.draw(outcomes(arena.LAYOUT_32, ("go1.11",)), "go1.11"))
    low = root.find(f".//{NS}rect[@id='low-go1_11-0']")
    heap = [r for r in root.iter(f"{NS}rect") if r.get("class") == "heap" and "0x10000000" in (r.findtext(f"{NS}title") or "")]
    assert low is not None and heap
    assert box(low)[3] <= box(heap[0])[1]  # the answer given back is drawn above the heap arena taken at it


@pytest.mark.parametrize("step", [1, 5, 11, 13, 14, 20])
def test_crowded_ticks_are_left_out_not_overlapped(step):
    # Points a few pixels apart (an axis squeezed by many of them): labels that would collide go.
    points = [0x70000000 + k * 0x10000 for k in range(100)]
    axis = types.SimpleNamespace(points=points, xs=[svg.LEFT + k * step for k in range(100)])
    ticks = [ET.fromstring(f'<svg xmlns="http://www.w3.org/2000/svg">{t}</svg>')[0] for t in svg._ticks(axis, 200)]
    assert_texts_apart(ticks, "axis")
    kept = {int("".join(t.itertext()), 16) for t in ticks}
    assert points[0] in kept and (len(kept) < len(points) if step <= 14 else len(kept) == len(points))


def test_the_letters_are_drawn_once_then_a_line():
    root = ET.fromstring(svg.draw(outcomes(arena.LAYOUT_32, ("fixed",)), "fixed"))
    lane = root.find(f"{NS}g[@id='lane-fixed']")
    starts = [g for g in lane.iter(f"{NS}g") if g.get("class") == "marker arena_start"]
    letters = [t for g in starts for t in g.iter(f"{NS}text")]
    assert len(starts) == 8 and len(letters) == 1  # arena_start never moves after the first reservation


@pytest.mark.parametrize("target", ["legacy", "fixed", "go1.11"])
def test_drawn_scenarios(target):
    @settings(max_examples=budget(100, least=5), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(hunt.scenarios(arena.LAYOUT_32, hunt.target_for(target)))
    def prop(sc):
        try:
            r = hunt.play(sc, hunt.target_for(target), arena.LAYOUT_32)
        except (arena.ReservationFailed, hunt.Unplayable):
            return
        with r.arena:
            o = observe(r)
        # An unsound rule may hand out memory twice: its allocations may overlap, and the picture shows it.
        check(svg.draw([o], target), allocations_may_overlap=any(v.kind == "overlap" for v in o.violations))

    prop()
