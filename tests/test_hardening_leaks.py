"""Nothing leaks: 10,000 create / use / close cycles return the mappings to their baseline and keep RSS flat."""
import gc
import time

import psutil
import pytest

import arena
from arena import sysmem
from arena.spaces import peek, poke, reservations
from budget import budget
from hardening_util import SMALL32, SMALL64

CYCLES = budget(10_000)
RSS_SLACK = 16 << 20  # bytes the interpreter may grow by (caches, free lists)


def cycle(layout, rule, i):
    # A 32-bit arena placed by its start skips Go's "above the binary" hint, which
    # reads /proc/self/maps (the cost of a cycle would be that read); every
    # hundredth cycle still takes that path.
    start = 0x40000000 if layout.address_bits == 32 and i % 100 else None
    with arena.Arena(layout, rule, start=start) as a:
        n = layout.page_size * (1 + i % 4)
        p = a.sys_alloc(n)
        poke(p, b"leak")
        assert peek(p, 4) == b"leak"
        if i % 7 == 0:
            a.sys_alloc(layout.growth_step)  # a second block


@pytest.mark.parametrize("layout", [SMALL32] + ([SMALL64] if sysmem.NATIVE_BITS == 64 else []), ids=lambda layout: layout.name.replace(" ", "-"))
def test_ten_thousand_cycles_leak_nothing(layout):
    proc = psutil.Process()
    for i in range(200):  # warm up: imports, caches, free lists
        cycle(layout, arena.RULES[i % 3], i)
    gc.collect()
    before, count0, rss0 = reservations(), sysmem.mapping_count(), proc.memory_info().rss
    t0 = time.monotonic()
    for i in range(CYCLES):
        cycle(layout, arena.RULES[i % 3], i)
    elapsed = time.monotonic() - t0
    gc.collect()
    assert reservations() == before
    assert sysmem.mapping_count() - count0 <= 8
    grown = proc.memory_info().rss - rss0
    assert grown < RSS_SLACK, f"RSS grew by {grown / 2**20:.1f} MiB over {CYCLES} cycles"
    print(f"{layout.name}: {CYCLES} cycles in {elapsed:.1f} s, RSS {grown / 1024:+.0f} KiB")
