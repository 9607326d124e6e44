"""Invariant checks of an arena against its own history and /proc/self/maps."""
from __future__ import annotations

import bisect
from typing import NamedTuple

from .. import sysmem
from ..managers import Arena, ArenaClosed, HeapArenas
from ..words import plural


class Violation(NamedTuple):
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class Findings(list[Violation]):
    """What ``verify`` found: a list of ``Violation`` (empty: sound), and in
    ``unchecked`` what it could not check, because the arena's bounded
    history no longer holds what that check reads. Not a violation."""

    def __init__(self) -> None:
        super().__init__()
        self.unchecked: list[str] = []


class InvariantViolation(AssertionError):
    """``verify_or_raise`` found the arena unsound."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(map(str, violations)))
        self.violations = violations


class _Cover:
    """The union of mappings (those with ``perms``, if given) as sorted disjoint runs.

    ``covers`` is a binary search: verify asks once per allocation, region and
    heap arena, and a walk of every mapping per question made the largest
    trace's check quadratic (minutes, docs/trace-format.md).
    """

    def __init__(self, maps: list[sysmem.Mapping], perms: str | None = None) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for m in sorted(maps):
            if perms is not None and m.perms != perms:
                continue  # a hole: a mapping with other permissions does not cover
            if self.ends and m.start <= self.ends[-1]:
                self.ends[-1] = max(self.ends[-1], m.end)  # touching or overlapping: one run
            else:
                self.starts.append(m.start)
                self.ends.append(m.end)

    def covers(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` lies in one run, without a hole."""
        i = bisect.bisect_right(self.starts, start) - 1
        return start >= end or (i >= 0 and self.ends[i] >= end)

    def outside(self, starts: list[int], size: int) -> list[int]:
        """The ``s`` of sorted ``starts`` for which ``covers(s, s + size)`` is false (``size`` > 0).

        A run covers the starts from its own to its end less ``size``: a
        search per run, where a heap arena has thousands of mappings and a
        trace's heap arenas hundreds of thousands of frames.
        """
        out, i = [], 0
        for start, end in zip(self.starts, self.ends):
            lo = bisect.bisect_left(starts, start, i)
            out += starts[i:lo]
            i = bisect.bisect_right(starts, end - size, lo)
        return out + starts[i:]


def _held_mapped_disjoint(found: Findings, what: str, ranges: list[tuple[int, int]], held: list[sysmem.Mapping],
                          maps: list[sysmem.Mapping] | None, maker: str) -> None:
    """What every manager owes its allocations (sorted ``ranges``): each lies in mappings it made
    (``held``), is mapped read-write (unless ``maps`` is None: not read), and no two overlap."""
    made, writable = _Cover(held), None if maps is None else _Cover(maps, "rw-p")
    for addr, size in ranges:
        if not made.covers(addr, addr + size):
            found.append(Violation("foreign", f"{what} [{addr:#x}, {addr + size:#x}) lies in no mapping {maker} made"))
        if writable is not None and not writable.covers(addr, addr + size):
            found.append(Violation("not-mapped", f"{what} [{addr:#x}, {addr + size:#x}) is not mapped read-write"))
    for (a1, s1), (a2, s2) in zip(ranges, ranges[1:]):
        if a2 < a1 + s1:
            found.append(Violation("overlap", f"{what}s [{a1:#x}, {a1 + s1:#x}) and [{a2:#x}, {a2 + s2:#x}) overlap"))


def verify(a: Arena | HeapArenas, *, read_maps: bool = True) -> Findings:
    """Every way ``a`` is unsound; an empty list means sound (``.unchecked``: what could not be checked).

    ``read_maps=False`` checks the arena against its own history only and
    skips the two checks that read /proc/self/maps (allocations mapped
    read-write, regions still mapped): faster, blind to a mapping lost behind
    the arena's back.

    ``TypeError`` for anything but a manager, ``ArenaClosed`` once closed,
    ``ReentrantCall`` from inside another call on it (a rule, a memory layer),
    whatever it holds. The manager is held meanwhile (``held``): another
    thread's calls wait, and every check reads one state.
    """
    if isinstance(a, HeapArenas):
        return verify_heap_arenas(a, read_maps=read_maps)
    if not isinstance(a, Arena):
        raise TypeError(f"verify needs an Arena or HeapArenas, not {type(a).__name__} ({a!r})")
    with a.held("verify"):
        if a.closed:
            raise ArenaClosed("cannot verify a closed arena: its mappings are gone")
        return _verify_arena(a, read_maps)


def _verify_arena(a: Arena, read_maps: bool) -> Findings:
    """``verify``'s checks of an open ``Arena``, held by this thread."""
    found = Findings()
    # Kept whatever the history is: every decision that lowered arena_used.
    for e in a.lowered:
        found.append(Violation(
            "arena_used-decreased",
            f"{e.step} {e.verdict} at {e.returned:#x}: arena_used {e.before.arena_used:#x} -> {e.after.arena_used:#x}",
        ))
    complete = a.history_complete
    regions = sorted(a.regions)
    # Without every allocation, the committed runs (allocations merged where
    # they touch) stand in for them: what lies outside the heap, outside the
    # arena's mappings or not read-write is found all the same.
    what, ranges = ("allocation", sorted(a.allocations)) if complete else ("committed run", a.committed_runs)
    if not complete:
        kept = "no decisions" if a.history == 0 else f"only its last {plural(a.history, 'decision')}"
        found.unchecked.append(
            f"the arena keeps {kept} (history={a.history}): its committed memory was checked run by run, "
            "not allocation by allocation, so whether two allocations overlap was not checked"
        )
        found.unchecked.append(
            "whether the arena made each region it holds was not checked: the decisions that made them are gone"
        )
    # Only what lies below the arena's highest byte matters; the rest is not read.
    top = max([r.end for r in regions] + [p + n for p, n in ranges], default=0)
    maps = sysmem.mappings(below=top) if read_maps else None
    # Contiguous growth makes adjacent regions: an allocation may span several.
    held = [sysmem.Mapping(r.start, r.end, "", r.role) for r in regions]
    # contains(p) is arena_start <= p < arena_used, nothing else: the bounds read once, where asking
    # twice per allocation was tens of thousands of calls for a long trace.
    start, used = a.arena_start, a.arena_used
    for addr, size in ranges:
        if not (start <= addr < used and start <= addr + size - 1 < used):
            found.append(Violation("not-heap", f"{what} [{addr:#x}, {addr + size:#x}) is not inside [arena_start, arena_used)"))
    _held_mapped_disjoint(found, what, ranges, held, maps, "the arena")
    made = ({(e.returned, e.size) for e in a.events if e.verdict in ("reserved", "contiguous", "accepted", "fallback")}
            if complete else set())
    mapped = None if maps is None else _Cover(maps)
    for r in regions:
        if complete and (r.start, r.size) not in made:
            found.append(Violation("foreign", f"region [{r.start:#x}, {r.end:#x}) was not made by this arena"))
        if mapped is not None and not mapped.covers(r.start, r.end):
            found.append(Violation("unmapped", f"region [{r.start:#x}, {r.end:#x}) is no longer mapped"))
    return found


def verify_or_raise(a: Arena) -> None:
    """Raise ``InvariantViolation`` listing every violation, if there is any."""
    found = verify(a)
    if found:
        raise InvariantViolation(found)


def verify_heap_arenas(a: HeapArenas, *, read_maps: bool = True) -> Findings:
    """Every way Go 1.11's heap arenas ``a`` are unsound: the index against the allocations,
    the held regions and (unless ``read_maps`` is false) /proc/self/maps; an empty list means sound.
    Raises as ``verify`` does."""
    with a.held("verify"):
        if a.closed:
            raise ArenaClosed("cannot verify closed heap arenas: their mappings are gone")
        return _verify_heap_arenas(a, read_maps)


def _verify_heap_arenas(a: HeapArenas, read_maps: bool) -> Findings:
    """``verify_heap_arenas``' checks of open heap arenas, held by this thread."""
    found = Findings()
    events = a.events  # read once: each read is a list of its own, and a trace's has tens of thousands
    for e in events:
        # An index entry never goes back to nil (mheap.go): registered arenas only grow.
        if e.after.arenas < e.before.arenas:
            found.append(Violation("arena-unregistered",
                                   f"{e.step} {e.verdict}: heap arenas {e.before.arenas} -> {e.after.arenas}"))
        if e.verdict == "throw":
            # The model refused and stayed sound, but a Go program would have died here.
            found.append(Violation("throw", f"Go 1.11 throws at sys_alloc({e.request:#x}): {e.reason}"))
    regions, allocations, size = sorted(a.regions), sorted(a.allocations), a.layout.heap_arena_size
    assert size is not None  # Layout fills it in when made
    top = max([r.end for r in regions] + [p + n for p, n in allocations], default=0)
    maps = sysmem.mappings(below=top) if read_maps else None
    held = [sysmem.Mapping(r.start, r.end, "", r.role) for r in regions]
    # A registered heap arena's base is aligned, and contains(f) of an aligned f says exactly whether
    # f is one (the index maps f's arena number to that base and back): an allocation is whole
    # registered heap arenas when it holds as many bases as frames. Two searches, where a call per
    # frame was most of the check of the largest trace (hundreds of thousands of frames).
    arenas = a.arenas
    for addr, n in allocations:
        if addr % size or n % size or bisect.bisect_left(arenas, addr + n) - bisect.bisect_left(arenas, addr) != n // size:
            found.append(Violation("not-heap", f"allocation [{addr:#x}, {addr + n:#x}) is not whole registered heap arenas"))
    _held_mapped_disjoint(found, "allocation", allocations, held, maps, "the heap arenas")
    mapped, writable = (None, None) if maps is None else (_Cover(maps), _Cover(maps, "rw-p"))
    # The frames handed out (each allocation's, from the heap arena it starts in), whole heap arenas.
    handed = _Cover([sysmem.Mapping(p - p % size, p + n + -(p + n) % size, "", "") for p, n in allocations])
    strays = set(handed.outside(arenas, size))
    unmapped = set() if writable is None else set(writable.outside(arenas, size))
    # In the arenas' order; a stray is only that.
    for base in sorted(strays | unmapped):
        if base in strays:
            found.append(Violation("stray-arena",
                                   f"heap arena [{base:#x}, {base + size:#x}) is registered but was never handed out"))
        else:
            found.append(Violation("index-unmapped",
                                   f"registered heap arena [{base:#x}, {base + size:#x}) is not mapped read-write"))
    # What the kernel answered and was kept: whole, or trimmed to alignment (one arena less).
    made = {(e.returned, e.size) for e in events if e.verdict in ("reserved", "honoured")}
    # (A trimmed reservation always has the kernel's answer: "is not None" only says so to the type checker.)
    made |= {(e.returned - e.returned % size + size, e.size - size) for e in events
             if e.verdict == "trimmed" and e.returned is not None}
    for r in regions:
        if (r.start, r.size) not in made:
            found.append(Violation("foreign", f"region [{r.start:#x}, {r.end:#x}) was not made by these heap arenas"))
        if mapped is not None and not mapped.covers(r.start, r.end):
            found.append(Violation("unmapped", f"region [{r.start:#x}, {r.end:#x}) is no longer mapped"))
    for r1, r2 in zip(regions, regions[1:]):
        if r2.start < r1.end:
            found.append(Violation("overlap", f"regions [{r1.start:#x}, {r1.end:#x}) and [{r2.start:#x}, {r2.end:#x}) overlap"))
    return found
