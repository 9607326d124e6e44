"""verify() finds each kind of violation it names: none of its checks is vacuous."""
import pytest

import arena
from arena import sysmem
from arena.harness.check import InvariantViolation, verify, verify_or_raise
from arena.interface import demo

MiB = 1 << 20


@pytest.fixture
def a():
    with arena.Arena(arena.LAYOUT_32, start=0x80000000, initial_size=16 * MiB) as a:
        a.sys_alloc(MiB)
        a.sys_alloc(2 * MiB)
        yield a


def kinds(a):
    return [v.kind for v in verify(a)]


def test_a_sound_arena_has_no_violation(a):
    assert verify(a) == []
    verify_or_raise(a)


def test_decrease_of_arena_used_is_found():
    r = demo.replay_20259("legacy")
    with r.arena:
        assert "arena_used-decreased" in kinds(r.arena)
        with pytest.raises(InvariantViolation, match="arena_used-decreased") as info:
            verify_or_raise(r.arena)
        assert info.value.violations == verify(r.arena)


def test_allocation_no_longer_read_write_is_found(a):
    p, size = a.allocations[0]
    a.memory.decommit(p, size)  # behind the arena's back
    assert kinds(a) == ["not-mapped"]


def test_region_unmapped_behind_the_arenas_back_is_found(a):
    region = a.regions[0]
    a.memory.release(region.start, region.size)
    assert set(kinds(a)) == {"not-mapped", "unmapped"}


def test_overlapping_allocations_are_found(a):
    p, size = a.allocations[1]
    a._allocations.append((p + size - a.layout.page_size, a.layout.page_size))  # tamper: a double hand-out
    assert kinds(a) == ["overlap"]


def test_allocation_outside_the_heap_and_outside_every_region_is_found(a):
    # Tamper: an allocation in memory the arena never mapped.
    memory = sysmem.default(address_bits=32)
    p = memory.reserve(0, MiB)
    try:
        memory.commit(p, MiB)
        a._allocations.append((p, MiB))
        assert set(kinds(a)) == {"not-heap", "foreign"} or set(kinds(a)) == {"foreign"}
    finally:
        memory.release(p, MiB)


def test_region_the_arena_did_not_make_is_found(a):
    memory = sysmem.default(address_bits=32)
    p = memory.reserve(0, MiB)
    try:
        a._regions.append(arena.Region(p, MiB, "reservation"))  # tamper: a region it never reserved
        assert kinds(a) == ["foreign"]
    finally:
        a._regions.pop()
        memory.release(p, MiB)
