"""The model beside a real run: Go's heap found in real process traces, its answers fed to Arena and HeapArenas.

The traces are made here, by real programs under the tracer: tests/programs/tracee/go_linear.c (Go 1.8's
32-bit heap calls under each rule, so that this runs without Go 1.8's toolchain), the Go test program built
with Debian's Go (Go 1.11's sparse heap arenas and successors), and with the old toolchains where built.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from arena import sysmem, tracer
from arena.harness import goheap, real, realdemo
from arena.tracer import toolchains

pytest_plugins = ["tracees"]
pytestmark = pytest.mark.usefixtures("no_leftover_processes")
MiB = 1 << 20
RULES = ("legacy", "fixed", "go1.9")
# What each rule's program does with the gap adversary's hole, in the model's words.
DOES = {"legacy": real.LOWERED, "fixed": real.RELEASED, "go1.9": real.CURSOR}


@pytest.fixture(scope="module")
def linear(build, shared_run):
    """``linear(rule, adversary)``: go_linear (32-bit) run under ``adversary``, once (tests/tracees.py: run_once)."""

    def get(rule: str, adversary: str = "gap") -> tracer.Outcome:
        program = str(build("go_linear", 32))
        return shared_run(f"go_linear32 {rule} {adversary}",
                        lambda: tracer.run([program, rule], adversary, capture=True, timeout=60))

    return get


def need(name: str) -> None:
    if name not in toolchains.toolchains():
        pytest.skip("no `go` on PATH (apt-get install golang-go)" if name == "system" else
                    f"Go toolchain {name} is not built: run `make go-toolchains ARENA_GO_SRC=<git copy of Go>`")


def test_go18s_heap_is_recognised_in_its_calls(linear):
    o = linear("legacy", "observe")
    heap = goheap.recognise(o)
    assert heap is not None and (heap.design, heap.bits) == (goheap.LINEAR, 32)
    first = heap.role("first")[0]
    assert first.size == 258 * MiB + 512 * MiB + 8192 and first.answer == first.hint == 0x4000000
    assert heap.initial_size == 512 * MiB + 8192
    # 900 requests of 1 MiB; the first arena holds 512 of them, two growths at the heap's end the rest.
    assert heap.requests == [MiB] * 900
    growths = heap.role("growth")
    assert [g.hint for g in growths] == [first.end, first.end + 256 * MiB] and all(g.at_hint and g.used for g in growths)
    b = real.beside(o)
    assert b is not None and b.real == real.AT_END
    assert [(r.rule, r.verdict, r.agrees) for r in b.runs] == [(r, real.AT_END, True) for r in RULES]
    assert all(not r.outcome.violations and r.outcome.intact for r in b.runs)


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_agrees_with_the_program_that_follows_it(linear, rule):
    o = linear(rule)
    assert o.rewritten == 2
    assert o.failed == (rule == "legacy")
    b = real.beside(o)
    assert b is not None and b.real == DOES[rule], b.real_words
    assert {r.rule: r.verdict for r in b.runs} == DOES
    assert [r.rule for r in b.runs if r.agrees] == [rule]
    hole = b.heap.role("growth")[1]
    assert hole.below and f"{hole.answer:#x}" in b.real_words
    # The model speaks of the program's addresses.
    assert all(f"{hole.answer:#x}" in r.words for r in b.runs)
    legacy = b.run("legacy")
    assert legacy is not None and legacy.outcome.lost and legacy.words.startswith("arena_used lowered")
    assert any(v.kind == "arena_used-decreased" for v in legacy.outcome.violations)
    for other in ("fixed", "go1.9"):
        run = b.run(other)
        assert run is not None and not run.outcome.violations and run.outcome.intact


def test_what_each_program_did_is_read_from_its_calls(linear):
    lowered = real.beside(linear("legacy"))
    assert lowered is not None and "heapBitsForSpan: base out of range" in lowered.real_words
    released = goheap.recognise(linear("fixed"))
    assert released is not None
    hole = released.role("growth")[1]
    assert hole.released_at is not None and not hole.used
    assert released.role("fallback") and all(f.size == MiB + 8192 for f in released.role("fallback"))
    assert sum(released.requests) == 900 * MiB


def test_only_the_rules_asked_for_run(linear):
    b = real.beside(linear("fixed"), ("fixed", "go1.11"))
    assert b is not None and [r.rule for r in b.runs] == ["fixed"]


# go_linear's heap under the gap adversary, from its first reservation's start (0x4000000): that reservation
# (258 MiB of metadata, 512 MiB of arena, a page), then two growths of 256 MiB, the first answered above the
# hole it leaves and the second in it. The model maps exactly that span and nothing past it; the program's
# page leaves its end 8 KiB past a multiple of 4 MiB.
FIRST = (258 + 512) * MiB + 8192
SPAN = FIRST + 2 * 256 * MiB
BLOCK = 4 * MiB
BLOCKS = -(-SPAN // BLOCK)  # 321 blocks meet the span: the last, block 320, holds its last 2 MiB and 8 KiB


@pytest.fixture(scope="module")
def legacy_beside(linear):
    """``legacy_beside()``: go_linear under legacy and the gap adversary, and the model beside it as this process
    first runs it: the reference every block's run is compared with, the same for each, so made once. A function,
    not the pair: hypothesis writes out a test's arguments for each explicit example, the pair's thousands of
    fields included."""
    o = linear("legacy")
    want = real.beside(o)
    assert want is not None
    if want.shift:
        # Here, not in the test: a skip inside an explicit example is printed as its failure first.
        pytest.skip("the program's addresses are taken in this process already (a 32-bit Python): the model runs moved")
    made = (o, want)
    return lambda: made


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.integers(-2, BLOCKS + 1))
# Every run: the blocks at the span's edges and each reservation's (the first's end and the hole's start
# lie in block 192, the hole's end and the upper growth's start in block 256), those beside them, and
# the blocks just below and just past the span, which must leave the model where it is.
@example(blocks=-1)
@example(blocks=0)
@example(blocks=1)
@example(blocks=191)
@example(blocks=192)
@example(blocks=193)
@example(blocks=255)
@example(blocks=256)
@example(blocks=257)
@example(blocks=BLOCKS - 2)
@example(blocks=BLOCKS - 1)
@example(blocks=BLOCKS)
def test_the_verdicts_do_not_depend_on_where_the_model_runs(legacy_beside, blocks):
    """A 4 MiB block reserved in this process ``blocks`` blocks into the span of the program's heap: where the
    block meets a range the model maps exactly, the model runs elsewhere, all moved by one shift; past the span
    it stays. Either way it says the same (in the program's addresses)."""
    o, want = legacy_beside()
    first = want.heap.role("first")[0]
    assert first.answer is not None and first.size == FIRST
    exact = [(r.answer, r.end) for r in want.heap.reservations if r.answer is not None and r.role != "fallback"]
    # The strategy's span is the heap's: the test's own assumption, checked.
    assert (min(a for a, _ in exact), max(b for _, b in exact)) == (first.answer, first.answer + SPAN)
    memory = sysmem.default(address_bits=32)
    start = first.answer + blocks * BLOCK
    at = memory.reserve_exact(start, BLOCK)
    assume(at is not None)  # that part of this process's space is taken already: blocked anyway
    try:
        got = real.beside(o)
    finally:
        memory.release(start, BLOCK)
    assert got is not None
    meets = any(a < start + BLOCK and start < b for a, b in exact)
    assert meets == (0 <= blocks < BLOCKS)
    if meets:
        assert got.shift and got.shift % BLOCK == 0 and got.notes
    else:
        assert (got.shift, got.notes) == (0, want.notes)
    assert [(r.rule, r.verdict, r.words, r.agrees) for r in got.runs] == [(r.rule, r.verdict, r.words, r.agrees) for r in want.runs]


def test_a_program_without_a_go_heap():
    o = tracer.run(["true"], timeout=60)
    assert goheap.recognise(o) is None and real.beside(o) is None


# Not backend_independent (nor the next): the model beside the program runs on the memory backend.
@pytest.mark.parametrize("arch", toolchains.ARCHES)
def test_debian_gos_heap_arenas_at_their_hints(arch, shared_run):
    need("system")
    if arch == "amd64" and sysmem.NATIVE_BITS == 32:
        pytest.skip("an amd64 program cannot be traced from a 32-bit Python")
    argv = [str(toolchains.build_program("system", arch)), "600" if arch == "386" else "200"]
    o = shared_run(f"system {arch} {argv[1]}", lambda: tracer.run(argv, capture=True, timeout=300))
    assert not o.failed, o.stderr
    heap = goheap.recognise(o)
    assert heap is not None and heap.design == goheap.SPARSE
    assert heap.arena_size == (4 * MiB if arch == "386" else 64 * MiB)
    if arch == "386":
        # The metadata anywhere, then the pre-reservation: 512 MiB and one arena, used before any hint.
        assert [r.role for r in heap.reservations[:2]] == ["metadata", "prereserved"]
        assert heap.initial_size == 512 * MiB and heap.role("prereserved")[0].used
    assert heap.role("hint") and all(t.at_hint for t in heap.role("hint"))
    b = real.beside(o)
    assert b is not None and b.real == real.AT_HINTS
    run = b.run("go1.11")
    assert run is not None and run.agrees and not run.outcome.violations and not run.outcome.lost


@pytest.mark.parametrize("runtime", realdemo.RUNTIMES, ids=lambda rt: f"{rt.toolchain}-{rt.arch}")
def test_each_go_runtime_meets_an_adversary_that_moves_its_own_heap(runtime, monkeypatch, shared_run):
    """One run of each row of arena demo --real: the program ends as that Go is known to, the adversary moved
    its calls, and the model under that Go's rule agrees."""
    need(runtime.toolchain)
    if runtime.arch == "amd64" and sysmem.NATIVE_BITS == 32:
        pytest.skip("an amd64 program cannot be traced from a 32-bit Python")
    # The program's run is made once for every backend's run of the suite (shared_run); the model, in each.
    run = tracer.run
    monkeypatch.setattr(tracer, "run", lambda *args, **kwargs: shared_run(
        f"demo {runtime.toolchain} {runtime.arch} {runtime.adversary}", lambda: run(*args, **kwargs)))
    attempt = realdemo.attempt(runtime, toolchains.build_program(runtime.toolchain, runtime.arch))
    assert attempt.reproduced, attempt.why
    assert attempt.outcome.rewritten > 0
