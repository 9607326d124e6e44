"""Threads: several threads calling sys_alloc at once get disjoint allocations, and verify is clean."""
import sys
import threading

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.spaces import peek, poke
from budget import budget
from hardening_util import SMALL32, SMALL64

THREADS = 8
CALLS = budget(200, least=20)
# How long the threads of the views test race (seconds): the old bug showed within one.
RACE = budget(30, least=10) / 10


@pytest.mark.parametrize("layout", [SMALL32] + ([SMALL64] if sysmem.NATIVE_BITS == 64 else []), ids=lambda layout: layout.name.replace(" ", "-"))
@pytest.mark.parametrize("rule", arena.RULES)
def test_concurrent_sys_alloc(rule, layout):
    got = [[] for _ in range(THREADS)]
    errors = []
    start = threading.Barrier(THREADS)

    with arena.Arena(layout, rule) as a:
        def work(k):
            try:
                start.wait()
                for i in range(CALLS):
                    n = layout.page_size * (1 + (i * 7 + k) % 16)
                    p = a.sys_alloc(n)
                    if p is not None:
                        poke(p, k.to_bytes(2, "little") * (n // 2))
                        got[k].append((p, n))
                    if i % 50 == 0:
                        a.contains(p or 0)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        spans = sorted((p, p + n, k) for k in range(THREADS) for p, n in got[k])
        assert len(spans) == sum(map(len, got)) > THREADS * CALLS // 2
        for (a0, a1, _), (b0, b1, _) in zip(spans, spans[1:]):
            assert a1 <= b0, f"[{a0:#x}, {a1:#x}) overlaps [{b0:#x}, {b1:#x})"
        # Each thread's bytes are still its own: nobody wrote into another's allocation.
        for p, end, k in spans:
            assert peek(p, end - p) == k.to_bytes(2, "little") * ((end - p) // 2)
        assert sorted(a.allocations) == [(p, end - p) for p, end, _ in spans]
        assert rule == "legacy" or verify(a) == []


def test_views_from_several_arenas_on_several_threads():
    # Every arena shares the cache of ctypes array types behind views; four
    # threads making views of many sizes keep evicting from it at once. It
    # used to be evicted without a lock: a bare KeyError from view() within a second.
    errors, stop = [], threading.Event()

    def work(k, a):
        try:
            p = a.sys_alloc(16 << 20)
            i = 0
            while not stop.is_set():
                size = (1 + (i * 7919 + k * 104729) % 2048) * 8192  # far more sizes than the cache keeps
                v = a.view(p, size)
                v[-1] = k
                v.release()
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)
            stop.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    arenas = [arena.Arena(arena.native_layout()) for _ in range(4)]
    try:
        threads = [threading.Thread(target=work, args=(k, a)) for k, a in enumerate(arenas)]
        for t in threads:
            t.start()
        stop.wait(RACE)
        stop.set()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        for a in arenas:
            a.close()
    assert errors == []
