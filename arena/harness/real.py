"""The model beside a real run: the kernel's answers from a Go program's process trace, fed to ``Arena`` and ``HeapArenas``.

``beside(outcome)`` finds Go's heap in a traced run (``goheap.recognise``),
gives the model the program's requests, and answers each of the model's
reservations as the kernel answered the program's: a reservation answered
away from its hint is really mapped at the same place, one answered at its
hint is left to the kernel at the model's own hint, a failed one has no
room. It then says, per rule, what the model did with those answers —
arena_used lowered, the region released, the allocation cursor moved, heap
arenas' hints missed and released — beside what the program itself did.

The model needs the answers' *relative* placement only (a growth answered
below the heap's end, in the hole left by the one before). Where the
program's addresses are taken in this process, they are all moved by one
shift (a multiple of the 32-bit heap arena, 4 MiB) to a free window; on
64-bit they stay, and an answer whose range is taken here is left to the
kernel (``notes`` says how many).
"""
from __future__ import annotations

import dataclasses
from typing import cast

from .. import sysmem
from ..managers import RELEASE, Arena, Bounds, HeapArenas
from ..managers.heaparenas import metadata_size
from ..policy.layout import LAYOUT_32, LAYOUT_64, Layout
from ..spaces import NO_ROOM, Answer, ScriptedMemory
from ..tracer import Outcome as RunOutcome
from ..words import MiB, plural
from .goheap import LINEAR, SPARSE, GoHeap, Reservation, recognise
from .run import Outcome, drive, observe

__all__ = ["LINEAR_RULES", "Beside", "ModelRun", "beside", "real_verdict"]

LINEAR_RULES = ("legacy", "fixed", "go1.9")
# What the model and the program can each be found doing with the answers.
LOWERED, RELEASED, CURSOR, AT_END = "lowered", "released", "cursor", "contiguous"
MISSED, AT_HINTS, THREW = "released", "at hints", "threw"
# The 32-bit window's shift keeps heap arenas' alignment.
_SHIFT_ALIGN = 4 * MiB


@dataclasses.dataclass
class ModelRun:
    """One rule's run of the model: its ``outcome`` (``arena.harness.run.Outcome``), the ``verdict`` (one of the
    module's words: lowered, released, cursor, contiguous; heap arenas: released, at hints, threw), ``words``
    for people (the program's addresses), and whether it ``agrees`` with what the program did."""

    rule: str
    outcome: Outcome
    verdict: str
    words: str
    agrees: bool


@dataclasses.dataclass
class Beside:
    """The model beside one real run: the ``heap`` recognised, what the program did (``real``, ``real_words``),
    each rule's ``runs``, the ``shift`` applied to the program's addresses, and ``notes``."""

    heap: GoHeap
    real: str
    real_words: str
    runs: list[ModelRun]
    shift: int
    notes: list[str]

    def run(self, rule: str) -> ModelRun | None:
        return next((r for r in self.runs if r.rule == rule), None)


def rules_for(heap: GoHeap) -> tuple[str, ...]:
    """The rules whose model fits ``heap``: the linear arena's three, or Go 1.11's heap arenas."""
    return LINEAR_RULES if heap.design == LINEAR else (RELEASE,)


def real_verdict(outcome: RunOutcome, heap: GoHeap) -> tuple[str, str]:
    """What the program did with its answers: ``(verdict, words)``, the verdict in the model's words."""
    if heap.design == SPARSE:
        tries = heap.role("hint")
        missed = [t for t in tries if not t.at_hint]
        given = [t for t in missed if t.released_at is not None]
        if given:
            return MISSED, (f"gave back {plural(len(given), 'heap-arena reservation')} not placed at their hint "
                            f"and took {plural(len(heap.role('aligned')), 'aligned region')} instead")
        return AT_HINTS, f"every heap arena at its hint ({plural(len(tries), 'reservation')})"
    growths = heap.role("growth")
    low = [g for g in growths if g.below and g.answer is not None]
    taken = [g for g in low if g.used]
    if taken:
        g = taken[0]
        where = f"took the region at {g.answer:#x}, below its heap's end"
        if outcome.failed:
            return LOWERED, where + (f", then died: {outcome.fatal}" if outcome.fatal else f", then {outcome.ended()}")
        return CURSOR, where + ", and allocated in it"
    given = [g for g in low if g.released_at is not None]
    if given:
        return RELEASED, (f"gave back the region at {given[0].answer:#x}, below its heap's end (munmap, call "
                          f"#{given[0].released_at}), and fell back to {plural(len(heap.role('fallback')), 'small mapping')}")
    return AT_END, (f"{plural(len(growths), 'growth')}, none taken below its heap's end" if growths
                    else "no growth: the first reservation held the whole heap")


def beside(outcome: RunOutcome, rules: tuple[str, ...] | None = None, memory: sysmem.Memory | None = None) -> Beside | None:
    """The model, under each of ``rules`` (default: those that fit), fed ``outcome``'s answers; None when no Go heap is
    recognised in it. ``memory``: the OS layer (default: ``sysmem.default`` of the trace's width).

    Raises ``ValueError`` when the model cannot run in this process (a 64-bit program's heap in a 32-bit Python).
    """
    heap = recognise(outcome)
    if heap is None:
        return None
    if heap.bits > sysmem.NATIVE_BITS:
        raise ValueError("the model of a 64-bit program's heap needs a 64-bit Python")
    real, real_words = real_verdict(outcome, heap)
    fit = rules_for(heap)
    # A linear heap runs under any rule of the linear arena (yours too, module:attr); heap arenas under go1.11.
    chosen = fit if rules is None else tuple(r for r in rules if (r != RELEASE) == (heap.design == LINEAR))
    unfit = [] if rules is None else [r for r in rules if r not in chosen]
    inner = memory if memory is not None else sysmem.default(address_bits=heap.bits)
    layout = LAYOUT_32 if heap.bits == 32 else LAYOUT_64
    shift = _shift(heap, inner)
    notes = [] if not shift else [f"the program's addresses are taken in this process: the model's are moved by "
                                  f"{shift:+#x} (shown as the program's)"]
    notes += [f"{r}: not a model of this heap ({'Go 1.11' if heap.design == SPARSE else 'Go 1.8 to 1.10'}'s): "
              f"use {' or '.join(fit)}" for r in unfit]
    runs = []
    for rule in chosen:
        answers = _Answers(heap, shift, inner)
        # ScriptedMemory takes a list: the same callable for every reservation the model can make (past the
        # list it would ask the kernel, as the callable does when it has no answer).
        scripted = ScriptedMemory(inner, [answers] * (4 * (len(heap.requests) + len(heap.reservations)) + 512))
        manager = _manager(heap, rule, layout, scripted, shift)
        with manager:
            observed = observe(drive(manager, heap.requests))
        verdict, words = _verdict(observed, heap, shift)
        runs.append(ModelRun(rule, observed, verdict, words, verdict == real))
        if answers.asked_kernel:
            notes.append(f"{rule}: {plural(answers.asked_kernel, 'answer')} left to this process's kernel "
                         "(the program's address is taken here, or the model asked elsewhere)")
    return Beside(heap, real, real_words, runs, shift, notes)


def _manager(heap: GoHeap, rule: str, layout: Layout, scripted: ScriptedMemory, shift: int) -> Arena | HeapArenas:
    # A ScriptedMemory is a Memory in all but name (it wraps one and answers its calls).
    memory = cast(sysmem.Memory, scripted)
    if heap.design == LINEAR:
        first = heap.role("first")[0]
        assert first.answer is not None and heap.initial_size is not None
        start = -(-(first.answer + shift) // layout.page_size) * layout.page_size + layout.metadata_size
        return Arena(layout, rule, memory=memory, start=start, initial_size=heap.initial_size)
    pre = heap.role("prereserved")
    if pre:
        return HeapArenas(layout, memory, start=pre[0].hint + shift, initial_size=heap.initial_size)
    return HeapArenas(layout, memory)


class _Answers:
    """Answers the model's reservations as the kernel answered the program's (a ``ScriptedMemory`` callable).

    The model's first reservation (or 32-bit metadata and pre-reservation)
    takes the program's; growths are matched in order; heap arenas' hinted
    tries by hint and size, aligned ones in order.
    """

    def __init__(self, heap: GoHeap, shift: int, memory: sysmem.Memory) -> None:
        self.heap, self.shift, self.memory = heap, shift, memory
        self.pending = {role: list(heap.role(role)) for role in ("first", "growth", "metadata", "prereserved", "hint", "aligned")}
        self.asked_kernel = 0
        self.calls = 0

    def __call__(self, hint: int, size: int) -> Answer:
        self.calls += 1
        if self.heap.design == LINEAR:
            if self.calls == 1:
                return self._exact(self._take("first", size))
            if hint == 0:
                return None  # a fallback: anywhere the kernel likes
            return self._moved(self._take("growth", size), hint)
        if hint == 0:
            meta = self.pending["metadata"]
            if meta and size == _round_up(metadata_size(LAYOUT_32), self.memory.page_size):
                return self._exact(meta.pop(0))
            return self._exact(self._take("aligned", size))
        if self.pending["prereserved"]:
            return self._exact(self.pending["prereserved"].pop(0))
        tries = self.pending["hint"]
        found = next((t for t in tries if t.hint + self.shift == hint and t.size == size), None)
        if found is None:
            self.asked_kernel += 1
            return None
        tries.remove(found)
        return self._exact(found)

    def _take(self, role: str, size: int) -> Reservation | None:
        pending = self.pending[role]
        found = next((r for r in pending if r.size == size), None)
        if found is not None:
            # Matched in order: the ones before it were never asked by the model.
            del pending[:pending.index(found) + 1]
        return found

    def _moved(self, r: Reservation | None, hint: int) -> Answer:
        """A growth: where the program's was placed; but one honoured at the program's hint, asked by the model at
        another hint, is left to the kernel at the model's hint (honoured again where it is free)."""
        if r is not None and r.at_hint and r.hint + self.shift != hint:
            return None
        return self._exact(r)

    def _exact(self, r: Reservation | None) -> Answer:
        if r is None:
            self.asked_kernel += 1
            return None
        if r.answer is None:
            return NO_ROOM
        at = r.answer + self.shift
        if not (self.memory.lowest <= at and at + r.size <= self.memory.limit) or _taken(at, r.size):
            self.asked_kernel += 1
            return None
        return at


def _round_up(n: int, page: int) -> int:
    return -(-n // page) * page


def _taken(start: int, size: int) -> bool:
    return any(m.end > start for m in sysmem.mappings(below=start + size))


def _shift(heap: GoHeap, memory: sysmem.Memory) -> int:
    """0 when every range the model maps exactly is free here (always on 64-bit); else the shift nearest 0, a
    multiple of ``_SHIFT_ALIGN``, that moves them all into one free window (0 if there is none: then each answer
    whose range is taken is left to the kernel)."""
    ranges = [(r.answer, r.end) for r in heap.reservations if r.answer is not None and r.role != "fallback"]
    if not ranges or heap.bits == 64 or not any(_taken(a, b - a) for a, b in ranges):
        return 0
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    gaps, cursor = [], memory.lowest
    for m in sysmem.mappings():
        if m.start > cursor:
            gaps.append((cursor, min(m.start, memory.limit)))
        cursor = max(cursor, m.end)
    gaps.append((cursor, memory.limit))
    best: int | None = None
    for start, end in gaps:
        low = -(-(start - lo) // _SHIFT_ALIGN) * _SHIFT_ALIGN
        high = (end - hi) // _SHIFT_ALIGN * _SHIFT_ALIGN
        if low <= high:
            d = min(max(0, low), high)
            if best is None or abs(d) < abs(best):
                best = d
    return best or 0


def _verdict(o: Outcome, heap: GoHeap, shift: int) -> tuple[str, str]:
    """What the model did with the answers, in the program's addresses."""
    def at(x: int | None) -> str:
        return "-" if x is None else f"{x - shift:#x}"

    if heap.design == SPARSE:
        threw = [e for e in o.events if e.verdict == "throw"]
        if threw:
            return THREW, f"Go 1.11 throws: {threw[0].reason}"
        missed = [e for e in o.events if e.step == "hint" and e.verdict in ("missed", "no-room")]
        aligned = [e for e in o.events if e.step == "aligned" and e.verdict in ("reserved", "trimmed")]
        lost = f"; {plural(len(o.lost), 'allocation')} lost" if o.lost else "; nothing lost"
        if missed:
            return MISSED, (f"released {plural(len(missed), 'reservation')} not at its hint, took "
                            f"{plural(len(aligned), 'aligned region')}{lost}")
        return AT_HINTS, f"every heap arena at its hint{lost}"
    grows = [e for e in o.events if e.step == "grow"]
    lowered = [e for e in grows if isinstance(e.before, Bounds) and isinstance(e.after, Bounds)
               and e.after.arena_used < e.before.arena_used]
    lost = f": {plural(len(o.lost), 'allocation')} no longer heap" if o.lost else ""
    if lowered:
        e = lowered[0]
        assert isinstance(e.before, Bounds) and isinstance(e.after, Bounds)
        return LOWERED, f"arena_used lowered {at(e.before.arena_used)} -> {at(e.after.arena_used)}{lost}"
    moved = [e for e in grows if e.verdict == "accepted" and isinstance(e.before, Bounds) and e.returned is not None
             and e.returned < e.before.arena_used]
    if moved:
        e = moved[0]
        assert isinstance(e.after, Bounds)
        return CURSOR, f"allocates in the region at {at(e.returned)} (arena_alloc); arena_used stays {at(e.after.arena_used)}"
    rejected = [e for e in grows if e.verdict == "rejected" and e.returned is not None]
    if rejected:
        falls = sum(e.verdict == "fallback" for e in o.events)
        then = f", fell back to {plural(falls, 'small mapping')}" if falls else ""
        return RELEASED, f"released the region at {at(rejected[0].returned)} (not above arena_end){then}"
    return AT_END, "every growth kept; arena_used never lowered"

