"""Go 1.11's heap arenas under adversarial kernel answers, all really mapped: ``arena.harness.hunt``'s search.

Each reservation is answered from a category relative to the heap at that
moment (at the hint, below or above the range it asks for, unaligned, right
below or above the heap, over the last allocation, near the top or the
bottom of the space, no room), placed in a free spot of this process's real
address space (``arena.harness.hunt.heap_target``). Whatever the kernel says, the
heap must stay sound: every allocation whole registered heap arenas, mapped
read-write, reading back what was written, and no throw. Broken variants of
the manager show the search is not vacuous.
"""
import dataclasses
import inspect
import textwrap

import pytest
from hypothesis import given, settings

import arena
from arena.harness import hunt, trace
from arena.harness.check import verify
from arena.interface import demo
from arena.managers import heaparenas
from budget import budget

MiB = 1 << 20
LAYOUTS = [arena.LAYOUT_32, pytest.param(arena.LAYOUT_64, marks=pytest.mark.needs_64_bit)]
# Scenarios per layout; arena hunt --rule go1.11 runs as many as asked (the report has thousands more).
EXAMPLES = {32: budget(500), 64: budget(300)}


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_heap_arenas_stay_sound_under_adversarial_answers(layout):
    result = hunt.hunt("go1.11", layout, examples=EXAMPLES[layout.address_bits])
    assert result.target == "go1.11"
    assert result.counterexample is None, f"seed {result.seed}: {result.counterexample}\n{result.violations}"
    # Scenarios the address space stopped are run again.
    assert result.examples >= EXAMPLES[layout.address_bits]


def broken(name, method, old, new):
    """``HeapArenas`` with one line of ``method`` changed: a deliberately broken variant, and its target."""
    source = textwrap.dedent(inspect.getsource(getattr(arena.HeapArenas, method)))
    assert source.count(old) == 1, f"HeapArenas.{method} no longer reads {old!r}"
    made = {}
    exec(compile(source.replace(old, new), f"<{name}>", "exec"), vars(heaparenas), made)
    cls = type(name, (arena.HeapArenas,), {method: made[method]})
    return dataclasses.replace(hunt.heap_target(), name=name,
                               make=lambda memory, layout, setup: cls(layout, memory=memory, **setup))


# A hint answered elsewhere is registered and kept where it landed, instead of released (malloc.go L556-566).
KEEPS_MISSED = ("KeepsMissedHints", "_sys_alloc", "self._release(v, n)  # against no stat: Go's sysFree(v, n, nil)",
                'self._regions.append((v, n, "heap")); self._register(v, n)')
# sysReserveAligned keeps every answer whole, as if it were aligned (L674-677): the trim is skipped.
SKIPS_TRIM = ("SkipsTheTrim", "_reserve_aligned", "if p % align == 0:", "if True:")


def missed_hint(h):
    return any(e.step == "hint" and e.verdict == "missed" for e in h.events)


def unaligned_answer_kept(h):
    return any(e.step == "aligned" and e.returned is not None and e.returned % h.layout.heap_arena_size for e in h.events)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
@pytest.mark.parametrize("mutation, kinds, shape", [
    (KEEPS_MISSED, {"not-mapped", "foreign"}, missed_hint),
    (SKIPS_TRIM, {"throw"}, unaligned_answer_kept),
], ids=["keeps-missed-hints", "skips-the-trim"])
def test_the_search_catches_a_broken_variant(layout, mutation, kinds, shape):
    target = broken(*mutation)
    result = hunt.hunt(target=target, layout=layout, examples=2000)
    assert result.counterexample is not None, f"seed {result.seed}"
    assert kinds <= {v.kind for v in result.violations}, result.violations
    # Found by what the variant gets wrong: a hint answered elsewhere, an unaligned answer kept.
    r = hunt.play(result.counterexample, target, layout)
    with r.arena as h:
        assert shape(h), result.counterexample
    assert hunt.failures(result.counterexample, target, layout) != []  # it fails again
    # The same answers leave the real manager sound.
    assert hunt.failures(result.counterexample, hunt.heap_target(), layout) == []


@settings(max_examples=budget(200), deadline=None, database=None)
@given(hunt.scenarios(arena.LAYOUT_32, hunt.heap_target()))
def test_every_drawn_heap_scenario_is_a_valid_one(sc):
    assert sc.setup in hunt.heap_setups(arena.LAYOUT_32)
    assert all(n > 0 and n % arena.LAYOUT_32.page_size == 0 and n <= arena.LAYOUT_32.max_alloc for n in sc.requests)
    assert all(a.category in ("kernel", *hunt.HEAP_CATEGORIES, "no-room") and 0 <= a.fraction <= 1 for a in sc.answers)


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
