"""The arena against the real kernel of a 32-bit process (issue 5).

Every placement here is the kernel's own answer: the tests only arrange the
space with blockers (``Crowd``) and holes, never script or reserve_exact an
answer. Linux searches a free range for a refused hint top-down from
``mmap_base`` (just below the stack's gap) and takes the highest free gap that
fits; only if nothing below ``mmap_base`` fits does it search bottom-up from
``TASK_SIZE / 3`` to the top, which also reaches the ~128 MiB between
``mmap_base`` and the stack. The tests lean on the first rule only.
"""
import contextlib
import time

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.policy.layout import LAYOUT_32, MiB
from arena.spaces import Crowd, reservations

KiB = 1 << 10
PAGE = LAYOUT_32.page_size
META = LAYOUT_32.metadata_size

pytestmark = [
    pytest.mark.skipif(sysmem.NATIVE_BITS != 32, reason="needs a real 32-bit process: run `make test32`"),
    pytest.mark.needs_clean_space,
]


# -- helpers -------------------------------------------------------------------


@pytest.fixture
def mem():
    return sysmem.default(address_bits=32)


def _stack():
    return next(m for m in sysmem.mappings() if m.name == "[stack]")


def _top_fill(mem):
    """A bound at or above mmap_base and far below the stack.

    The kernel keeps at least 128 MiB (and the stack rlimit) between the top of
    the space and mmap_base; blocking up to here blocks every gap the top-down
    search can see without ever coming near the stack.
    """
    return min(mem.limit - 128 * MiB, _stack().start - 64 * MiB)


def _python_hole(mem, low, high, size=32 * MiB):
    """Room for Python's own mmaps: the top of the highest big free gap in ``[low, high)``.

    New mappings of the interpreter (obmalloc arenas, large malloc blocks) go
    to the highest free gap below mmap_base that fits, so they land here and not
    in the holes a test keeps for the arena, nor in ranges ``Crowd.fill`` is
    about to take.
    """
    gaps = [g for g in sysmem.free_gaps(sysmem.mappings(), low, high) if g[1] - g[0] >= 2 * size]
    assert gaps, f"no free gap of {2 * size:#x} bytes in [{low:#x}, {high:#x})"
    end = gaps[-1][1] // MiB * MiB
    return end - size, end


def _fill(crowd, low, high, holes):
    """``crowd.fill`` that tolerates the interpreter mapping something meanwhile (it retries)."""
    for attempt in range(3):
        try:
            return crowd.fill(low, high, holes)
        except RuntimeError:
            if attempt == 2:
                raise


def _big_gaps(mem, size, low=None, high=None):
    low = mem.lowest if low is None else low
    high = mem.limit if high is None else high
    return [(a, b) for a, b in sysmem.free_gaps(sysmem.mappings(), low, high) if b - a >= size]


def _hex(gaps):
    return ", ".join(f"[{a:#x}, {b:#x})" for a, b in gaps)


@contextlib.contextmanager
def _python_headroom(size=8 * MiB):
    """Keep ``size`` bytes free inside glibc's heap while the space is full.

    With every address taken, obmalloc cannot map a new arena and falls back to
    malloc, and malloc cannot grow its heap: Python itself would raise
    MemoryError (or fail somewhere less polite). Blocks of 1000 bytes go to
    malloc, not obmalloc; freeing all but the last one leaves one big free chunk
    that glibc cannot trim (a live block sits above it), which then serves
    every allocation of the interpreter until the space is given back.
    """
    pad = [bytes(1000) for _ in range(size // 1024)]
    keep = pad.pop()
    del pad
    try:
        yield
    finally:
        del keep


# -- the kernel's own low mmap ---------------------------------------------------

# The trace of Go issue 20259: arena at 0x70000000, arena_end 0x78000000, and
# the 256 MiB reservation hinted at 0x78000000 came back at 0x10000000.
TRACE_START = 0x70000000
TRACE_END = 0x78000000
LOW_HOLE = (0x10000000, 0x20000000)  # exactly one growth step, below arena_used


@pytest.fixture
def low_mmap(mem):
    """An arena at TRACE_START whose next growth the kernel itself answers at 0x10000000.

    Arena: metadata [0x5fe00000, 0x70000000), arena [0x70000000, 0x78000000),
    120 MiB handed out (8 MiB left: under go1.9's strand limit). Then blockers
    on the hint [0x78000000, +256 MiB) and on every free byte from 0x20000000
    up to mmap_base, except LOW_HOLE and a 32 MiB hole for Python (and for the
    fallback under "fixed") near the top. The only gap the top-down search can
    fit 256 MiB into is LOW_HOLE.
    """

    def make(rule):
        a = arena.Arena(LAYOUT_32, rule, memory=mem, start=TRACE_START, initial_size=TRACE_END - TRACE_START)
        crowd = Crowd(mem)
        try:
            first = a.events[0]
            assert (first.verdict, first.returned) == ("reserved", TRACE_START - META), a.events
            assert (a.arena_used, a.arena_end) == (TRACE_START, TRACE_END)
            live = a.sys_alloc(120 * MiB)
            assert live == TRACE_START
            top = _top_fill(mem)
            pyhole = _python_hole(mem, TRACE_END, top)
            crowd.occupy(TRACE_END, 256 * MiB)  # the hint
            _fill(crowd, LOW_HOLE[1], top, [pyhole])
            assert _big_gaps(mem, 256 * MiB, LOW_HOLE[0], top) == [LOW_HOLE], "the space was not arranged as planned"
            return a, crowd, live, pyhole
        except BaseException:
            crowd.release()
            a.close()
            raise

    made = []

    def factory(rule):
        made.append(make(rule))
        return made[-1]

    yield factory
    for a, crowd, _, _ in made:
        crowd.release()
        a.close()


def _growth(a):
    grows = [e for e in a.events if e.step == "grow"]
    assert len(grows) == 1, grows
    g = grows[0]
    assert (g.hint, g.size) == (TRACE_END, 256 * MiB)
    # The kernel's own answer: in the hole, below arena_used.
    assert LOW_HOLE[0] <= g.returned and g.returned + g.size <= LOW_HOLE[1], f"kernel answered {g.returned:#x}"
    assert g.returned < g.before.arena_used
    print(f"{a.rule}: hint {g.hint:#x} occupied, hole {_hex([LOW_HOLE])}, kernel answered {g.returned:#x}"
          f" (arena_used {g.before.arena_used:#x}) -> {g.verdict}")
    return g


def test_low_mmap_legacy_lowers_arena_used(low_mmap):
    a, _, live, _ = low_mmap("legacy")
    p = a.sys_alloc(16 * MiB)
    g = _growth(a)
    assert g.verdict == "accepted" and g.returned == 0x10000000
    assert p == 0x10000000 and a.arena_used == 0x11000000 and a.arena_end == 0x20000000
    found = verify(a)
    kinds = sorted(v.kind for v in found)
    assert kinds == ["arena_used-decreased", "not-heap"], found
    assert not a.contains(live)  # 120 MiB of live memory stopped being heap


def test_low_mmap_fixed_rejects_and_falls_back(low_mmap):
    a, _, live, pyhole = low_mmap("fixed")
    used = a.arena_used
    p = a.sys_alloc(16 * MiB)
    g = _growth(a)
    assert g.verdict == "rejected" and "not above arena_end" in g.reason
    assert [e.verdict for e in a.events[-2:]] == ["rejected", "fallback"]
    fb = a.events[-1]
    assert fb.size == 16 * MiB + PAGE and p is not None
    # The fallback is wherever the kernel likes: the highest gap that fits,
    # which is the hole kept for Python near the top.
    assert pyhole[0] <= fb.returned < pyhole[1], f"fallback at {fb.returned:#x}"
    print(f"fixed: fallback of {fb.size:#x} at {fb.returned:#x} (Python's hole {_hex([pyhole])})")
    assert a.arena_used == max(used, p + 16 * MiB)
    assert a.stats.rejections == 1 and a.stats.released_after_rejection == 256 * MiB
    assert all(LOW_HOLE[1] <= r.start or r.end <= LOW_HOLE[0] for r in a.regions)  # given back
    assert a.contains(live) and a.contains(p)
    assert verify(a) == []


def test_low_mmap_go19_moves_arena_alloc_only(low_mmap):
    a, _, live, _ = low_mmap("go1.9")
    used = a.arena_used
    assert a.arena_end - a.arena_alloc < LAYOUT_32.strand_limit
    p = a.sys_alloc(16 * MiB)
    g = _growth(a)
    assert g.verdict == "accepted" and g.returned == 0x10000000
    assert p == 0x10000000 and a.arena_alloc == 0x11000000 and a.arena_end == 0x20000000
    assert a.arena_used == used == TRACE_START + 120 * MiB
    assert a.contains(live) and a.contains(p)
    assert verify(a) == []


# -- exhaustion ----------------------------------------------------------------

# Each size is tried until sys_alloc says None, then the next smaller one.
# The kernel's search never answers below 64 KiB here, although
# /proc/sys/vm/mmap_min_addr says 4096: it uses max(mmap_min_addr,
# CONFIG_LSM_MMAP_MIN_ADDR), and the latter is 65536 on this kernel.
KERNEL_LOWEST = 0x10000
SIZES = (128 * MiB, 32 * MiB, 8 * MiB, 2 * MiB, 512 * KiB, 128 * KiB, 32 * KiB, 8 * KiB)
MAX_CALLS = 4000


@pytest.mark.parametrize("rule", arena.RULES)
def test_exhaustion(mem, rule):
    """Grow until the space is full: ints, then None; no crash; all given back.

    go1.9 falls back to a small mapping anywhere when growth finds no room, so
    it fills the whole 4 GiB. fixed and legacy return None as soon as a
    256 MiB growth step finds no room (Go 1.8 did), so they stop when no gap of
    256 MiB is left. A PROT_NONE blocker over the 16 MiB below the stack's
    guard gap keeps read-write mappings out of it, so the stack can still grow
    by the guard gap while the space is full. Only OSError (a failed system
    call, documented) is caught, and the test still demands none: none of the
    documented exceptions (bad arguments, a closed arena, a commit failing for
    another reason than ENOMEM) can come from valid calls on an open arena.
    Anything else propagates. MemoryError from the interpreter itself (obmalloc
    and malloc both need address space) is kept away by ``_python_headroom``;
    measured without it, Python ran out after ~5000 small objects once full.
    """
    count0, reserved0 = sysmem.mapping_count(), reservations()
    # Everything the loop needs is allocated before the space fills.
    results = [0] * MAX_CALLS
    errors = []
    calls = 0
    t0 = time.monotonic()
    with _python_headroom():
        guard = Crowd(mem)
        stack = _stack().start
        guard.occupy(stack - 17 * MiB, 16 * MiB)
        a = arena.Arena(LAYOUT_32, rule, memory=mem)
        try:
            for size in SIZES:
                while calls < MAX_CALLS:
                    try:
                        p = a.sys_alloc(size)
                    except OSError as exc:
                        errors.append(exc)
                        break
                    results[calls] = p
                    calls += 1
                    if p is None:
                        break
            last = a.sys_alloc(PAGE)
            stack = _stack().start
            full = sysmem.free_gaps(sysmem.mappings(), max(mem.lowest, KERNEL_LOWEST), mem.limit)
            held, fallbacks = sum(r.size for r in a.regions), a.stats.fallbacks
            sound = verify(a)
        finally:
            a.close()
            guard.release()
    elapsed = time.monotonic() - t0
    assert calls < MAX_CALLS
    assert errors == []
    answers = results[:calls]
    assert all(p is None or isinstance(p, int) for p in answers)
    assert answers.count(None) == len(SIZES) and answers[-1] is None and last is None
    # Nothing stays free that the rule could still have used.
    below_stack = [(lo, hi) for lo, hi in full if hi == stack]
    others = [(lo, hi) for lo, hi in full if hi != stack]
    assert all(hi - lo <= 1 * MiB for lo, hi in below_stack), _hex(below_stack)
    smallest = 2 * PAGE if rule == "go1.9" else LAYOUT_32.growth_step
    assert [g for g in others if g[1] - g[0] >= smallest] == [], _hex(others)
    if rule == "go1.9":
        assert fallbacks > 0 and held > 3 * 1024 * MiB
    assert rule == "legacy" or sound == [], sound
    # Everything given back.
    assert reservations() == reserved0
    count = sysmem.mapping_count()
    assert abs(count - count0) <= 3
    print(f"{rule}: {calls} calls, held {held / MiB:.0f} MiB, {fallbacks} fallbacks, {elapsed:.2f} s,"
          f" free afterwards: {_hex([g for g in full if g[1] - g[0] >= 2 * PAGE]) or 'nothing >= 16 KiB'},"
          f" mappings {count0} -> {count}")


# -- the first reservation in a crowded space -------------------------------------

LADDER = LAYOUT_32.first_sizes  # 512, 256, 128, 0 MiB (+ 258 MiB metadata each)


@pytest.mark.parametrize(
    "gap, where, fits",
    [
        (800 * MiB, "high", 512 * MiB),
        (600 * MiB, "hint", 256 * MiB),
        (450 * MiB, "high", 128 * MiB),
        (300 * MiB, "high", 0),
        (200 * MiB, "high", None),
    ],
)
def test_first_reservation_ladder_in_a_crowded_space(mem, gap, where, fits):
    """Only one free gap can hold 258 MiB: the ladder takes the largest step that fits it.

    "hint": the gap starts where Go's 32-bit hint points (1 MiB above the brk),
    so the step that fits is placed exactly at the hint. "high": the gap is at
    0xb0000000 and the kernel's own search finds it. Everything else from 8 MiB
    above the brk to mmap_base is blocked, except 32 MiB kept for Python.
    """
    heap_end = max((m.end for m in sysmem.mappings() if m.name == "[heap]"), default=0)
    if where == "hint":
        lo = -(-(heap_end + MiB) // MiB) * MiB
    else:
        lo = 0xB0000000
    hole = (lo, lo + gap)
    count0 = sysmem.mapping_count()
    with Crowd(mem) as crowd:
        top = _top_fill(mem)
        low = heap_end + 8 * MiB
        pyhole = _python_hole(mem, hole[1], top)
        _fill(crowd, low, top, [hole, pyhole])
        # Nowhere but the hole (with at most the few MiB between the brk and
        # the hint) can take even the smallest step.
        big = _big_gaps(mem, META)
        assert len(big) == (gap >= META) and all(
            b == hole[1] and 0 <= hole[0] - a <= 8 * MiB for a, b in big
        ), f"precondition: free gaps >= {META:#x}: {_hex(big)}"
        if fits is None:
            with pytest.raises(arena.ReservationFailed):
                arena.Arena(LAYOUT_32, "fixed", memory=mem)
            assert _big_gaps(mem, 0, hole[0], hole[1]) == [hole]  # nothing held
        else:
            with arena.Arena(LAYOUT_32, "fixed", memory=mem) as a:
                events = a.events
                tried = [s for s in LADDER if s >= fits]
                assert [e.verdict for e in events] == ["no-room"] * (len(tried) - 1) + ["reserved"], events
                assert [e.size for e in events] == [META + s for s in tried]
                first = events[-1]
                assert hole[0] <= first.returned and first.returned + first.size <= hole[1], f"{first.returned:#x}"
                if where == "hint":
                    assert first.returned == first.hint
                assert a.arena_used == first.returned + META
                assert a.arena_end - a.arena_used == fits
                assert a.arena_start == 0
                assert verify(a) == []
                print(f"gap {_hex([hole])}: {fits // MiB} MiB arena at {first.returned:#x} (hint {first.hint:#x})")
    assert abs(sysmem.mapping_count() - count0) <= 3
