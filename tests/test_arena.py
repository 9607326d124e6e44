"""The arena manager against real memory: the 20259 replay, growth, fallback, bad input."""
import dataclasses
import dis
import sys
import threading

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.interface import demo
from arena.policy.layout import MiB
from arena.spaces import NO_ROOM, ScriptedMemory, peek, poke

KiB = 1 << 10
PAGE = arena.LAYOUT_32.page_size
NATIVE = arena.native_layout()


def scripted32(*answers):
    return ScriptedMemory(sysmem.default(address_bits=32), answers)


# -- Go issue 20259, with real mappings ---------------------------------------


@pytest.fixture
def replay(request):
    r = demo.replay_20259(request.param)
    with r.arena:
        yield r


@pytest.mark.parametrize("replay", arena.RULES, indirect=True)
def test_20259_starts_where_the_trace_did(replay):
    a = replay.arena
    first = a.events[0]
    assert first.verdict == "reserved" and first.returned == demo.ARENA_AT - arena.LAYOUT_32.metadata_size
    grow = [e for e in a.events if e.step == "grow"]
    assert [(e.hint, e.size, e.returned) for e in grow] == [(0x78000000, 256 * MiB, 0x10000000)]
    assert grow[0].before.arena_end == 0x78000000


@pytest.mark.parametrize("replay", ["legacy"], indirect=True)
def test_20259_legacy_lowers_arena_used_and_loses_live_memory(replay):
    a = replay.arena
    kinds = [v.kind for v in verify(a)]
    assert "arena_used-decreased" in kinds
    assert kinds.count("not-heap") == len(demo.LIVE)
    assert replay.lost == replay.returned[: len(demo.LIVE)]
    assert a.arena_used == 0x10000000 + demo.LAST
    # The memory is still there; only the heap check lost it.
    assert replay.intact()


@pytest.mark.parametrize("replay", ["fixed", "go1.9"], indirect=True)
def test_20259_fixed_and_go19_stay_sound(replay):
    a = replay.arena
    assert verify(a) == []
    assert replay.lost == []
    assert replay.intact()
    assert all(a.contains(p) for p in replay.returned)
    if a.rule == "fixed":
        assert [e.verdict for e in a.events if e.step != "commit"][-2:] == ["rejected", "fallback"]
        assert a.stats.released_after_rejection == 256 * MiB and a.stats.rejections == 1
    else:
        assert a.arena_alloc == 0x10000000 + demo.LAST and a.arena_used == 0x77800000


# -- growth --------------------------------------------------------------------


def test_contiguous_growth_extends_arena_end():
    with arena.Arena(NATIVE, start=0xA0000000, initial_size=16 * MiB) as a:
        end = a.arena_end
        p = a.sys_alloc(8 * MiB)
        q = a.sys_alloc(32 * MiB)
        assert q == p + 8 * MiB
        assert a.arena_end == end + 256 * MiB
        assert a.stats.contiguous == 1 and a.stats.reservations == 2
        assert [e.verdict for e in a.events][-3:] == ["committed", "contiguous", "committed"]
        assert verify(a) == []


@pytest.mark.needs_64_bit
def test_64_bit_first_reservation_takes_the_first_free_hint():
    with arena.Arena(arena.LAYOUT_64) as a:
        first = [e for e in a.events if e.verdict == "reserved"][0]
        assert first.returned in arena.LAYOUT_64.first_hints
        assert a.arena_start == first.returned and a.arena_used == a.arena_start


@pytest.mark.needs_64_bit
def test_64_bit_start_is_an_address_not_a_size():
    with arena.Arena(arena.LAYOUT_64, start=0x00C000000000, initial_size=16 * MiB) as a:
        assert a.arena_start == 0x00C000000000 and a.arena_end == a.arena_start + 16 * MiB


@pytest.mark.needs_64_bit
def test_64_bit_occupied_first_hint_is_skipped():
    memory = sysmem.default()
    hint = arena.LAYOUT_64.first_hints[0]
    blocker = memory.reserve_exact(hint, 64 * KiB)
    try:
        with arena.Arena(arena.LAYOUT_64, memory=memory) as a:
            assert a.events[0].verdict == "missed" and a.events[0].hint == hint
            assert a.arena_start == arena.LAYOUT_64.first_hints[1]
    finally:
        if blocker is not None:
            memory.release(blocker, 64 * KiB)


def test_32_bit_ladder_takes_a_smaller_arena_when_the_big_one_has_no_room():
    memory = scripted32(NO_ROOM, NO_ROOM)
    with arena.Arena(arena.LAYOUT_32, memory=memory) as a:
        assert [e.verdict for e in a.events] == ["no-room", "no-room", "reserved"]
        assert [c.size for c in memory.calls] == [arena.LAYOUT_32.metadata_size + s for s in (512 * MiB, 256 * MiB, 128 * MiB)]
        assert a.arena_end - a.arena_used == 128 * MiB
        assert a.arena_start == 0


def test_no_first_reservation_at_all_raises():
    memory = scripted32(*[NO_ROOM] * 4)
    with pytest.raises(arena.ReservationFailed):
        arena.Arena(arena.LAYOUT_32, memory=memory)


@pytest.mark.needs_64_bit
def test_64_bit_exhausted_reservation_gives_none_without_fallback():
    layout = dataclasses.replace(arena.LAYOUT_64, max_mem=512 * MiB - 1)
    with arena.Arena(layout) as a:
        assert a.sys_alloc(200 * MiB) is not None
        regions = a.regions
        assert a.sys_alloc(200 * MiB) is not None  # one contiguous growth fits max_mem
        assert a.sys_alloc(200 * MiB) is None
        assert a.events[-2].verdict == "beyond-max-mem" and a.events[-1].verdict == "out-of-memory"
        assert a.stats.fallbacks == 0 and len(a.regions) == len(regions) + 1
        assert verify(a) == []


@pytest.mark.parametrize("rule, expected", [("fixed", None), ("legacy", None), ("go1.9", "fallback"), ("strict", "fallback")])
def test_no_room_for_growth(rule, expected):
    # Go 1.8 (and Go commit e5a5c03) return nil when sysReserve fails; Go 1.9 (and strict) fall back.
    with arena.Arena(arena.LAYOUT_32, rule, memory=scripted32(None, NO_ROOM), initial_size=0) as a:
        p = a.sys_alloc(PAGE)
        assert a.events[1].verdict == "no-room"
        assert (p is None) == (expected is None)
        if expected:
            assert a.events[-1].verdict == "fallback" and a.contains(p)
        assert verify(a) == []


def test_32_bit_fallback_is_used_and_arena_used_rises_over_it():
    with arena.Arena(arena.LAYOUT_32, "fixed", memory=scripted32(None, 0x10000000), start=0x80000000, initial_size=0) as a:
        used = a.arena_used
        p = a.sys_alloc(MiB)
        assert [e.verdict for e in a.events[1:]] == ["rejected", "fallback"]
        assert p > used and a.arena_used == p + MiB
        assert a.stats.fallbacks == 1
        poke(p + MiB - 4, b"tail")
        assert peek(p + MiB - 4, 4) == b"tail"
        assert verify(a) == []


def test_go19_strand_limit_rejects_a_jump_that_strands_too_much():
    with arena.Arena(arena.LAYOUT_32, "go1.9", memory=scripted32(None, 0x10000000), start=0x80000000, initial_size=32 * MiB) as a:
        a.sys_alloc(8 * MiB)  # 24 MiB would be stranded: more than 16 MiB
        a.sys_alloc(64 * MiB)
        rejected = [e for e in a.events if e.verdict == "rejected"]
        assert len(rejected) == 1 and "strand" in rejected[0].reason
        assert verify(a) == []


def test_stats_and_allocations():
    with arena.Arena(arena.LAYOUT_32, memory=scripted32(None, 0x10000000), start=0x80000000, initial_size=16 * MiB) as a:
        p1 = a.sys_alloc(8 * MiB)
        p2 = a.sys_alloc(32 * MiB)
        assert a.allocations == [(p1, 8 * MiB), (p2, 32 * MiB)]
        s = a.stats
        assert s.committed == 40 * MiB
        assert s.released_after_rejection == 256 * MiB and s.rejections == 1 and s.fallbacks == 1
        assert s.reserved == sum(r.size for r in a.regions)
        a.allocations.clear()  # a copy: the arena's record is untouched
        assert len(a.allocations) == 2


# -- lifetime ------------------------------------------------------------------


def test_close_releases_everything_and_is_idempotent():
    a = arena.Arena(arena.LAYOUT_32, memory=scripted32(None, 0x10000000), start=0x80000000, initial_size=0)
    p = a.sys_alloc(MiB)
    regions = a.regions
    a.close()
    a.close()
    maps = sysmem.mappings()
    assert not any(m.start < r.end and r.start < m.end for r in regions for m in maps)
    assert a.closed and p is not None
    for call in (lambda: a.sys_alloc(PAGE), lambda: a.contains(p), lambda: verify(a)):
        with pytest.raises(arena.ArenaClosed):
            call()


def test_context_manager_closes_on_error():
    with pytest.raises(ZeroDivisionError):
        with arena.Arena(NATIVE) as a:
            1 / 0  # noqa: B018  (the error the with block must close the arena on)
    assert a.closed


def test_threads_never_overlap():
    with arena.Arena(NATIVE, initial_size=8 * MiB) as a:
        got = []

        def work():
            for _ in range(50):
                got.append(a.sys_alloc(PAGE * 4))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(got)) == 200 and None not in got
        assert verify(a) == []


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"layout": "32"}, TypeError, "layout"),
        ({"rule": "go1.10"}, ValueError, "rule"),
        ({"rule": None}, TypeError, "rule"),
        ({"start": 0x70001000}, ValueError, "start"),
        ({"start": -PAGE}, ValueError, "start"),
        ({"start": 1.5}, TypeError, "start"),
        ({"start": 2**40}, ValueError, "outside the address space"),
        ({"initial_size": 4096}, ValueError, "initial_size"),
        ({"initial_size": -PAGE}, ValueError, "initial_size"),
        ({"initial_size": "big"}, TypeError, "initial_size"),
        ({"initial_size": 2**33}, ValueError, "initial_size"),
        ({"memory": object()}, TypeError, "^memory must be a memory layer, not object"),
        ({"memory": "cffi"}, TypeError, r"^memory must be a memory layer, not str \('cffi'\): to choose a backend, "
                                        r"pass arena.sysmem.CffiMemory\(\) or set ARENA_BACKEND=cffi$"),
        ({"layout": "32"}, TypeError, r"^layout must be a Layout, not str \('32'\): use arena.LAYOUT_32 "),
        ({"layout": 64}, TypeError, r"^layout must be a Layout, not int \(64\): use arena.LAYOUT_64 "),
        ({"layout": [32]}, TypeError, r"^layout must be a Layout, not list \(\[32\]\): use arena.LAYOUT_32, arena.LAYOUT_64"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, words):
    kwargs = {"layout": arena.LAYOUT_32, **kwargs}
    with pytest.raises(exc, match=words):
        arena.Arena(**kwargs)


def test_start_must_leave_room_for_metadata():
    with pytest.raises(ValueError, match="metadata"):
        arena.Arena(arena.LAYOUT_32, start=0x01000000)


def test_layout_and_memory_must_agree():
    with pytest.raises(ValueError, match="64-bit layout needs a 64-bit"):
        arena.Arena(arena.LAYOUT_64, memory=sysmem.default(address_bits=32))


@pytest.mark.parametrize(
    "n, exc, words",
    [(0, ValueError, "positive"), (-PAGE, ValueError, "positive"), (4096, ValueError, "multiple"),
     (PAGE + 1, ValueError, "multiple"), (2**40, ValueError, "max_mem"), (2**70, ValueError, "max_mem"),
     (8192.0, TypeError, "int"), ("8192", TypeError, "int"), (None, TypeError, "int")],
)
def test_bad_sys_alloc_sizes(n, exc, words):
    with arena.Arena(arena.LAYOUT_32, initial_size=0) as a:
        events = len(a.events)
        with pytest.raises(exc, match=words):
            a.sys_alloc(n)
        assert len(a.events) == events


@pytest.mark.parametrize("addr", ["0x10", 1.0, None])
def test_contains_needs_an_integer(addr):
    with arena.Arena(NATIVE) as a:
        with pytest.raises(TypeError, match="addr"):
            a.contains(addr)


@pytest.mark.parametrize("make", [lambda: arena.Arena(arena.LAYOUT_32, initial_size=16 * MiB),
                                  lambda: arena.Arena(arena.LAYOUT_32, initial_size=16 * MiB, history=0),
                                  lambda: arena.HeapArenas(arena.LAYOUT_32, initial_size=0)], ids=["arena", "history-0", "heap"])
def test_a_manager_keeps_its_attributes_in_slots(make):
    # An instance dict loses CPython 3.11's fast attribute access past 29 keys (it cost sys_alloc 11% once);
    # slots are read at a fixed offset, however many there are. What a caller adds goes to __dict__.
    with make() as a:
        a.view(a.sys_alloc(arena.LAYOUT_32.heap_arena_size if isinstance(a, arena.HeapArenas) else 8192), 8)
        assert vars(a) == {}
        a.note = "mine"
        assert vars(a) == {"note": "mine"}


@pytest.mark.skipif(sys.implementation.name != "cpython" or sys.version_info[:2] not in ((3, 11), (3, 12)),
                    reason="names CPython 3.11 and 3.12's specialized instructions")
def test_sys_alloc_reads_its_attributes_at_fixed_offsets():
    with arena.Arena(arena.LAYOUT_32, initial_size=16 * MiB) as a:
        for _ in range(100):  # past the interpreter's warm-up: each instruction specialized for what it met
            a.sys_alloc(PAGE)
        loads = [i.opname for i in dis.get_instructions(arena.Arena.sys_alloc, adaptive=True) if "ATTR" in i.opname]
    # An instance dict's keys would show as ..._WITH_HINT (a dict lookup); branches not taken stay ..._ADAPTIVE.
    assert loads.count("LOAD_ATTR_SLOT") >= 10 and not [op for op in loads if "HINT" in op], loads


def test_a_growth_leaves_a_cursor_past_arena_end_where_it_was():
    # A rule whose fallback leaves arena_end alone puts the cursor past it; a contiguous growth
    # then extends the block below the cursor, which it does not make room at: the request falls
    # back again (an inlined growth once committed at the cursor, outside every reservation).
    from arena.harness import hunt

    class KeepEnd(arena.policy.rules.Fixed):
        fallback_raises_end = False

    scenario = hunt.Scenario({"start": 0x40000000, "initial_size": 0}, (8192, 16384), (hunt.Answer("start-used", 0.0),))
    replay = hunt.play(scenario, hunt.arena_target(KeepEnd()), arena.LAYOUT_32)
    with replay.arena as a:
        assert [(e.step, e.verdict) for e in a.events[1:]] == [
            ("grow", "rejected"), ("fallback", "fallback"), ("grow", "contiguous"), ("fallback", "fallback")]
        assert a.arena_alloc > a.arena_end and verify(a) == []
