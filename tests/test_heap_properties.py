"""Go 1.11's heap arenas under the adversarial kernel answers of test_properties.py, all really mapped.

Each reservation is answered from a category relative to the heap at that
moment (at the hint, below everything held, between, above, unaligned, near
the top of the space, no room), placed in a free spot of this process's real
address space. Whatever the kernel says, the heap must stay sound: every
allocation whole registered heap arenas, mapped read-write, nothing lost.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arena
from arena import demo, sysmem, trace
from arena.check import verify
from arena.testing import NO_ROOM, ScriptedMemory, peek, poke
from test_properties import free_spot

MiB = 1 << 20
CATEGORIES = ("kernel", "at-hint", "below", "between", "above", "unaligned", "top", "no-room")


def window(h, category, size):
    """The range ``[lo, hi]`` a region's start must lie in to fall in ``category``."""
    held = sorted(h.regions)
    low = held[0].start if held else h.memory.lowest
    high = max((r.end for r in held), default=low)
    # The state as the last event left it: the manager's lock is held while the kernel is asked.
    hint = h.events[-1].after.hint or low
    return {
        "at-hint": (hint, hint),
        "below": (0, low - size),
        "between": (low, high - size),
        "above": (high, h.memory.limit - size),
        "unaligned": (hint + h.memory.page_size, hint + h.layout.heap_arena_size - h.memory.page_size),
        "top": (h.memory.limit - 2 * size, h.memory.limit - size),
    }[category]


def adversary(holder, category, fraction):
    def answer(hint, size):
        if category == "kernel" or "heap" not in holder:
            return None  # the 32-bit metadata and pre-reservation ask the kernel
        if category == "no-room":
            return NO_ROOM
        h = holder["heap"]
        lo, hi = window(h, category, size)
        return free_spot(h.memory.inner, max(lo, h.memory.lowest), hi, size, fraction)

    return answer


sizes = st.one_of(st.integers(1, 64).map(lambda k: k * 8192), st.integers(1, 48).map(lambda k: k * 8 * MiB))
answers = st.tuples(st.sampled_from(CATEGORIES), st.integers(0, 1000).map(lambda k: k / 1000))


def scenarios(layout):
    return st.fixed_dictionaries({
        # 32-bit: Go's own first hint and pre-reservation ladder, or a given one; 64-bit: Go's hints or one.
        "start": st.sampled_from([None, 0x40000000, 0x80000000, 0xC0000000] if layout.address_bits == 32 else [None, 0x100000000000]),
        "initial_size": st.sampled_from([None, 0, 16 * MiB, 128 * MiB] if layout.address_bits == 32 else [None]),
        "sizes": st.lists(sizes, min_size=1, max_size=12),
        "answers": st.lists(answers, max_size=16),
    })


def run(layout, sc):
    holder = {}
    memory = ScriptedMemory(sysmem.default(address_bits=layout.address_bits), [adversary(holder, c, f) for c, f in sc["answers"]])
    h = holder["heap"] = arena.HeapArenas(layout, memory=memory, start=sc["start"], initial_size=sc["initial_size"])
    with h:
        written = []
        for i, n in enumerate(sc["sizes"]):
            try:
                p = h.sys_alloc(n)
            except arena.GoThrow:
                p = None  # a refusal Go would die of; verify reports it below
            if p is not None:
                poke(p, i.to_bytes(4, "little"))
                poke(p + n - 4, i.to_bytes(4, "little"))
                written.append((p, n, i))
        # Sound whatever the kernel said. A throw is a refusal (the model stays sound), not a loss.
        assert [v for v in verify(h) if v.kind != "throw"] == []
        for p, n, i in written:
            assert h.contains(p) and h.contains(p + n - 1)
            assert peek(p, 4) == peek(p + n - 4, 4) == i.to_bytes(4, "little")


def search(layout, examples):
    @settings(max_examples=examples, deadline=None, database=None, report_multiple_bugs=False,
              suppress_health_check=[HealthCheck.too_slow])
    @given(scenarios(layout))
    def prop(sc):
        run(layout, sc)

    return prop


LAYOUTS = [arena.LAYOUT_32, pytest.param(arena.LAYOUT_64, marks=pytest.mark.needs_64_bit)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_heap_arenas_stay_sound_under_adversarial_answers(layout):
    search(layout, 500)()


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_the_20259_scenario_loses_nothing(layout):
    r = demo.replay_20259("go1.11", layout)
    with r.arena:
        assert verify(r.arena) == [] and r.lost == [] and r.intact()
        low = demo.scenario(layout)[1]
        missed = [e for e in r.arena.events if e.verdict == "missed"]
        assert [e.returned for e in missed] == [low]
        if layout.address_bits == 32:
            # No hint left: the low answer becomes a new heap arena.
            assert r.returned[-1] == low and r.arena.contains(low)
            assert r.arena.hints == [(low + 5 * arena.LAYOUT_32.heap_arena_size, False), (low, True)]
        else:
            assert not r.arena.contains(low) and r.returned[-1] == arena.LAYOUT_64.first_hints[1]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_a_heap_arenas_trace_replays_to_the_same_decisions(tmp_path, layout):
    path = tmp_path / "t.json"
    r = demo.replay_20259("go1.11", layout)
    with r.arena:
        r.arena.save_trace(path)
        want = [(e.step, e.verdict, e.returned) for e in r.arena.events]
    t = trace.load(path)
    assert t.rule == "go1.11" and t.layout == layout
    again = trace.replay(t)
    with again.arena:
        assert isinstance(again.arena, arena.HeapArenas)
        assert [(e.step, e.verdict, e.returned) for e in again.arena.events] == want
        assert trace.divergence(t, again.arena) is None and verify(again.arena) == [] and again.intact()


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_a_linear_arenas_20259_trace_replays_clean_under_go1_11(tmp_path, layout):
    path = tmp_path / "t.json"
    r = demo.replay_20259("legacy", layout)
    with r.arena:
        trace.save(r.arena, path)
    t = trace.load(path)
    assert t.rule == "legacy" and '"version": 1' in path.read_text()  # as every linear arena's trace
    again = trace.replay(t, "go1.11")
    with again.arena:
        assert verify(again.arena) == [] and again.lost == [] and again.intact()
