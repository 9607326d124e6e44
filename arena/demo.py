"""Go issue 20259 replayed with real memory, under each rule, side by side."""
from __future__ import annotations

import dataclasses

from . import sysmem
from .layout import LAYOUT_32, Layout, MiB
from .manager import RULES, Arena
from .testing import ScriptedMemory, peek, poke
from .check import verify

# The trace from the issue (android/arm, Go 1.8.1): an arena at 0x70000000 ending
# at 0x78000000; the next 256 MiB reservation, hinted at 0x78000000, came back at
# 0x10000000.
ARENA_AT = 0x70000000
ARENA_SIZE = 128 * MiB
LOW_ANSWER = 0x10000000
# Live allocations fill all but 8 MiB of the arena, under go1.9's 16 MiB strand
# limit; the last request then needs the 256 MiB reservation.
LIVE = (1 * MiB, 7 * MiB, 16 * MiB, 32 * MiB, 64 * MiB)
LAST = 16 * MiB
PATTERN = b"live heap object"


@dataclasses.dataclass
class Replay:
    """One rule's run: the arena (still open) and what each request returned."""

    arena: Arena
    requests: list[int]
    returned: list[int | None]

    @property
    def lost(self) -> list[int]:
        """Allocations handed out that the arena no longer counts as heap."""
        return [p for p in self.returned if p is not None and not self.arena.contains(p)]

    def intact(self) -> bool:
        return all(peek(p, len(PATTERN)) == PATTERN for p in self.returned[: len(LIVE)])


def replay_20259(rule: str, layout: Layout = LAYOUT_32, memory: sysmem.Memory | None = None) -> Replay:
    """Run the 20259 scenario under ``rule``; the caller closes ``replay.arena``."""
    inner = memory if memory is not None else sysmem.default(address_bits=layout.address_bits)
    # The first reservation asks the kernel; the growth reservation is answered low.
    scripted = ScriptedMemory(inner, [None, LOW_ANSWER])
    a = Arena(layout, rule, memory=scripted, start=ARENA_AT, initial_size=ARENA_SIZE)
    replay = Replay(a, [], [])
    try:
        for n in LIVE:
            p = a.sys_alloc(n)
            replay.requests.append(n)
            replay.returned.append(p)
            poke(p, PATTERN)
        replay.requests.append(LAST)
        replay.returned.append(a.sys_alloc(LAST))
    except BaseException:
        a.close()
        raise
    return replay


def _cells(a: Arena) -> list[str]:
    """The decisions each request caused, in a few words."""
    cells, words = [], []
    for e in a.events:
        if e.step == "first":
            continue
        at = f" {e.returned:#x}" if e.returned is not None else ""
        flag = " LOWERS used" if e.after.arena_used < e.before.arena_used else ""
        words.append(f"{e.verdict}{at}{flag}")
        # A request ends in a commit, a fallback or out of memory.
        if e.step in ("commit", "fallback"):
            cells.append("; ".join(words))
            words = []
    return cells


def summary(replay: Replay) -> dict[str, object]:
    """What the table shows of one run, taken while its arena is still open."""
    a = replay.arena
    violations = verify(a)
    return {
        "cells": _cells(a),
        "arena_used after": f"{a.arena_used:#x}",
        "arena_alloc after": f"{a.arena_alloc:#x}",
        "arena_end after": f"{a.arena_end:#x}",
        "allocations lost": (f"{len(replay.lost)} of {len(replay.returned)}: " + ", ".join(f"{p:#x}" for p in replay.lost))
        if replay.lost else "none",
        "verify": f"{len(violations)} violations" if violations else "sound",
        "live bytes read back": "intact" if replay.intact() else "CHANGED",
        "violations": violations,
    }


def render(requests: list[int], summaries: dict[str, dict[str, object]]) -> str:
    """The side-by-side table the demo prints: a column per rule."""
    rules = list(summaries)
    rows = [("", rules)]
    for i, n in enumerate(requests):
        rows.append((f"sys_alloc({n // MiB} MiB)", [summaries[r]["cells"][i] for r in rules]))
    for label in ("arena_used after", "arena_alloc after", "arena_end after", "allocations lost", "verify", "live bytes read back"):
        rows.append((label, [summaries[r][label] for r in rules]))
    widths = [max(len(row[0]) for row in rows)]
    widths += [max(len(row[1][i]) for row in rows) for i in range(len(rules))]
    return "\n".join(
        "  ".join([label.ljust(widths[0])] + [c.ljust(w) for c, w in zip(cells, widths[1:])]).rstrip()
        for label, cells in rows
    )


def main(rules: tuple[str, ...] = RULES, layout: Layout = LAYOUT_32) -> int:
    memory = sysmem.default(address_bits=layout.address_bits)
    print(f"Go issue 20259 replayed with real memory: {layout.name} layout, {memory!r}")
    print(f"arena at {ARENA_AT:#x}..{ARENA_AT + ARENA_SIZE:#x}; the 256 MiB reservation hinted at "
          f"arena_end is answered at {LOW_ANSWER:#x} (really mapped there)\n")
    summaries = {}
    for rule in rules:
        replay = replay_20259(rule, layout, memory)
        with replay.arena:
            summaries[rule] = summary(replay)
    print(render([*LIVE, LAST], summaries))
    for rule, s in summaries.items():
        for v in s["violations"]:
            print(f"  {rule}: {v}")
    print("\nlegacy lowers arena_used below live memory (Go issue 20259); fixed rejects the low region"
          " and falls back; go1.9 moves arena_alloc and leaves arena_used alone.")
    return 0
