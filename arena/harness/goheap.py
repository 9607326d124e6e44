"""Go's heap in a real program's process trace: its arena reservations, what each was answered, and the requests they served.

A process trace (``arena.tracer``) holds every mmap-family call a program
made. ``recognise`` finds the calls of Go's heap among them, by the shapes
Go's runtime gives them (docs/real-programs.md):

- **linear** (Go 1.8 to 1.10, 32-bit): one first PROT_NONE reservation of
  the heap metadata (258 MiB) plus a 512, 256, 128 or 0 MiB arena plus one
  8 KiB page; *growths*: PROT_NONE reservations of a multiple of 256 MiB
  hinted at the end of the heap's region; *commits*: MAP_FIXED read-write
  mappings inside the arena part, one per ``sysAlloc(n)``; *fallbacks*:
  after a growth failed or was given back, unhinted read-write mappings of
  ``n`` plus one 8 KiB page.
- **sparse** (Go 1.11 and later): heap arenas (4 MiB on 32-bit, 64 MiB on
  64-bit) reserved PROT_NONE at a hint, kept only where the kernel put them
  exactly there, else given back; when no hint is left, an unhinted
  reservation of one arena more, trimmed to alignment. On 32-bit, first an
  unhinted reservation of the metadata and a hinted *pre-reservation* of
  512, 256 or 128 MiB plus one arena, used before any hint.

Only the program's first process is read. Nothing here maps memory: the
model beside the run is ``arena.harness.real``.
"""
from __future__ import annotations

import dataclasses

from ..managers.heaparenas import PRERESERVATION_SIZES
from ..policy.layout import LAYOUT_32, LAYOUT_64
from ..tracer import Outcome, Record
from ..tracer.calls import MAP_FIXED, PROT_NONE
from ..words import KiB, MiB, plural, size_text

LINEAR, SPARSE = "linear", "sparse"
# Go's page (_PageSize): the first reservation and a fallback add one.
GO_PAGE = 8 * KiB
# Go 1.8's 32-bit heap metadata: a 256 MiB bitmap and 2 MiB of spans (LAYOUT_32 models the same).
METADATA_32 = LAYOUT_32.metadata_size
# The arena sizes Go 1.8's 32-bit mallocinit tries, largest first.
LINEAR_ARENAS = (512 * MiB, 256 * MiB, 128 * MiB, 0)
GROWTH_STEP = LAYOUT_32.growth_step
# Go 1.8 grows its heap by at least 1 MiB (_HeapAllocChunk): a smaller unhinted mapping is not the heap's.
HEAP_CHUNK = 1 * MiB
# Go 1.11's heap arenas on Linux: 4 MiB on 32-bit, 64 MiB on 64-bit (the layouts resolve them).
ARENA_32, ARENA_64 = 4 * MiB, 64 * MiB
assert (LAYOUT_32.heap_arena_size, LAYOUT_64.heap_arena_size) == (ARENA_32, ARENA_64)
_READ_WRITE = 0x3


@dataclasses.dataclass
class Reservation:
    """One of the heap's reservation calls and what became of it.

    ``role``: ``first``, ``growth``, ``fallback`` (linear); ``metadata``,
    ``prereserved``, ``hint``, ``aligned`` (sparse). ``hint`` is what the
    program asked for (before an adversary moved it, to ``moved_to``);
    ``answer`` where the kernel placed it, None if the call failed.
    ``below``: answered below the end of the heap's region so far (linear).
    ``released_at``: the index of the munmap that gave all of it back;
    ``used``: the program committed memory in it.
    """

    index: int
    role: str
    hint: int
    size: int
    answer: int | None
    moved_to: int | None = None
    below: bool = False
    released_at: int | None = None
    used: bool = False

    @property
    def at_hint(self) -> bool:
        return self.answer is not None and self.answer == self.hint

    @property
    def end(self) -> int:
        return (self.answer or 0) + self.size


@dataclasses.dataclass
class GoHeap:
    """Go's heap as a process trace shows it (see the module's docstring).

    ``requests``: the ``sysAlloc`` sizes, in the order the program asked.
    ``initial_size``: the first reservation's arena size, the one page
    included (linear), or the pre-reservation's size less its alignment
    arena (sparse, 32-bit; None without one). ``arena_size``: a sparse
    heap's arena size (0 for linear).
    """

    design: str
    bits: int
    reservations: list[Reservation]
    requests: list[int]
    initial_size: int | None
    arena_size: int = 0

    def role(self, *roles: str) -> list[Reservation]:
        return [r for r in self.reservations if r.role in roles]

    def describe(self) -> str:
        """One line, e.g. ``Go's linear heap arena (Go 1.8 to 1.10), 32-bit: 2 growths, 1 answered below the
        heap's end; 615 requests``."""
        if self.design == LINEAR:
            growths = self.role("growth")
            low = sum(g.below for g in growths)
            below = f", {low:,} answered below the heap's end" if low else ""
            return (f"Go's linear heap arena (Go 1.8 to 1.10), {self.bits}-bit: {plural(len(growths), 'growth')}{below}, "
                    f"{plural(len(self.role('fallback')), 'fallback')}; {plural(len(self.requests), 'request')}")
        tries = self.role("hint", "aligned")
        missed = sum(not t.at_hint for t in self.role("hint"))
        return (f"Go's sparse heap arenas (Go 1.11 and later), {self.bits}-bit, {size_text(self.arena_size)} each: "
                f"{plural(len(tries), 'reservation')}, {missed:,} not at their hint; {plural(len(self.requests), 'request')}")


def _program(outcome: Outcome) -> list[Record]:
    """The calls of the program's first process."""
    if not outcome.calls:
        return []
    pid = outcome.calls[0].call.pid
    return [r for r in outcome.calls if r.call.pid == pid]


def _answer(r: Record) -> int | None:
    return r.answer if r.answer is not None and r.answer >= 0 else None


def _reservation(r: Record, role: str) -> Reservation:
    return Reservation(r.call.index, role, r.call.hint, r.call.size, _answer(r), r.moved_to)


def _is_commit(r: Record) -> bool:
    c = r.call
    return c.syscall in ("mmap", "mmap2") and bool(c.flags & MAP_FIXED) and c.prot & _READ_WRITE == _READ_WRITE


def _is_reservation(r: Record) -> bool:
    return r.call.adjustable and r.call.prot == PROT_NONE and r.call.size > 0


def _released(r: Record, held: list[Reservation]) -> Reservation | None:
    """The held reservation that ``r``, a munmap, gives back whole."""
    if r.call.syscall != "munmap" or r.answer != 0:
        return None
    return next((h for h in held if h.answer == r.call.hint and h.size == r.call.size and h.released_at is None), None)


def recognise(outcome: Outcome) -> GoHeap | None:
    """Go's heap in ``outcome``'s calls, or None when none of its shapes is there."""
    calls = _program(outcome)
    return _linear(calls) or _sparse(calls)


def _linear(calls: list[Record]) -> GoHeap | None:
    first = next((i for i, r in enumerate(calls) if r.call.bits == 32 and _is_reservation(r) and _answer(r) is not None
                  and r.call.size - METADATA_32 - GO_PAGE in LINEAR_ARENAS), None)
    if first is None:
        return None
    r0 = calls[first]
    head = _reservation(r0, "first")
    reservations, requests = [head], []
    # Where commits are heap: the arena part of each region the runtime holds.
    arena_parts: list[tuple[Reservation, int]] = [(head, _round(head.answer or 0) + METADATA_32)]
    top = head.end
    fallbacks = False
    for r in calls[first + 1:]:
        c = r.call
        held = [h for h, _ in arena_parts]
        if _is_reservation(r) and c.hinted and c.size % GROWTH_STEP == 0 and any(c.hint == h.end for h in held):
            g = _reservation(r, "growth")
            reservations.append(g)
            if g.answer is None:
                fallbacks = True
                continue
            g.below = g.answer < top
            arena_parts.append((g, g.answer))
            top = max(top, g.end)
        elif (gone := _released(r, held)) is not None:
            gone.released_at = c.index
            arena_parts = [(h, s) for h, s in arena_parts if h is not gone]
            fallbacks = True
        elif _is_commit(r) and _inside(arena_parts, c.hint, c.hint + c.size):
            for h, start in arena_parts:
                if start < c.hint + c.size and c.hint < h.end:
                    h.used = True
            requests.append(c.size)
        elif (fallbacks and c.adjustable and not c.hinted and c.prot == _READ_WRITE and c.size % GO_PAGE == 0
              and c.size >= HEAP_CHUNK + GO_PAGE):
            f = _reservation(r, "fallback")
            reservations.append(f)
            requests.append(c.size - GO_PAGE)
            if f.answer is not None:
                # Go moves arena_end to a fallback's end: a growth may be hinted there.
                arena_parts.append((f, f.end))
    return GoHeap(LINEAR, 32, reservations, requests, r0.call.size - METADATA_32)


def _inside(parts: list[tuple[Reservation, int]], start: int, end: int) -> bool:
    """Whether arena parts cover ``[start, end)``: a commit may span a region and its contiguous growth."""
    at = start
    while at < end:
        nxt = max((h.end for h, s in parts if s <= at < h.end), default=None)
        if nxt is None:
            return False
        at = nxt
    return True


def _round(x: int) -> int:
    return -(-x // GO_PAGE) * GO_PAGE


def _sparse(calls: list[Record]) -> GoHeap | None:
    start = None
    for i, r in enumerate(calls):
        if not _is_reservation(r) or not r.call.hinted:
            continue
        if r.call.bits == 32 and r.call.size - ARENA_32 in PRERESERVATION_SIZES:
            start, size = i, ARENA_32
            break
        if r.call.bits == 64 and r.call.hint in LAYOUT_64.first_hints and r.call.size % ARENA_64 == 0:
            start, size = i, ARENA_64
            break
    if start is None:
        return None
    bits = calls[start].call.bits
    reservations: list[Reservation] = []
    initial = None
    if bits == 32:
        # The metadata: the largest unhinted PROT_NONE reservation before the pre-reservation.
        metas = [r for r in calls[:start] if _is_reservation(r) and not r.call.hinted and _answer(r) is not None]
        if metas:
            reservations.append(_reservation(max(metas, key=lambda r: r.call.size), "metadata"))
        pre = _reservation(calls[start], "prereserved")
        reservations.append(pre)
        initial = pre.size - size
        tries = calls[start + 1:]
    else:
        pre = None
        tries = calls[start:]
    requests: list[int] = []
    for r in tries:
        c = r.call
        if _is_reservation(r) and c.size % size == 0 and (c.hinted or c.size >= 2 * size):
            t = _reservation(r, "hint" if c.hinted else "aligned")
            reservations.append(t)
            if t.role == "aligned":
                requests.append(t.size - size)
            elif t.at_hint:
                requests.append(t.size)
        elif (gone := _released(r, reservations)) is not None:
            gone.released_at = c.index
        elif pre is not None and pre.answer is not None and _is_commit(r) and pre.answer <= c.hint < pre.end:
            pre.used = True
            requests.append(-(-c.size // size) * size)
    return GoHeap(SPARSE, bits, reservations, requests, initial, size)
