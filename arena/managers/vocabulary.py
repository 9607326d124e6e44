"""What both managers and everything above them speak: decisions, counters, bounds, regions, the program's extent.

``Arena`` (Go's linear arena) and ``HeapArenas`` (Go 1.11's heap arenas) both
record ``Event``s and count ``Stats``; an event's bounds are a linear arena's
``Bounds`` or a ``HeapState``. Neither manager imports the other: what they
share is here.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Generic, NamedTuple, TypeAlias, TypeVar

from .. import sysmem
from ..policy.rules import Bounds

__all__ = ["AnyEvent", "ArenaClosed", "Bounds", "Event", "HeapState", "Region", "ReentrantCall", "Stats", "binary_end",
           "per_request", "round_up"]


class ArenaClosed(RuntimeError):
    """The arena was closed: its mappings are gone, and every call but ``close`` raises this."""


class ReentrantCall(RuntimeError):
    """A call on a manager made from inside another call on it, on the same thread: a rule, a memory
    layer or an argument's ``__index__`` called back into it. The outer call goes on (or fails
    cleanly, if the callback lets this through); another thread's call just waits for the lock."""


class Region(NamedTuple):
    """A mapping the arena made and holds: ``[start, start + size)``, and its ``role``.

    ``role``: ``first`` (the first reservation, heap metadata included),
    ``reservation`` (a growth), ``fallback`` (a 32-bit small mapping);
    ``HeapArenas``: ``metadata``, ``prereserved`` (32-bit) or ``heap``, each
    region its sysAlloc mapped.
    """

    start: int
    size: int
    role: str

    @property
    def end(self) -> int:
        """One past the region's last byte: ``start + size``."""
        return self.start + self.size


class HeapState(NamedTuple):
    """What ``HeapArenas`` holds at one moment: an event's ``before`` and ``after``."""

    hint: int | None  # where the next hinted reservation goes (the head of Go's arenaHints)
    down: bool  # whether that hint grows down: the region ends at it
    hints: int  # hints left in the list
    arenas: int  # heap arenas registered in the index
    prereserved_next: int  # 32-bit: next free byte of the pre-reservation (Go's mheap_.arena), 0 if none
    prereserved_end: int  # its end, 0 if none


# What an event's bounds are: a linear arena's Bounds, or the HeapState of HeapArenas.
_State = TypeVar("_State", Bounds, HeapState)


@dataclasses.dataclass(frozen=True)
class Event(Generic[_State]):
    """One decision: what was asked, what the kernel answered, the verdict and why.

    ``before`` and ``after`` are a linear arena's ``Bounds`` (``Arena.events``
    are ``Event[Bounds]``), or the ``HeapState`` of ``HeapArenas``
    (``Event[HeapState]``).
    """

    step: str  # first, grow, commit or fallback (HeapArenas: first, hint, aligned, commit)
    request: int  # the n of sys_alloc (0 for the first reservation)
    hint: int | None
    size: int
    returned: int | None
    verdict: str
    reason: str
    before: _State
    after: _State


# An event of either manager, as a report of runs of both reads them.
AnyEvent: TypeAlias = Event[Bounds] | Event[HeapState]
_E = TypeVar("_E", bound="Event[Bounds] | Event[HeapState]")


@dataclasses.dataclass
class Stats:
    """Counters of an arena since it was made (``Arena.stats``, ``HeapArenas.stats``).

    Cumulative: reading them resets nothing, and they count every decision
    whatever the arena's ``history`` keeps. ``reserved`` and ``committed``
    are what is held now; the others count events since the start.
    """

    reserved: int = 0  # bytes of address space held now
    committed: int = 0  # bytes made read-write (Go's heap_sys)
    released_after_rejection: int = 0  # Go's "fake stat": never counted above
    reservations: int = 0  # reservations the kernel answered
    contiguous: int = 0
    noncontiguous: int = 0
    rejections: int = 0
    fallbacks: int = 0


@functools.cache
def binary_end() -> int:
    """Where the executable's image ends: it does not move, so the maps are read once."""
    return sysmem.program_extent(sysmem.mappings())[0]


def round_up(x: int, a: int) -> int:
    return -(-x // a) * a


def after_first(events: Sequence[_E]) -> list[_E]:
    """The events after the first reservation: those the ``sys_alloc`` calls caused."""
    return [e for e in events if e.step != "first"]


def per_request(events: Sequence[_E]) -> list[list[_E]]:
    """The events after the first reservation, grouped by the ``sys_alloc`` call that caused them.

    A request ends in a commit or a fallback step; before Go 1.9 it can also
    end in a grow that found no room (Go 1.8 returns nil there), which is the
    case when no fallback step follows it.
    """
    groups: list[list[_E]] = []
    current: list[_E] = []
    steps = after_first(events)
    for i, e in enumerate(steps):
        current.append(e)
        following = steps[i + 1].step if i + 1 < len(steps) else None
        gave_up = e.step == "grow" and e.verdict == "no-room" and following != "fallback"
        if e.step in ("commit", "fallback") or gave_up:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups
