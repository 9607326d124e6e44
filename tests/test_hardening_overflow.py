"""Overflow: near the top of the space no wrapped comparison ever accepts a region.

Go computes its bounds in uintptr, which wraps at 2**32 on 32-bit: a region
that ends past 4 GiB wraps to a small number and passes ``p + p_size -
arena_start - 1 <= _MaxMem``; ``arena_end + p_size`` at exactly 4 GiB wraps to
0 (Go's ``arena_end <= new_end`` then refuses to try it). The manager uses
exact integers; these tests put regions where the wrap would matter and check
each decision is the one manager.py documents.

A real 32-bit space stops at 0xFFFFE000, so a region at or across 4 GiB cannot
come from the confined layer. ``wide32`` is a scripted layer over this 64-bit
process's real memory that says it is 32-bit but can answer up to 8 GiB: the
regions are really mapped there, as a buggy kernel might answer.
"""
import dataclasses

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.policy.layout import MiB
from arena.spaces import NO_ROOM, ScriptedMemory

FOUR_GIB = 1 << 32
W32 = dataclasses.replace(arena.LAYOUT_32, name="32-bit wide", metadata_size=0, first_sizes=(16 * MiB,))
only_64 = pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="maps at and above 4 GiB")


def wide32(answers):
    s = ScriptedMemory(sysmem.default(), answers)
    s.address_bits, s.limit = 32, 2 * FOUR_GIB
    return s


def go_uintptr_accepts(p, p_size, arena_start, max_mem):
    """Go's 32-bit check, with its wrap: what the model must not copy."""
    return (p + p_size - arena_start - 1) % FOUR_GIB <= max_mem


def free(lo, size):
    return any(a <= lo and lo + size <= b for a, b in sysmem.free_gaps(sysmem.mappings(), 0, 1 << 47))


@only_64
@pytest.mark.parametrize("rule", arena.RULES)
def test_growth_region_across_4_gib_is_rejected(rule):
    across = FOUR_GIB - MiB  # a 256 MiB block from here ends at 4 GiB + 255 MiB
    if not free(across, 256 * MiB) or not free(0xC0000000, 16 * MiB):
        pytest.skip("the range is taken in this process")
    memory = wide32([0xC0000000, across])
    with arena.Arena(W32, rule, memory=memory, start=0xC0000000) as a:
        a.sys_alloc(16 * MiB)
        a.sys_alloc(32 * MiB)  # grows: the kernel answers across 4 GiB
        grow = next(e for e in a.events if e.step == "grow")
        assert grow.returned == across and grow.size == 256 * MiB
        assert go_uintptr_accepts(across, grow.size, a.arena_start, W32.max_mem), "Go would wrap and accept"
        assert grow.verdict == "rejected" and "max_mem" in grow.reason
        assert all(r.end <= FOUR_GIB for r in a.regions)
        assert all(p + n <= FOUR_GIB for p, n in a.allocations)
        assert rule == "legacy" or verify(a) == []


@only_64
@pytest.mark.parametrize("rule", arena.RULES)
def test_fallback_across_4_gib_is_rejected_and_one_ending_exactly_there_is_kept(rule):
    n = 32 * MiB
    p_size = n + W32.page_size
    exact, across = FOUR_GIB - p_size, FOUR_GIB - W32.page_size
    if not free(exact, 2 * p_size):
        pytest.skip("the range is taken in this process")
    if rule == "go1.9":
        # go1.9 falls back when growth finds no room.
        start, layout, growth = 0xC0000000, W32, [NO_ROOM]
    else:
        # Go 1.8 returns nil when growth finds no room: reach the fallback by a
        # growth that would pass 4 GiB instead (not tried, no answer used).
        start, layout, growth = 0xE0000000, dataclasses.replace(W32, growth_step=0x20000000), []
    if not free(start, 16 * MiB):
        pytest.skip("the range is taken in this process")
    memory = wide32([start, *growth, across, *growth, exact])
    with arena.Arena(layout, rule, memory=memory, start=start) as a:
        a.sys_alloc(16 * MiB)
        assert a.sys_alloc(n) is None  # the fallback across 4 GiB is rejected
        crossing = [e for e in a.events if e.step == "fallback"][-1]
        assert crossing.returned == across and crossing.verdict == "fallback-rejected"
        assert go_uintptr_accepts(across, crossing.size, a.arena_start, W32.max_mem), "Go would wrap and accept"
        q = a.sys_alloc(n)
        kept = [e for e in a.events if e.step == "fallback"][-1]
        # Documented in manager.py: Go's uintptr wraps this region's end to 0;
        # exact integers keep it, since it lies inside the 4 GiB space.
        assert kept.returned == exact and kept.verdict == "fallback" and q == exact
        assert a.arena_used == exact + n
        assert all(r.end <= FOUR_GIB for r in a.regions)
        assert all(p + m <= FOUR_GIB for p, m in a.allocations)
        assert rule == "legacy" or verify(a) == []


@pytest.mark.parametrize("rule", arena.RULES)
def test_growth_to_exactly_4_gib_is_not_tried(rule):
    # arena_end 0xF0000000 + a 256 MiB step = 2**32: wraps to 0 in Go, which then does not try it.
    layout = dataclasses.replace(arena.LAYOUT_32, metadata_size=0, first_sizes=(256 * MiB,), fallback=False)
    memory = ScriptedMemory(sysmem.default(address_bits=32))
    with arena.Arena(layout, rule, memory=memory, start=0xE0000000) as a:
        if a.arena_end != 0xF0000000:
            pytest.skip(f"the first reservation did not land at its start here: {a!r}")
        a.sys_alloc(16 * MiB)
        calls = len(memory.calls)
        assert a.sys_alloc(248 * MiB) is None  # round(248 MiB + 8 KiB, 256 MiB) = 256 MiB
        grow = a.events[-2] if a.events[-1].step == "fallback" else a.events[-1]
        assert grow.verdict == "beyond-max-mem" and a.arena_end + grow.size == FOUR_GIB
        assert [c for c in memory.calls[calls:] if c.op == "reserve"] == [], "it was tried"
        assert a.sys_alloc(240 * MiB) is not None  # just below: fits the block


@pytest.mark.parametrize("n", [0xFFFFE000, 0xFFFFC000, 0xFFFFA000, FOUR_GIB - 256 * MiB, 0xF0000000])
def test_requests_near_4_gib_are_none_not_an_error(n):
    # The fallback for these needs round(n) + 8 KiB: as much as or more than the space.
    for rule in arena.RULES:
        with arena.Arena(arena.LAYOUT_32, rule) as a:
            assert a.sys_alloc(n) is None
            assert a.sys_alloc(8192) is not None and verify(a) == []


@only_64
@pytest.mark.parametrize("n", [2**64 - 2**28, 2**64 - 16 * MiB, 2**63, 2**47, 2**47 - 8192])
def test_requests_near_2_64_are_none_not_an_error(n):
    layout = dataclasses.replace(arena.LAYOUT_64, max_mem=2**64 - 1, first_sizes=(16 * MiB,), growth_step=16 * MiB)
    memory = ScriptedMemory(sysmem.default())
    with arena.Arena(layout, memory=memory) as a:
        calls = len(memory.calls)
        assert a.sys_alloc(n) is None
        assert [c for c in memory.calls[calls:] if c.op == "reserve" and c.size >= 2**47] == []
        assert a.sys_alloc(8192) is not None and verify(a) == []


def test_os_layer_bounds_at_the_top():
    m32 = sysmem.default(address_bits=32)
    page = m32.page_size
    top = m32.limit
    if m32.confined:
        p = m32.reserve_exact(top - 2 * page, 2 * page)  # ends exactly at the limit
        assert p == top - 2 * page
        m32.release(p, 2 * page)
    for bad in [(top, page), (top - page, 2 * page), (FOUR_GIB - page, page), (FOUR_GIB, page)]:
        with pytest.raises(ValueError):
            m32.reserve_exact(*bad)
    native = sysmem.default()
    wrap = 1 << sysmem.NATIVE_BITS
    for op in (native.reserve_exact, native.commit, native.decommit, native.release):
        with pytest.raises(ValueError):
            op(wrap - page, 2 * page)  # would wrap past 2**bits
        with pytest.raises(ValueError):
            op(wrap - page, page)  # ends exactly at 2**bits: beyond the task size
    with pytest.raises(ValueError, match="wraps"):
        native.reserve(wrap - page, 2 * page)
