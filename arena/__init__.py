"""A real-memory arena allocator modelled on Go's linear heap arena (Go 1.8 – 1.10) and Go 1.11's sparse heap arenas."""
from .managers import (
    Arena,
    ArenaClosed,
    Bounds,
    Event,
    GoThrow,
    HeapArenas,
    HeapState,
    ReentrantCall,
    Region,
    ReservationFailed,
    Stats,
)
from .policy import LAYOUT_32, LAYOUT_64, RULES, Layout, Rule, native_layout

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.2.0"

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
    "ReentrantCall",
    "Region",
    "ReservationFailed",
    "Rule",
    "Stats",
    "native_layout",
]
