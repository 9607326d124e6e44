"""history=: keep every decision, the last N, or none; counters and verify's record are kept regardless."""
import dataclasses
import gc

import psutil
import pytest

import arena
from arena import sysmem
from arena.harness import trace
from arena.harness.check import InvariantViolation, verify, verify_or_raise
from arena.harness.run import drive
from arena.interface import demo
from arena.policy.layout import MiB
from arena.spaces import NO_ROOM, ScriptedMemory
from budget import budget

# The runs below place mappings at exact addresses: in a 32-bit process they
# run first, before the interpreter's own memory spreads through the space.
pytestmark = pytest.mark.needs_clean_space

PAGE = arena.LAYOUT_32.page_size
BIG = 256 * MiB - PAGE  # needs one growth step of 256 MiB
# A run that takes every path, each reservation answered at an exact address
# (ranges free in a 32-bit process too): commits, a contiguous growth, then a
# growth answered at 0x10000000, below the arena: fixed and go1.9 reject it and
# fall back (to a mapping at 0x20000000), legacy accepts it and lowers arena_used.
REQUESTS = [PAGE, 8 * MiB, 8 * MiB, 32 * MiB, BIG, PAGE]
ANSWERS = [None, 0x71000000, 0x10000000, 0x20000000]


def scripted_run(history, rule="fixed"):
    memory = ScriptedMemory(sysmem.default(address_bits=32), ANSWERS)
    a = arena.Arena(arena.LAYOUT_32, rule, memory=memory, start=0x70000000, initial_size=16 * MiB, history=history)
    return drive(a, REQUESTS).arena


def record(a):
    with a:
        return {"events": a.events, "allocations": a.allocations, "stats": a.stats, "runs": a.committed_runs,
                "lowered": a.lowered, "complete": a.history_complete, "verify": [v.kind for v in verify(a)]}


@pytest.mark.parametrize("rule", arena.RULES)
@pytest.mark.parametrize("history", [0, 1, 3, 7, 100])
def test_a_bounded_history_keeps_the_last_n_decisions_and_every_count(rule, history):
    full, short = record(scripted_run(None, rule)), record(scripted_run(history, rule))
    assert len(full["events"]) == 9 and full["complete"]
    assert short["events"] == full["events"][-history:] if history else short["events"] == []
    assert short["allocations"] == full["allocations"][-history:] if history else short["allocations"] == []
    assert short["complete"] == (history >= 9)
    for key in ("stats", "runs", "lowered"):
        assert short[key] == full[key], key
    # The same kinds of violation, though counted by runs rather than by allocations.
    assert set(short["verify"]) == set(full["verify"])
    assert (rule == "legacy") == bool(full["lowered"])


@pytest.mark.parametrize("make", [
    lambda: arena.Arena(arena.LAYOUT_32, "fixed", initial_size=16 * MiB),
    lambda: arena.Arena(arena.LAYOUT_32, "fixed", initial_size=16 * MiB, history=2),
    lambda: arena.HeapArenas(arena.LAYOUT_32, initial_size=16 * MiB),
], ids=["arena", "arena-history-2", "heap-arenas"])
def test_events_are_built_once_per_decision_and_each_read_is_a_list_of_its_own(make):
    with make() as a:
        a.sys_alloc(PAGE)
        read = a.events
        again = a.events
        assert again == read and again is not read
        read.clear()  # the reader's list: the events the manager shows stay whole
        assert a.events == again
        a.sys_alloc(PAGE)
        after = a.events
        # The decision made since is shown: the last event is a commit at another address.
        assert after[-1] != again[-1] and after[-1].verdict == "committed"
        assert len(after) == (2 if a.history == 2 else len(again) + 1)


@pytest.mark.parametrize("history, exc", [(-1, ValueError), (2**63, ValueError), (1.5, TypeError), ("all", TypeError), (True, TypeError),
                                          (False, TypeError)])
def test_bad_history(history, exc):
    with pytest.raises(exc, match="history"):
        arena.Arena(arena.LAYOUT_32, history=history)


@pytest.mark.parametrize("rule, runs", [("fixed", 2), ("go1.9", 2), ("legacy", 2)])
def test_stats_count_every_kind_of_decision_without_the_history(rule, runs):
    with scripted_run(0, rule) as a:
        s = a.stats
        if rule == "legacy":
            assert (s.contiguous, s.noncontiguous, s.rejections, s.fallbacks) == (1, 1, 0, 0)
        else:
            assert (s.contiguous, s.noncontiguous, s.rejections, s.fallbacks) == (1, 0, 1, 1)
            assert s.released_after_rejection == 256 * MiB
        assert s.reservations == 3
        assert s.committed == sum(REQUESTS) == sum(n for _, n in a.committed_runs)
        assert len(a.committed_runs) == runs
        assert s.reserved == sum(r.size for r in a.regions)


def test_committed_runs_merge_what_touches():
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, 0x71000000])
    with arena.Arena(arena.LAYOUT_32, memory=memory, start=0x70000000, initial_size=16 * MiB, history=0) as a:
        for _ in range(10):
            a.sys_alloc(PAGE)
        a.sys_alloc(64 * MiB)  # grows contiguously: still one run
        assert a.stats.contiguous == 1 and a.committed_runs == [(0x70000000, 10 * PAGE + 64 * MiB)]


@pytest.mark.parametrize("history", [None, 0])
def test_a_fallback_at_a_full_blocks_end_joins_its_run(history):
    # go1.9 keeps the cursor at the full block's end, and the fallback mapping
    # lies right there: two runs that touch are one.
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, NO_ROOM, 0x71000000])
    with arena.Arena(arena.LAYOUT_32, "go1.9", memory=memory, start=0x70000000, initial_size=16 * MiB, history=history) as a:
        a.sys_alloc(16 * MiB)
        assert a.sys_alloc(BIG) == 0x71000000 and a.stats.fallbacks == 1
        assert a.committed_runs == [(0x70000000, 16 * MiB + BIG)]
        across = (0x71000000 - PAGE, 2 * PAGE)
        if history is None:
            with pytest.raises(ValueError, match="runs past the end of the allocation"):
                a.view(*across)  # two allocations
        else:
            with a.view(*across) as v:  # one run
                v[:] = bytes(2 * PAGE)
        assert verify(a) == []


# -- verify with less history --------------------------------------------------------


@pytest.mark.parametrize("history", [0, 2])
def test_verify_still_finds_the_20259_bug_and_says_what_it_did_not_check(history):
    scripted = ScriptedMemory(sysmem.default(address_bits=32), [None, demo.LOW_ANSWER])
    a = arena.Arena(arena.LAYOUT_32, "legacy", memory=scripted, start=demo.ARENA_AT, initial_size=demo.ARENA_SIZE, history=history)
    with drive(a, [*demo.LIVE, demo.LAST]).arena:
        found = verify(a)
        assert [v.kind for v in found] == ["arena_used-decreased", "not-heap"]
        assert "committed run [0x70000000, 0x77800000) is not inside" in found[1].detail
        assert len(found.unchecked) == 2 and "overlap" in found.unchecked[0] and "region" in found.unchecked[1]
        with pytest.raises(InvariantViolation, match="arena_used-decreased"):
            verify_or_raise(a)


@pytest.mark.parametrize("rule", ["fixed", "go1.9"])
def test_a_sound_arena_with_no_history_is_sound_with_notes(rule):
    with scripted_run(0, rule) as a:
        found = verify(a)
        assert found == [] and found.unchecked
        verify_or_raise(a)  # "could not check" is not a violation


def test_a_complete_history_leaves_nothing_unchecked():
    with scripted_run(None) as a:
        assert verify(a) == [] and verify(a).unchecked == []


def test_verify_without_history_finds_memory_taken_behind_its_back():
    with scripted_run(0) as a:
        p, size = a.committed_runs[0]
        a.memory.decommit(p, PAGE)
        assert [v.kind for v in verify(a)] == ["not-mapped"]


def test_a_trace_needs_the_whole_history(tmp_path):
    with scripted_run(3) as a:
        with pytest.raises(ValueError, match="every decision"):
            trace.record(a)
        with pytest.raises(ValueError, match="every decision"):
            a.save_trace(tmp_path / "t.json")
        assert not (tmp_path / "t.json").exists()


# -- constant memory ---------------------------------------------------------------------


def rss_growth(calls, history):
    """RSS growth over ``calls`` sys_alloc calls of one page on a 64-bit arena."""
    proc = psutil.Process()
    with arena.Arena(arena.LAYOUT_64, history=history) as a:
        sys_alloc = a.sys_alloc
        for _ in range(10_000):  # warm up: lists, free lists, the first growths
            sys_alloc(PAGE)
        gc.collect()
        before = proc.memory_info().rss
        for _ in range(calls):
            sys_alloc(PAGE)
        grown = proc.memory_info().rss - before
        assert a.stats.committed == (calls + 10_000) * PAGE and len(a.committed_runs) == 1
    return grown


@pytest.mark.needs_64_bit
def test_a_million_calls_with_no_history_keep_resident_memory_flat():
    # The commits touch no page (mprotect only), so what would grow is the
    # arena's own records: about 250 bytes a call with the whole history.
    calls = budget(1_000_000)
    grown = rss_growth(calls, history=0)
    print(f"history=0: RSS {grown / MiB:+.1f} MiB over {calls:,} sys_alloc calls")
    assert grown <= 3 * MiB


@pytest.mark.needs_64_bit
def test_the_measure_sees_a_history_grow():
    # The same measure, proved able to fail: a whole history of a tenth as many calls grows.
    grown = rss_growth(100_000, history=None)
    print(f"history=None: RSS {grown / MiB:+.1f} MiB over 100,000 sys_alloc calls")
    assert grown > 10 * MiB


def test_stats_are_cumulative_after_close():
    a = scripted_run(0)
    before = a.stats
    a.close()
    assert a.stats == dataclasses.replace(before, reserved=0)
