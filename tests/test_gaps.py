"""The confined space's gap index (arena/sysmem/_gaps.py) against a brute force and the real maps."""
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena import sysmem
from arena.sysmem import _gaps
from budget import budget

pytestmark = pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="a 32-bit process is not confined: the kernel places")

PAGE = sysmem.default().page_size
KiB, MiB = 1 << 10, 1 << 20


# -- the data structure alone, against a set of free pages ----------------------

LOW, PAGES = 16, 200  # a toy space of 200 pages; 4 entries a bucket split often


def model_gaps(free):
    """Maximal runs of free page numbers, as byte ranges."""
    out = []
    for p in sorted(free):
        if out and out[-1][1] == p * PAGE:
            out[-1][1] += PAGE
        else:
            out.append([p * PAGE, (p + 1) * PAGE])
    return [tuple(g) for g in out]


def brute_highest(gaps, size):
    return max((b for a, b in gaps if b - a >= size), default=None)


ranges = st.tuples(st.sampled_from(["occupy", "free"]), st.integers(LOW - 2, LOW + PAGES + 2), st.integers(1, 80))


@settings(max_examples=budget(300), deadline=None, database=None)
@given(st.lists(ranges, max_size=60))
def test_index_agrees_with_a_set_of_free_pages(ops):
    ix = _gaps.GapIndex(LOW * PAGE, (LOW + PAGES) * PAGE, PAGE, load=2)
    free = set()
    ix.free(0, 1 << 40)  # clipped to [low, high): everything free
    free.update(range(LOW, LOW + PAGES))
    for op, first, n in ops:
        pages = set(range(first, first + n)) & set(range(LOW, LOW + PAGES))
        if op == "occupy":
            assert ix.occupy(first * PAGE, (first + n) * PAGE) == (pages <= free)
            free -= pages
        else:
            ix.free(first * PAGE, (first + n) * PAGE)
            free |= pages
        gaps = model_gaps(free)
        assert ix.gaps() == gaps
        for size in {1, 2, 3, 17, 31, 32, 33, 34, 47, 64, 65, 100, n, PAGES}:
            assert ix.highest(size * PAGE) == brute_highest(gaps, size * PAGE), size
        assert ix.is_free(first * PAGE, (first + n) * PAGE) == (set(range(first, first + n)) <= free)


def test_size_classes_are_monotonic_and_exact_below_32_pages():
    classes = [_gaps.size_class(n) for n in range(1, 1 << 16)]
    assert classes == sorted(classes)
    assert classes[:31] == list(range(1, 32))


# -- the index of this process, against /proc/self/maps -----------------------------


@pytest.fixture
def space(memory32):
    """The process's confined space, read afresh, with a 64 MiB window at its top free."""
    s = memory32._space
    window = (s.index.high - 64 * MiB, s.index.high)
    if any(m.start < window[1] and window[0] < m.end for m in sysmem.mappings(below=window[1])):
        pytest.skip("the top of the 32-bit space is taken in this process")
    with s.lock:
        s.resync()
    return s


def maps_gaps(s):
    return sysmem.free_gaps(sysmem.mappings(below=s._index.high), s._index.low, s._index.high)


def assert_in_step(s):
    gaps = maps_gaps(s)
    assert s.index.gaps() == gaps
    for size in (PAGE, 16 * KiB, 33 * PAGE, MiB, 1 << 30):
        assert s.index.highest(size) == brute_highest(gaps, size)


op = st.one_of(
    st.tuples(st.just("reserve"), st.sampled_from(["none", "window", "live"]), st.integers(0, 16383), st.integers(1, 64)),
    st.tuples(st.just("exact"), st.just(""), st.integers(0, 16383), st.integers(1, 64)),
    st.tuples(st.just("release"), st.sampled_from(["live", "part", "span"]), st.integers(0, 16383), st.integers(1, 256)),
)


@settings(max_examples=budget(100), deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=25), look_each_time=st.booleans())
def test_index_follows_confined_reserve_exact_and_release(space, memory32, ops, look_each_time):
    """Read after every call, or only when a placement needs it (maps and
    unmaps wait in the log, and a release may cancel the map before it)."""
    high = space.index.high
    lo = high - 64 * MiB
    resyncs = space.resyncs
    live = []
    try:
        for kind, how, where, n in ops:
            size = n * PAGE
            at = lo + where * PAGE
            if kind == "reserve":
                hint = {"none": 0, "window": at, "live": live[where % len(live)][0] if live else 0}[how]
                hint = min(hint, high - size)
                gaps = maps_gaps(space)
                p = memory32.reserve(hint, size)
                assert p is not None
                live.append((p, size))
                if hint and any(a <= hint and hint + size <= b for a, b in gaps):
                    assert p == hint
                else:
                    assert p == brute_highest(gaps, size) - size
            elif kind == "exact":
                if at + size <= high:
                    p = memory32.reserve_exact(at, size)
                    if p is not None:
                        live.append((p, size))
            elif how == "live" and live:
                memory32.release(*live.pop(where % len(live)))
            else:
                # Part of a region, or a span over regions and free pages: munmap allows both.
                start = max(live[where % len(live)][0] + PAGE, lo) if how == "part" and live else at
                if start < high:
                    memory32.release(start, min(n * PAGE, high - start))
            if look_each_time:
                assert_in_step(space)
        # Nothing else maps below 4 GiB here: the index never had to read the maps again.
        assert space.resyncs == resyncs
    finally:
        for p, size in live:
            memory32.release(p, size)
        memory32.release(lo, 64 * MiB)
    assert_in_step(space)


def test_the_log_waits_for_a_placement_and_is_bounded(space, memory32):
    lo = space.index.high - 64 * MiB
    live = [lo + 2 * PAGE * i for i in range(_gaps._LOG_LIMIT + 10)]
    try:
        p = memory32.reserve(lo, PAGE)
        memory32.release(p, PAGE)
        assert space._log == []  # a release of the last map cancels it
        for at in live:
            assert memory32.reserve(at, PAGE) == at
        # Applied when it reached the limit: what a placement would wait for stays bounded.
        assert 0 < len(space._log) < _gaps._LOG_LIMIT
        assert_in_step(space)
        assert space._log == []
    finally:
        for at in live:
            memory32.release(at, PAGE)
    assert_in_step(space)


def test_unmaps_in_reverse_order_cancel_maps_or_merge(space, memory32):
    lo = space.index.high - 64 * MiB
    pages = [lo + PAGE * i for i in range(8)]
    for at in pages:
        assert memory32.reserve(at, PAGE) == at
    for at in reversed(pages):
        memory32.release(at, PAGE)
    assert space._log == []  # each release cancelled the map logged last
    for at in pages:
        assert memory32.reserve(at, PAGE) == at
    assert_in_step(space)  # the maps are in the index now
    for at in reversed(pages):
        memory32.release(at, PAGE)
    assert space._log == [(lo, -8 * PAGE)]  # one unmap for the index
    assert_in_step(space)


def test_mapping_made_behind_the_index_is_detected_and_avoided(space, memory32, memory):
    top = space.index.highest(16 * KiB)
    # The native layer maps where the next placement would go, unseen by the index.
    theirs = memory.reserve_exact(top - 16 * KiB, 16 * KiB)
    assert theirs == top - 16 * KiB
    mine = []
    try:
        expected = brute_highest(maps_gaps(space), 16 * KiB) - 16 * KiB
        resyncs = space.resyncs
        p = memory32.reserve(0, 16 * KiB)
        mine.append(p)
        # MAP_FIXED_NOREPLACE refused the stale gap; the maps were read again.
        assert p == expected == theirs - 16 * KiB
        assert space.resyncs == resyncs + 1
        assert_in_step(space)
        # A hint the index believes free but is not: refused, placed as the kernel would.
        other = memory.reserve_exact(p - MiB, MiB)
        assert other == p - MiB
        try:
            q = memory32.reserve(other, 16 * KiB)
            mine.append(q)
            assert q == other - 16 * KiB
            assert space.resyncs == resyncs + 2
            assert_in_step(space)
        finally:
            memory.release(other, MiB)
        # reserve_exact over a native mapping the index believes free: None, and the index learns it.
        third = memory.reserve_exact(q - MiB, PAGE)
        try:
            assert memory32.reserve_exact(third, PAGE) is None
            assert space.resyncs == resyncs + 3
            assert_in_step(space)
        finally:
            memory.release(third, PAGE)
    finally:
        memory.release(theirs, 16 * KiB)
        for p in mine:
            memory32.release(p, 16 * KiB)


def test_release_through_the_native_layer_is_found_again_by_a_hint(space, memory32, memory):
    """The documented limitation and its way out: an unmap the index did not see
    makes it pick a lower gap until a hint (or reserve_exact) lands there."""
    p = memory32.reserve(0, 16 * KiB)
    memory.release(p, 16 * KiB)
    truth = brute_highest(maps_gaps(space), 16 * KiB)
    assert truth == p + 16 * KiB
    assert space.index.highest(16 * KiB) == p  # stale: the index still sees p taken
    resyncs = space.resyncs
    # The kernel decides about a hint, not the index: it is honoured, and proves
    # the index stale once the index catches up with it (assert_in_step reads it).
    assert memory32.reserve(p, 16 * KiB) == p
    assert space.resyncs == resyncs
    assert_in_step(space)
    assert space.resyncs == resyncs + 1
    memory.release(p, 16 * KiB)
    # reserve_exact on a range the index thinks taken does the same.
    assert memory32.reserve_exact(p, 16 * KiB) == p
    assert_in_step(space)
    assert space.resyncs == resyncs + 2
    memory32.release(p, 16 * KiB)
    # After that, placement is the kernel's again.
    q = memory32.reserve(0, 16 * KiB)
    try:
        assert q == p
    finally:
        memory32.release(q, 16 * KiB)
    assert_in_step(space)


def test_no_room_is_checked_against_the_maps_before_it_is_answered(space, memory32, memory):
    gaps = maps_gaps(space)
    big = max(b - a for a, b in gaps)
    p = memory32.reserve(0, big)
    assert p is not None
    memory.release(p, big)  # behind the index's back: it believes nothing that large is free
    assert space.index.highest(big) is None
    q = memory32.reserve(0, big)
    try:
        assert q == p
        assert_in_step(space)
    finally:
        memory32.release(q, big)
    assert_in_step(space)


def test_instances_share_one_index(space):
    a, b = sysmem.default(32), sysmem.CtypesMemory(32)
    assert a._space is b._space is space
    p = a.reserve(0, MiB)
    b.release(p, MiB)
    assert_in_step(space)


def test_threads_keep_the_index_in_step(space):
    errors = []

    def work(seed):
        m = sysmem.default(32)
        try:
            for i in range(200):
                size = ((seed * 7 + i) % 5 + 1) * PAGE
                p = m.reserve(0, size)
                if m.reserve_exact(p - size, size) is not None:
                    m.release(p - size, size)
                m.release(p, size)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert_in_step(space)
