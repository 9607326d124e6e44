"""Property tests: random requests against adversarial kernel answers, all really mapped.

The search is ``arena.harness.hunt``'s, with its strategies: each reservation the arena
asks for is answered from a category relative to its bounds at that moment
(contiguous, below arena_start, between start and used, ...), placed in a
free spot of this process's real address space. Where a category has no free
spot, the kernel answers instead.
"""
import pytest
from hypothesis import given, settings

import arena
from arena.harness import hunt
from arena.harness.hunt import Answer, Scenario, arena_window, free_spot
from budget import budget

MiB = 1 << 20
PAGE = arena.LAYOUT_32.page_size
LAYOUTS = [arena.LAYOUT_32, pytest.param(arena.LAYOUT_64, marks=pytest.mark.needs_64_bit)]
# Scenarios per rule and layout; arena hunt runs as many as asked (the report has thousands more).
EXAMPLES = {32: budget(500), 64: budget(250)}


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
@pytest.mark.parametrize("rule", ["fixed", "go1.9", "strict"])
def test_sound_under_adversarial_answers(rule, layout):
    result = hunt.hunt(rule, layout, examples=EXAMPLES[layout.address_bits])
    assert result.counterexample is None, f"seed {result.seed}: {result.counterexample}\n{result.violations}"
    # Scenarios the address space stopped (no room for the first reservation, say) are run again.
    assert result.examples >= EXAMPLES[layout.address_bits]


def test_the_search_finds_go_issue_20259_under_legacy_on_32_bit():
    # Proof the property and the checker are not vacuous: the same search against
    # the rule before Go commit e5a5c03 finds the bug: a growth reservation
    # answered below arena_used is taken, arena_used drops below live memory.
    result = hunt.hunt("legacy", arena.LAYOUT_32, examples=3000)
    assert result.counterexample is not None, f"seed {result.seed}"
    kinds = {v.kind for v in result.violations}
    assert {"arena_used-decreased", "not-heap"} <= kinds, result.violations
    # The shape: live allocations, then a request that needs a new block, answered low
    # (by the adversary, or in a real 32-bit process by the kernel itself), accepted.
    r = hunt.play(result.counterexample, hunt.arena_target("legacy"), arena.LAYOUT_32)
    with r.arena:
        lowered = [e for e in r.arena.events if e.verdict == "accepted" and e.after.arena_used < e.before.arena_used]
        assert lowered and all(e.returned < e.before.arena_used for e in lowered), result.counterexample
        assert r.lost and all(p >= r.arena.arena_used for p in r.lost)


@pytest.mark.needs_64_bit
def test_the_search_finds_the_two_step_form_on_64_bit():
    result = hunt.hunt("legacy", arena.LAYOUT_64, examples=3000)
    assert result.counterexample is not None, f"seed {result.seed}"
    assert [a.category for a in result.counterexample.answers] == ["above-end", "start-used"], result.counterexample
    assert "arena_used-decreased" in {v.kind for v in result.violations}


@pytest.mark.needs_64_bit
@pytest.mark.parametrize("rule, sound", [("legacy", False), ("fixed", True), ("go1.9", True), ("strict", True)])
def test_on_64_bit_the_bug_takes_two_steps(rule, sound):
    # arena_start is the first reservation on 64-bit, so a region below it is
    # refused by every rule; the bug needs a hole inside [arena_start,
    # arena_used), which an accepted region above arena_end leaves behind.
    sc = Scenario({"start": None, "initial_size": 16 * MiB}, (16 * MiB, 200 * MiB, 200 * MiB),
                  (Answer("above-end", 0.5), Answer("start-used", 0.5)))
    found = hunt.failures(sc, hunt.arena_target(rule), arena.LAYOUT_64)
    if sound:
        assert found == []
    else:
        assert "arena_used-decreased" in {v.kind for v in found}


def kept_records_agree(a):
    """What the arena keeps whatever its history (stats, lowered, committed_runs) agrees with its full history."""
    events = a.events
    assert a.lowered == [e for e in events if e.after.arena_used < e.before.arena_used]
    count = lambda *verdicts: sum(e.verdict in verdicts for e in events)  # noqa: E731
    assert a.stats == arena.Stats(
        reserved=sum(r.size for r in a.regions),
        committed=sum(e.request for e in events if e.verdict in ("committed", "fallback")),
        released_after_rejection=sum(e.size for e in events if e.verdict == "rejected"),
        reservations=sum(e.returned is not None and e.step in ("first", "grow") for e in events),
        contiguous=count("contiguous"),
        noncontiguous=count("accepted"),
        rejections=count("rejected"),
        fallbacks=count("fallback"),
    )
    merged = []
    for p, n in sorted(a.allocations):
        if merged and merged[-1][1] == p:
            merged[-1][1] = p + n
        else:
            merged.append([p, p + n])
    assert a.committed_runs == [(start, end - start) for start, end in merged]


@pytest.mark.parametrize("rule", ["legacy", "go1.9"])
def test_what_is_kept_without_history_agrees_with_the_history(rule):
    # stats, lowered and committed_runs are kept incrementally, for arenas that
    # keep no history; under adversarial answers they must say what the full
    # history says.
    @settings(max_examples=budget(150), deadline=None, database=None)
    @given(hunt.scenarios(arena.LAYOUT_32))
    def prop(sc):
        try:
            r = hunt.play(sc, hunt.arena_target(rule), arena.LAYOUT_32)
        except arena.ReservationFailed:
            return  # the address space, not the arena, stopped it
        with r.arena:
            kept_records_agree(r.arena)

    prop()


@settings(max_examples=budget(200), deadline=None, database=None)
@given(hunt.scenarios(arena.LAYOUT_32))
def test_every_drawn_scenario_is_a_valid_one(sc):
    assert sc.setup in hunt.arena_setups(arena.LAYOUT_32)
    assert all(n > 0 and n % PAGE == 0 and n <= arena.LAYOUT_32.max_mem for n in sc.requests)
    assert all(a.category in ("kernel", *hunt.ARENA_CATEGORIES, "no-room") and 0 <= a.fraction <= 1 for a in sc.answers)


@pytest.mark.needs_clean_space
def test_categories_are_really_reached():
    # Each category that can have room does get a real mapping in its window.
    with arena.Arena(arena.LAYOUT_32, start=0x80000000, initial_size=16 * MiB) as a:
        a.sys_alloc(PAGE)
        size = 256 * MiB
        for category in ("contiguous", "start-used", "above-end"):
            lo, hi = arena_window(a, category, size)
            p = free_spot(a.memory, lo, hi, size, 0.5)
            assert p is not None and lo <= p <= hi, category
        assert free_spot(a.memory, *arena_window(a, "used-end", size), size, 0.5) is None  # our own reservation
