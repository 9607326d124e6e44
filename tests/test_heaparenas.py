"""Go 1.11's sparse heap arenas against real memory: each branch of (*mheap).sysAlloc, on both layouts.

Every kernel answer here is a real mapping: the kernel's own, a blocker that
makes it refuse a hint (``Crowd``), or a scripted answer really mapped at its
address (``ScriptedMemory``). ``NO_ROOM`` and scripted failures stand for the
kernel saying no.
"""
import dataclasses
import errno
import threading

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.managers.heaparenas import PRERESERVATION_SIZES, metadata_size
from arena.policy.layout import MiB
from arena.spaces import NO_ROOM, Crowd, ScriptedMemory, peek, poke

L32, L64 = arena.LAYOUT_32, arena.LAYOUT_64
LAYOUTS = [L32, pytest.param(L64, marks=pytest.mark.needs_64_bit)]
ids = ["32", "64"]
# Where 64-bit tests look for free space: far from the process's own mappings.
WINDOW = {32: (0x20000000, 0xE0000000), 64: (0x100000000000, 0x200000000000)}


def free_aligned(layout, size, count=1):
    """``count`` free, heap-arena-aligned ranges of ``size`` bytes, each with a free arena either side."""
    memory = sysmem.default(address_bits=layout.address_bits)
    align = layout.heap_arena_size
    lo, hi = WINDOW[layout.address_bits]
    found = []
    for g0, g1 in sysmem.free_gaps(sysmem.mappings(), max(lo, memory.lowest), min(hi, memory.limit)):
        a = -(-g0 // align) * align + align
        while a + size + align <= g1 and len(found) < count:
            found.append(a)
            a += size + 2 * align
    assert len(found) == count, f"no room for {count} free ranges of {size:#x} bytes"
    return found


def heap(layout, start, answers=None, **kw):
    """HeapArenas with one hint at ``start`` (32-bit: no pre-reservation; its metadata asks the kernel)."""
    memory = sysmem.default(address_bits=layout.address_bits)
    if answers is not None:
        memory = ScriptedMemory(memory, ([None] if layout.address_bits == 32 else []) + list(answers))
    if layout.address_bits == 32:
        kw.setdefault("initial_size", 0)
    return arena.HeapArenas(layout, memory=memory, start=start, **kw)


def steps(h, after=0):
    return [(e.step, e.verdict) for e in h.events[after:] if e.step != "first"]


def mapped(start, size):
    return any(m.start < start + size and start < m.end for m in sysmem.mappings())


# -- the hints (malloc.go L532-567) --------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_a_hint_honoured_grows_up_in_whole_arenas(layout):
    size = layout.heap_arena_size
    (x,) = free_aligned(layout, 4 * size)
    with heap(layout, x) as h:
        p = h.sys_alloc(layout.page_size)  # rounded to one heap arena
        q = h.sys_alloc(size + layout.page_size)  # two
        assert (p, q) == (x, x + size)
        assert h.allocations == [(x, size), (x + size, 2 * size)]
        assert h.hints == [(x + 3 * size, False)]
        assert h.arenas == [x, x + size, x + 2 * size]
        assert steps(h) == [("hint", "honoured"), ("commit", "committed")] * 2
        assert h.contains(x) and h.contains(x + 3 * size - 1) and not h.contains(x + 3 * size) and not h.contains(x - 1)
        poke(x + 3 * size - 8, b"lastword")
        assert peek(x + 3 * size - 8, 8) == b"lastword"
        assert verify(h) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_a_missed_hint_is_released_and_dropped(layout):
    size = layout.heap_arena_size
    (x,) = free_aligned(layout, size)
    with Crowd(sysmem.default(address_bits=layout.address_bits)) as crowd:
        crowd.occupy(x + size - layout.page_size, layout.page_size)  # the hinted range is not free
        with heap(layout, x, []) as h:
            p = h.sys_alloc(size)
            hinted = h.events[-3]
            assert (hinted.step, hinted.verdict, hinted.hint) == ("hint", "missed", x)
            assert hinted.returned != x
            # Given back at once (the kernel may well hand the same range to the aligned reservation next).
            answered = [c.op for c in h.memory.calls if c.addr == hinted.returned and c.size == size]
            assert answered[:1] == ["release"]
            assert hinted.after.hints == 0
            assert h.stats.rejections == 1 and h.stats.released_after_rejection >= size
            # With no hint left, an aligned region anywhere: the next branch.
            assert steps(h) == [("hint", "missed"), ("aligned", h.events[-2].verdict), ("commit", "committed")]
            assert p % size == 0 and h.contains(p) and verify(h) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_no_room_at_a_hint_drops_it_and_the_next_is_tried(layout):
    size = layout.heap_arena_size
    x, y = free_aligned(layout, size, 2)
    hints = dataclasses.replace(layout, first_hints=(x, y))
    memory = ScriptedMemory(sysmem.default(address_bits=layout.address_bits), [NO_ROOM])
    with arena.HeapArenas(hints, memory=memory) as h:
        assert h.hints == [(x, False), (y, False)]
        assert h.sys_alloc(size) == y
        assert steps(h) == [("hint", "no-room"), ("hint", "honoured"), ("commit", "committed")]
        assert h.hints == [(y + size, False)] and verify(h) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_when_every_hint_fails_an_unaligned_answer_is_trimmed_and_two_hints_are_added(layout):
    size, page = layout.heap_arena_size, layout.page_size
    (x,) = free_aligned(layout, 3 * size)
    u = x + page  # unaligned: sysReserveAligned reserves one arena more and trims both ends
    with heap(layout, x + 2 * size, [NO_ROOM, u]) as h:
        v = h.sys_alloc(size)
        assert v == x + size
        aligned = h.events[-2]
        assert (aligned.step, aligned.verdict, aligned.hint, aligned.size, aligned.returned) == ("aligned", "trimmed", 0, 2 * size, u)
        assert h.allocations == [(v, size)] and h.regions[-1] == arena.Region(v, size, "heap")
        assert not mapped(u, v - u) and not mapped(v + size, u + 2 * size - v - size)  # both ends released
        # L586-592: down from its start, then up from its end, which is tried first.
        assert h.hints == [(v + size, False), (v, True)]
        assert h.stats.noncontiguous == 1 and verify(h) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_an_aligned_answer_is_kept_whole(layout):
    size = layout.heap_arena_size
    (x,) = free_aligned(layout, 3 * size)
    with heap(layout, x + 2 * size, [NO_ROOM, x]) as h:
        assert h.sys_alloc(size) == x
        assert h.events[-2].verdict == "reserved" and h.allocations == [(x, 2 * size)]
        assert h.arenas == [x, x + size] and h.hints == [(x + 2 * size, False), (x, True)]
        assert verify(h) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_a_down_hint_grows_down(layout):
    size = layout.heap_arena_size
    (x,) = free_aligned(layout, 6 * size)
    v = x + 3 * size
    with Crowd(sysmem.default(address_bits=layout.address_bits)) as crowd:
        with heap(layout, x + 5 * size, [NO_ROOM, v]) as h:
            assert h.sys_alloc(size) == v  # aligned: [v, v + 2 arenas), hints up at v + 2 arenas, down at v
            crowd.occupy(v + 2 * size, layout.page_size)  # the up hint is taken
            mark = len(h.events)
            assert h.sys_alloc(size) == v - size
            assert steps(h, mark) == [("hint", "missed"), ("hint", "honoured"), ("commit", "committed")]
            assert h.hints == [(v - size, True)]
            assert h.sys_alloc(2 * size) == v - 3 * size
            assert h.hints == [(v - 3 * size, True)] and verify(h) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_a_down_hint_that_would_pass_zero_wraps_and_is_not_asked(layout):
    size = layout.heap_arena_size
    memory = sysmem.default(address_bits=layout.address_bits)
    low = -(-memory.lowest // size) * size  # the lowest aligned address this process may map
    if any(m.start < low + 2 * size and low < m.end for m in sysmem.mappings()):
        pytest.skip(f"[{low:#x}, {low + 2 * size:#x}) is in use in this process")
    (x,) = free_aligned(layout, size)
    with heap(layout, x, [NO_ROOM, low, NO_ROOM]) as h:
        assert h.sys_alloc(size) == low  # kept whole: hints up at low + 2 arenas (no room), down at low
        mark = len(h.events)
        n = low + size  # more than lies below the down hint
        p = h.sys_alloc(n)
        wrapped = h.events[mark + 1]
        assert (wrapped.step, wrapped.verdict, wrapped.returned) == ("hint", "wraps", None)
        assert wrapped.hint == (low - n) % (1 << layout.address_bits)
        # Not asked: the kernel saw the up hint and the aligned reservation only.
        asked = [c for c in h.memory.calls if c.op == "reserve"]
        assert [c.addr for c in asked[-2:]] == [low + 2 * size, 0]
        assert h.contains(p) and verify(h) == []


def test_32_bit_an_up_hint_at_the_top_wraps_and_is_not_asked():
    top_arena = (1 << 32) - L32.heap_arena_size
    with heap(L32, top_arena, []) as h:
        p = h.sys_alloc(L32.page_size)
        assert steps(h)[0] == ("hint", "wraps")
        assert all(c.addr != top_arena for c in h.memory.calls)
        assert p is not None and h.contains(p) and verify(h) == []


@pytest.mark.needs_64_bit
def test_64_bit_a_hint_outside_the_addressable_heap_is_not_asked():
    # amd64: arenaIndex(p) = (p + 2**47) / 64 MiB must stay below 2**22, so p + n - 1 < 2**47.
    hint = (1 << 47) - L64.heap_arena_size
    memory = ScriptedMemory(sysmem.default(address_bits=64))
    with arena.HeapArenas(L64, memory=memory, start=hint) as h:
        p = h.sys_alloc(2 * L64.heap_arena_size)
        assert steps(h)[0] == ("hint", "outside")
        assert all(c.addr != hint for c in memory.calls)
        assert h.contains(p) and verify(h) == []


def test_32_bit_mips_heap_bits_put_the_upper_half_outside_the_heap():
    # Go 1.11 gives mips(le) a 31-bit heap: a hint at 2 GiB is outside it, and not asked.
    mips = dataclasses.replace(L32, name="mips", heap_addr_bits=31)
    assert mips.arena_bits == 9 and mips.max_alloc == (1 << 31) - 1
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, NO_ROOM])
    with arena.HeapArenas(mips, memory=memory, start=0x80000000, initial_size=0) as h:
        assert h.sys_alloc(mips.page_size) is None
        assert steps(h) == [("hint", "outside"), ("aligned", "no-room"), ("commit", "out-of-memory")]
        assert not h.contains(0x80000000)


@pytest.mark.needs_64_bit
def test_64_bit_a_hint_that_ends_at_the_top_of_the_heap_is_asked():
    # The last Go 1.11 hint, 0x7fc0<<32, with 1 GiB ends exactly at 2**47: inside the 48-bit
    # heap, so the kernel is asked. With 4-level page tables its last page is past the
    # kernel's top and the hint is missed; a kernel with 5-level tables may honour it.
    hint = 0x7FC000000000
    assert hint in L64.first_hints
    with arena.HeapArenas(L64, start=hint) as h:
        p = h.sys_alloc(1 << 30)
        assert h.events[1].hint == hint and steps(h)[0] in (("hint", "missed"), ("hint", "honoured"))
        assert h.contains(p) and verify(h) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_no_hint_and_no_room_is_out_of_memory(layout):
    (x,) = free_aligned(layout, layout.heap_arena_size)
    with heap(layout, x, [NO_ROOM, NO_ROOM]) as h:
        assert h.sys_alloc(layout.page_size) is None
        assert steps(h) == [("hint", "no-room"), ("aligned", "no-room"), ("commit", "out-of-memory")]
        assert h.hints == [] and h.allocations == [] and verify(h) == []


# -- the checks that throw (L595-616, L634-636, sysMap) ----------------------------


def _region_count(h):
    return len(h.regions), h.state.arenas


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_throw_misrounded_allocation(layout):
    (x,) = free_aligned(layout, 2 * layout.heap_arena_size)
    odd = dataclasses.replace(layout, first_hints=(x + layout.page_size,))  # honoured, not aligned
    with arena.HeapArenas(odd) as h:
        with pytest.raises(arena.GoThrow, match="misrounded allocation in sysAlloc"):
            h.sys_alloc(layout.page_size)
        assert steps(h) == [("hint", "honoured"), ("commit", "throw")]
        assert not mapped(x + layout.page_size, layout.heap_arena_size) and h.allocations == []
        assert h.hints == [(x + layout.page_size, False)]  # not advanced


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_throw_base_outside_usable_address_space(layout):
    # A heap narrower than the space (Go 1.11 on mips: 31 bits; here 46 bits on 64-bit, no
    # offset): the kernel's own answer, placed top-down high in the space, lies outside it.
    bits = 31 if layout.address_bits == 32 else 46
    narrow = dataclasses.replace(layout, name="narrow", heap_addr_bits=bits, arena_base_offset=0)
    with heap(narrow, 1 << (bits - 1), [NO_ROOM, None]) as h:
        with pytest.raises(arena.GoThrow, match="base outside usable address space") as info:
            h.sys_alloc(layout.page_size)
        assert "memory reservation exceeds address space limit" in str(info.value)
        answered = h.events[-2]
        assert answered.step == "aligned" and answered.returned >= 1 << bits
        assert not mapped(answered.returned, answered.size)  # given back
        assert h.allocations == [] and h.hints == []
        assert [v.kind for v in verify(h)] == ["throw"]  # sound, but Go would have died


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_throw_end_outside_usable_address_space(layout):
    bits = 31 if layout.address_bits == 32 else 46
    size = layout.heap_arena_size
    narrow = dataclasses.replace(layout, name="narrow", heap_addr_bits=bits, arena_base_offset=0)
    last = (1 << bits) - size  # the last arena inside; kept whole, the region ends one arena past
    if mapped(last, 2 * size):
        pytest.skip(f"[{last:#x}, {last + 2 * size:#x}) is in use in this process")
    with heap(narrow, last, [NO_ROOM, last]) as h:
        with pytest.raises(arena.GoThrow, match="end outside usable address space"):
            h.sys_alloc(size)
        assert not mapped(last, 2 * size) and h.allocations == [] and h.hints == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_throw_arena_already_initialized(layout):
    # Only if the heap's own mapping is taken away behind its back can the kernel
    # hand the same arena out again; Go throws rather than register it twice.
    size = layout.heap_arena_size
    (x,) = free_aligned(layout, 3 * size)
    with heap(layout, x, [None, NO_ROOM, x]) as h:
        assert h.sys_alloc(size) == x
        h.memory.release(x, size)  # behind the heap's back
        with pytest.raises(arena.GoThrow, match="arena already initialized"):
            h.sys_alloc(size)
        assert not mapped(x, 2 * size)  # the second answer was given back
        assert h.state.arenas == 1 and h.allocations == [(x, size)]
        assert [v.kind for v in verify(h)] == ["throw", "not-mapped", "index-unmapped", "unmapped"]


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
@pytest.mark.parametrize("code, words", [(errno.ENOMEM, "runtime: out of memory"), (errno.EACCES, "cannot map pages in arena address space")])
def test_throw_when_sysmap_fails(layout, code, words):
    (x,) = free_aligned(layout, 2 * layout.heap_arena_size)
    with heap(layout, x, []) as h:
        h.memory.fail_next("commit", code)
        before = _region_count(h)
        with pytest.raises(arena.GoThrow, match=words):
            h.sys_alloc(layout.page_size)
        assert _region_count(h) == before and not mapped(x, layout.heap_arena_size)
        assert h.hints == [(x, False)]
        assert h.sys_alloc(layout.page_size) == x  # still usable
        assert [v.kind for v in verify(h)] == ["throw"]


# -- 32-bit mallocinit (L445-510) ---------------------------------------------


def test_32_bit_metadata_then_the_pre_reservation_ladder():
    size = L32.heap_arena_size
    (x,) = free_aligned(L32, 128 * MiB + size)
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, NO_ROOM, NO_ROOM, None])
    with arena.HeapArenas(L32, memory=memory, start=x) as h:
        first = [(e.verdict, e.hint, e.size) for e in h.events if e.step == "first"]
        meta = metadata_size(L32)
        assert meta == 258 * MiB  # 1024 arenas x (256 KiB bitmap + 512 span pointers)
        assert first == [("reserved", 0, meta)] + [("no-room", x, s + size) for s in PRERESERVATION_SIZES[:2]] + [
            ("reserved", x, 128 * MiB + size), ("hints", None, 0)]
        assert [r.role for r in h.regions] == ["metadata", "prereserved"]
        assert h.hints == [(x + 128 * MiB + size, False)]
        # The pre-reservation serves first, mapped as it goes; what is not handed out is not heap.
        p = h.sys_alloc(L32.page_size)
        assert p == x and h.contains(p) and not h.contains(x + size)
        assert h.state.prereserved_next == x + size
        q = h.sys_alloc(128 * MiB)
        assert q == x + size and h.state.prereserved_next == h.state.prereserved_end
        # Used up: the hint at its end is next.
        assert h.sys_alloc(size) == x + 128 * MiB + size
        assert steps(h)[-2:] == [("hint", "honoured"), ("commit", "committed")] and verify(h) == []


def test_32_bit_no_room_for_anything_leaves_one_hint_and_no_pre_reservation():
    memory = ScriptedMemory(sysmem.default(address_bits=32), [NO_ROOM] * 4)
    with arena.HeapArenas(L32, memory=memory, start=0x40000000) as h:
        assert h.regions == [] and h.hints == [(0x40000000, False)]
        assert [e.verdict for e in h.events] == ["no-room"] * 4 + ["hints"]


def test_32_bit_first_hint_is_above_the_binary_the_brk_and_the_metadata():
    with arena.HeapArenas(L32, initial_size=0) as h:
        meta = h.regions[0]
        limit = h.memory.limit
        p = max([x for x in (sysmem.program_extent(sysmem.mappings())[0], sysmem.program_break()) if x < limit], default=0)
        if meta.start <= p < meta.end:
            p = meta.end
        want = -(-(p + (256 << 10)) // L32.heap_arena_size) * L32.heap_arena_size % (1 << 32)
        assert h.hints == [(want, False)]


# -- the index and contains (mheap.go L417-523) ---------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_a_two_level_index_finds_what_it_registered(layout):
    # Go 1.11 uses an L1 map on 64-bit Windows (6 bits); Linux has none. Both index the same arenas.
    size = layout.heap_arena_size
    (x,) = free_aligned(layout, 3 * size)
    two = dataclasses.replace(layout, name="two-level", arena_l1_bits=6)
    with heap(two, x) as h:
        h.sys_alloc(2 * size)
        assert sum(l2 is not None for l2 in h._index) == 1 and len(h._index) == 64
        assert h.arenas == [x, x + size] and h.contains(x + 2 * size - 1) and not h.contains(x + 2 * size)
        assert verify(h) == []


@pytest.mark.parametrize("addr", [-1, 1 << 64, 1 << 80])
def test_contains_is_false_outside_the_space(addr):
    with arena.HeapArenas(L32, start=0x40000000, initial_size=0) as h:
        assert h.contains(addr) is False


@pytest.mark.parametrize("addr", [1.0, "0x1000", None])
def test_contains_needs_an_integer(addr):
    with arena.HeapArenas(L32, start=0x40000000, initial_size=0) as h:
        with pytest.raises(TypeError, match="addr must be an int"):
            h.contains(addr)


# -- bad input, lifetime, threads ----------------------------------------------


@pytest.mark.parametrize(
    "n, exc, words",
    [(0, ValueError, "positive"), (-8192, ValueError, "positive"), (4096, ValueError, "multiple of the arena page"),
     (1.5, TypeError, "must be an int"), ("8192", TypeError, "must be an int"), (1 << 33, ValueError, "max_alloc")],
)
def test_bad_sys_alloc_sizes(n, exc, words):
    with arena.HeapArenas(L32, start=0x40000000, initial_size=0) as h:
        with pytest.raises(exc, match=words):
            h.sys_alloc(n)
        assert h.allocations == [] and h.state.hints == 1


@pytest.mark.parametrize(
    "layout, kwargs, exc, words",
    [
        (L32, {"start": 0x40002000}, ValueError, "not aligned to the heap arena size"),
        (L32, {"start": 0x40000000 + 4096}, ValueError, "multiple of the arena page"),
        (L32, {"start": 1 << 32}, ValueError, "outside the address space"),
        (L32, {"initial_size": -8192}, ValueError, "non-negative"),
        (L32, {"initial_size": 1.0}, TypeError, "initial_size must be an int"),
        # Go throws on the unaligned heap arena a part-arena pre-reservation leaves its hint at.
        (L32, {"initial_size": 8192}, ValueError, "multiple of the heap arena size 0x400000"),
        pytest.param(L64, {"initial_size": 128 * MiB}, ValueError, "no pre-reservation", marks=pytest.mark.needs_64_bit),
        ("64-bit", {}, TypeError, "layout must be a Layout"),
    ],
)
def test_bad_constructor_arguments(layout, kwargs, exc, words):
    with pytest.raises(exc, match=words):  # before any reservation (the leak check would see one)
        arena.HeapArenas(layout, **kwargs)


@pytest.mark.needs_64_bit
def test_memory_must_match_the_layout():
    with pytest.raises(ValueError, match="32-bit memory layer"):
        arena.HeapArenas(L32, memory=sysmem.default(address_bits=64))


def test_close_releases_everything_and_use_after_close_raises():
    with arena.HeapArenas(L32) as h:
        p = h.sys_alloc(L32.page_size)
        held = h.regions
    assert h.closed and all(not mapped(r.start, r.size) for r in held)
    h.close()  # idempotent
    for call in (lambda: h.sys_alloc(L32.page_size), lambda: h.contains(p), lambda: verify(h)):
        with pytest.raises(arena.ArenaClosed):
            call()


def test_a_release_the_kernel_refuses_is_kept_for_close():
    (x,) = free_aligned(L32, L32.heap_arena_size)
    with Crowd(sysmem.default(address_bits=32)) as crowd:
        crowd.occupy(x, L32.page_size)
        h = heap(L32, x, [])
        h.memory.fail_next("release", errno.EINVAL)
        with pytest.raises(OSError):
            h.sys_alloc(L32.page_size)  # the missed hint's region cannot be given back
        missed = h.events[-1]
        assert missed.verdict == "missed" and mapped(missed.returned, missed.size)
        h.close()
        assert not mapped(missed.returned, missed.size)


def test_a_trim_the_kernel_refuses_is_kept_for_close():
    size = L32.heap_arena_size
    (x,) = free_aligned(L32, 3 * size)
    h = heap(L32, x + 2 * size, [NO_ROOM, x + L32.page_size])
    h.memory.fail_next("release", errno.EINVAL)
    with pytest.raises(OSError):
        h.sys_alloc(size)
    assert h.events[-1].verdict == "trim-failed" and h.allocations == []
    h.close()
    assert not mapped(x, 3 * size)


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_threads_get_disjoint_arenas(layout):
    got, errors = [[] for _ in range(4)], []
    barrier = threading.Barrier(4)
    with arena.HeapArenas(layout, initial_size=0) if layout.address_bits == 32 else arena.HeapArenas(layout) as h:
        def work(k):
            try:
                barrier.wait()
                for i in range(6):
                    p = h.sys_alloc(layout.page_size * (1 + i))
                    poke(p, bytes([k]) * 64)
                    got[k].append(p)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len({p for ps in got for p in ps}) == 24
        assert all(peek(p, 64) == bytes([k]) * 64 for k in range(4) for p in got[k])
        assert verify(h) == []


def test_a_prereservation_outside_a_narrow_heap_is_a_throw_not_an_index_error():
    # Issue 19, finding 9: with heap_addr_bits=24 the pre-reservation (here at 1 GiB) lies
    # outside the heap the index covers. Go indexes its arena map there unchecked, and its
    # bounds check panics; the model raised IndexError. Now Go's fatal error is a GoThrow.
    narrow = dataclasses.replace(L32, name="narrow", heap_addr_bits=24)
    (x,) = free_aligned(L32, 2 * L32.heap_arena_size)
    with arena.HeapArenas(narrow, start=x, initial_size=L32.heap_arena_size) as h:
        regions = h.regions
        with pytest.raises(arena.GoThrow, match="index out of range"):
            h.sys_alloc(8192)
        assert h.allocations == [] and h.arenas == [] and h.regions == regions  # nothing registered, nothing lost
        assert [v.kind for v in verify(h)] == ["throw"]
