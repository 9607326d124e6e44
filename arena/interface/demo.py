"""Go issue 20259 replayed with real memory, under each rule.

On the 32-bit layout the replay uses the addresses from the issue. On the
64-bit layout the same scenario is shifted to the first 64-bit hint: the low
answer lies as far below the arena as it did on 32-bit. Under ``"go1.11"``
(Go 1.11's sparse heap arenas, ``HeapArenas``) the same kernel answers meet
the design that replaced the linear arena.
"""
from __future__ import annotations

from .. import sysmem
from ..harness.run import PATTERN, Replay, drive
from ..managers import RELEASE, Arena, HeapArenas
from ..policy.layout import LAYOUT_32, Layout, MiB
from ..spaces import ScriptedMemory

__all__ = ["ARENA_AT", "ARENA_SIZE", "LAST", "LIVE", "LOW_ANSWER", "PATTERN", "Replay", "explain", "replay_20259", "scenario"]

# The trace from the issue (android/arm, Go 1.8.1): an arena at 0x70000000 ending
# at 0x78000000; the next 256 MiB reservation, hinted at 0x78000000, came back at
# 0x10000000.
ARENA_AT = 0x70000000
ARENA_SIZE = 128 * MiB
LOW_ANSWER = 0x10000000
# Live allocations fill all but 8 MiB of the arena, under the 16 MiB go1.9 may leave
# unused when it jumps to a new block; the last request then needs the 256 MiB reservation.
LIVE = (1 * MiB, 7 * MiB, 16 * MiB, 32 * MiB, 64 * MiB)
LAST = 16 * MiB


def scenario(layout: Layout) -> tuple[int, int]:
    """``(arena start, low answer)`` for ``layout``: the issue's addresses, or shifted to 64-bit's first hint."""
    if layout.address_bits == 32:
        return ARENA_AT, LOW_ANSWER
    start = layout.first_hints[0] if layout.first_hints else ARENA_AT
    return start, start - (ARENA_AT - LOW_ANSWER)


def replay_20259(rule: str, layout: Layout = LAYOUT_32, memory: sysmem.Memory | None = None) -> Replay:
    """Run the 20259 scenario under ``rule``; the caller closes ``replay.arena``."""
    inner = memory if memory is not None else sysmem.default(address_bits=layout.address_bits)
    start, low = scenario(layout)
    if rule == RELEASE:
        return drive(_heap_arenas(layout, inner, start, low), [*LIVE, LAST])
    if layout.address_bits == 32:
        # The first reservation asks the kernel; the growth reservation is answered low.
        scripted = ScriptedMemory(inner, [None, low])
        arena = Arena(layout, rule, memory=scripted, start=start, initial_size=ARENA_SIZE)
    else:
        # The arena refuses a start above max_mem, so the first hint is taken
        # through Go's hint ladder, placed exactly (or failing loudly if taken).
        scripted = ScriptedMemory(inner, [start, low])
        arena = Arena(layout, rule, memory=scripted, initial_size=ARENA_SIZE)
    return drive(arena, [*LIVE, LAST])


def _heap_arenas(layout: Layout, inner: sysmem.Memory, start: int, low: int) -> HeapArenas:
    """Go 1.11's heap arenas where the linear arena was; the reservation after it is answered low."""
    if layout.address_bits == 32:
        # The metadata and the pre-reservation (hinted at the arena's start) ask
        # the kernel; the live requests fit the pre-reservation. The last one's
        # hint, at its end, is answered low, and so is the aligned reservation
        # tried when no hint is left: the kernel's top-down search finds the same spot.
        scripted = ScriptedMemory(inner, [None, None, low, low])
        return HeapArenas(layout, scripted, start=start, initial_size=ARENA_SIZE)
    # One 64 MiB heap arena per request from the first hint up; the last one's
    # hint is answered low, and the next hint is tried.
    scripted = ScriptedMemory(inner, [start, None, None, None, None, low])
    return HeapArenas(layout, scripted)


# What each rule does with the low answer, in the demo's closing words.
_ON_32_BIT = {
    "legacy": "legacy (Go before commit e5a5c03) takes the low region and moves arena_used down to it, below live "
              "memory: the allocations above it are no longer heap (Go issue 20259).",
    "fixed": "fixed (Go commit e5a5c03) refuses the low region, gives it back and falls back to a mapping of the "
             "request's size wherever the kernel likes: the kernel searches from the top down, so it lands near the "
             "top of the address space, and arena_used and arena_end jump up to its end (see fallback above).",
    "go1.9": "go1.9 takes the low region but moves only its allocation cursor, arena_alloc: arena_used stays.",
    "strict": "strict takes only the exact hint, as jemalloc and tcmalloc do, and falls back as fixed does "
              "(arena_used jumps up to the fallback's end; arena_end stays, as in Go 1.9).",
    RELEASE: "go1.11 (sparse heap arenas) gives the low answer back (it was not at its hint), then, with no hint "
             "left, takes it as a new aligned heap arena: there are no bounds to lower, and nothing is lost.",
}
_ON_64_BIT = {
    "legacy": "legacy refuses it: the region is below arena_start.",
    "go1.9": "go1.9 refuses it: the region is below arena_start.",
    "fixed": "fixed refuses it: the region is not above arena_end.",
    "strict": "strict refuses it: the region is not at the hint.",
    RELEASE: "go1.11 (sparse heap arenas) gives the low answer back (it was not at its hint) and takes the next hint.",
}


def explain(layout: Layout, rules: tuple[str, ...] | None = None) -> tuple[str, str]:
    """The demo's opening and closing words for ``layout``: paragraphs, each one line; the closing
    words speak only of ``rules`` (default: every built-in rule and go1.11)."""
    start, low = scenario(layout)
    head = (
        f"arena at {start:#x}..{start + ARENA_SIZE:#x}; the 256 MiB reservation hinted at "
        f"arena_end is answered at {low:#x} (really mapped there)"
    )
    words = _ON_32_BIT if layout.address_bits == 32 else _ON_64_BIT
    if layout.address_bits == 32:
        return head, "\n".join(words[r] for r in (rules or words) if r in words)
    head = (
        f"64-bit: the 32-bit scenario shifted to the first hint {start:#x}; the low answer is "
        f"{ARENA_AT - LOW_ANSWER:#x} below arena_start, as on 32-bit.\n" + head
    )
    linear = [r for r in (rules or words) if r != RELEASE]
    why = (
        "On 64-bit arena_start is where the first reservation begins, so a low answer is below arena_start "
        "(between arena_start and arena_used lies the arena's own reservation, which the kernel never hands out "
        "twice). The bug needed 32-bit Go's arena_start = 0."
    )
    rejects = [words[r] for r in linear if r in words]
    after = ["With no fallback on 64-bit the request fails (out-of-memory), and arena_used never drops."] if linear else []
    release = [words[RELEASE]] if RELEASE in (rules or words) else []
    return head, "\n".join(([why] if linear else []) + rejects + after + release)
