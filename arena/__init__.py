"""A real-memory arena allocator modelled on Go's linear heap arena (Go 1.8 – 1.10) and Go 1.11's sparse heap arenas."""
from .heaparenas import GoThrow, HeapArenas, HeapState
from .layout import LAYOUT_32, LAYOUT_64, Layout, native_layout
from .manager import RULES, Arena, ArenaClosed, Bounds, Event, Region, ReservationFailed, Stats
from .rules import Rule

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = [
    "LAYOUT_32",
    "LAYOUT_64",
    "RULES",
    "Arena",
    "ArenaClosed",
    "Bounds",
    "Event",
    "GoThrow",
    "HeapArenas",
    "HeapState",
    "Layout",
    "Region",
    "ReservationFailed",
    "Rule",
    "Stats",
    "native_layout",
]
