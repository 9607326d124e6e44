"""The managers of real address space: Go's linear arena (``Arena``) and Go 1.11's heap arenas (``HeapArenas``),
and which one a rule name opens."""
from __future__ import annotations

from .. import sysmem
from ..policy.layout import Layout
from ..policy.rules import RULES, Parts, Rule
from .heaparenas import RELEASE, GoThrow, HeapArenas
from .linear import Arena, ReservationFailed
from .vocabulary import ArenaClosed, Bounds, Event, HeapState, ReentrantCall, Region, Stats

# Every name the command line, the demo and traces accept, the linear arena's rules first.
NAMES = (*RULES, RELEASE)


def open_manager(
    rule: str | Rule | Parts,
    layout: Layout,
    memory: sysmem.MemoryLayer | None = None,
    start: int | None = None,
    initial_size: int | None = None,
) -> Arena | HeapArenas:
    """``HeapArenas`` for ``"go1.11"``, else an ``Arena`` under ``rule`` (a name or a rule); raises as their constructors do."""
    if rule == RELEASE:
        return HeapArenas(layout, memory, start, initial_size)
    return Arena(layout, rule, memory, start, initial_size)

__all__ = [
    "NAMES",
    "RELEASE",
    "Arena",
    "ArenaClosed",
    "Bounds",
    "Event",
    "GoThrow",
    "HeapArenas",
    "HeapState",
    "ReentrantCall",
    "Region",
    "ReservationFailed",
    "Stats",
    "open_manager",
]
