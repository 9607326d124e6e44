"""Writing a manager's history as a replayable trace: what was asked and what the kernel answered (docs/trace-format.md).

The reading half (parsing, limits, replaying) is ``arena.trace``; this half
lives with the managers so that ``save_trace`` needs nothing above them.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

from .. import sysmem
from ..policy.layout import LAYOUT_32, LAYOUT_64, Layout
from .vocabulary import AnyEvent, per_request


class Manager(Protocol):
    """What a trace reads of a manager (``Arena``, ``HeapArenas``)."""

    @property
    def layout(self) -> Layout: ...
    @property
    def memory(self) -> sysmem.MemoryLayer: ...
    @property
    def rule(self) -> str: ...
    @property
    def events(self) -> Sequence[AnyEvent]: ...
    @property
    def history(self) -> int | None: ...
    @property
    def history_complete(self) -> bool: ...
    def _trace_start(self) -> tuple[int, dict[str, Any]]: ...


FORMAT = "arena-trace"
VERSION = 2
LAYOUTS = {"32": LAYOUT_32, "64": LAYOUT_64}
# A replay touches the first and last page of every allocation, and keeps
# every decision: 10,000 requests cost at most ~80 MB and a second per rule.
# A longer trace is refused before anything runs (docs/trace-format.md).
MAX_STEPS = 10_000
# A layout's lists are tried one by one (each first hint and size is a
# reservation): Go has 128 hints on 64-bit and 4 sizes on 32-bit.
MAX_HINTS = 1_024
# What a replay of Go 1.11's heap arenas registers, one index entry per heap
# arena, is its cost: each request registers at most n / heap_arena_size + 1
# (docs/trace-format.md). 8 KiB heap arenas and a 256 GiB request would be 2**25.
MAX_HEAP_ARENAS = 1 << 18
# The decisions of a run within those limits: at most three per request of a
# linear arena (grow, fallback, commit), one per first hint and size tried,
# and for heap arenas one per hint (two new ones per aligned reservation).
MAX_EVENTS = 8 * MAX_STEPS + 2 * MAX_HINTS + 8
# Events whose step made a reserve call, and so consumed one answer.
ASKED = {
    "first": {"reserved", "missed", "no-room", "trimmed", "trim-failed"},
    "grow": {"contiguous", "accepted", "rejected", "no-room"},
    "fallback": {"fallback", "fallback-rejected", "out-of-memory"},
    # HeapArenas: a hint's reservation, and the aligned one when every hint failed.
    "hint": {"honoured", "missed", "no-room"},
    "aligned": {"reserved", "trimmed", "no-room", "trim-failed"},
}


def _answers_of(manager: Manager) -> list[int | str]:
    """The kernel's answer to every reserve call the events record, in order."""
    answers: list[int | str] = []
    top, limit = 1 << manager.layout.address_bits, manager.memory.limit
    for e in manager.events:
        # A fallback with no hint is the 64-bit "out of memory" that asked nobody;
        # a size the space cannot hold is "no room" without asking either.
        asked = e.hint is not None and 0 < e.size < limit and e.hint + e.size <= top
        if e.verdict in ASKED.get(e.step, ()) and asked:
            answers.append("no-room" if e.returned is None else e.returned)
    return answers


def record(manager: Manager) -> dict[str, Any]:
    """The trace of ``manager``'s history so far, as a JSON-ready dict.

    ``ValueError`` if the history is not all kept, or holds more than the
    ``MAX_STEPS`` requests or answers a trace may hold, or the layout more than
    ``MAX_HINTS`` first hints or sizes (it could not be read back).
    """
    if not manager.history_complete:
        raise ValueError(f"a trace needs every decision, and the arena keeps only its last {manager.history} "
                         f"(history={manager.history})")
    events = manager.events
    requests, answers = [group[0].request for group in per_request(events)], _answers_of(manager)
    for what, steps in (("requests", requests), ("answers", answers)):
        if len(steps) > MAX_STEPS:
            raise ValueError(f"a trace holds at most {MAX_STEPS:,} {what}, and this arena's history has {len(steps):,}")
    layout = manager.layout
    for what in ("first_hints", "first_sizes"):
        if len(getattr(layout, what)) > MAX_HINTS:
            raise ValueError(f"a trace's layout holds at most {MAX_HINTS:,} {what}, and this arena's layout has "
                             f"{len(getattr(layout, what)):,}")
    named = [k for k, v in LAYOUTS.items() if v == layout]
    version, start = manager._trace_start()
    return {
        "format": FORMAT,
        "version": version,
        "layout": (named[0] if named else
                   {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(layout).items()}),
        "rule": manager.rule,
        **start,
        "requests": requests,
        "answers": [a if isinstance(a, str) else hex(a) for a in answers],
        "recorded": [
            {"step": e.step, "verdict": e.verdict, "returned": None if e.returned is None else hex(e.returned)}
            for e in events
        ],
    }


def save(manager: Manager, path: str | os.PathLike[str]) -> None:
    """Write ``manager``'s trace to ``path`` (the equivalent of ``Arena.save_trace``)."""
    data = record(manager)  # before the file is created: it may refuse
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
