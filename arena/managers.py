"""Which manager a rule name opens: a linear arena under one of its rules, or Go 1.11's heap arenas."""
from __future__ import annotations

from . import sysmem
from .heaparenas import RELEASE, HeapArenas
from .layout import Layout
from .manager import RULES, Arena
from .rules import Rule

# Every name the command line, the demo and traces accept, the linear arena's rules first.
NAMES = (*RULES, RELEASE)


def open_manager(
    rule: str | Rule,
    layout: Layout,
    memory: sysmem.Memory | None = None,
    start: int | None = None,
    initial_size: int | None = None,
) -> Arena | HeapArenas:
    """``HeapArenas`` for ``"go1.11"``, else an ``Arena`` under ``rule`` (a name or a rule); raises as their constructors do."""
    if rule == RELEASE:
        return HeapArenas(layout, memory, start, initial_size)
    return Arena(layout, rule, memory, start, initial_size)
