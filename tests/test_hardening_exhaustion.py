"""Exhaustion is graceful: a clean None when the kernel refuses, and close() gives all back.

Two ways a 32-bit arena runs out, whichever comes first:

- the 4 GiB address space, with large fallbacks (1 MiB here: ~3,900 of them,
  two map entries each, far below vm.max_map_count), tested in this process;
- vm.max_map_count, with small fallbacks (8 KiB: 2 entries each, 262,144 would
  fit the space), tested in a subprocess (tests/exhaust_target.py explains why
  and how) because at the limit the interpreter itself cannot map memory.

Either way sys_alloc answers addresses, then None (never an exception: ENOMEM
from the commit that would split one mapping too many is "out of memory"
too), and close() returns the reservations to their baseline.
"""
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.spaces import reservations

MiB = 1 << 20
FALLBACK_ONLY = dataclasses.replace(arena.LAYOUT_32, first_sizes=(0,), growth_step=0xF0000000)
TARGET = Path(__file__).with_name("exhaust_target.py")


@pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="tests/test_i386.py exhausts a real 32-bit space")
@pytest.mark.parametrize("rule", arena.RULES)
def test_address_space_runs_out_cleanly(rule):
    before, count0 = reservations(), sysmem.mapping_count()
    t0 = time.monotonic()
    a = arena.Arena(FALLBACK_ONLY, rule, start=0x80000000)
    answers = []
    try:
        for _ in range(5000):
            p = a.sys_alloc(MiB)
            answers.append(p)
            if p is None:
                break
        # Full: smaller requests may still fit small gaps, then None too.
        for n in (256 * 1024, 64 * 1024, 8192):
            while a.sys_alloc(n) is not None:
                pass
        assert a.sys_alloc(8192) is None
        assert verify(a) == [] or rule == "legacy"
        free = [g for g in sysmem.free_gaps(sysmem.mappings(), a.memory.lowest, a.memory.limit) if g[1] - g[0] >= 2 * 8192]
        held = sum(r.size for r in a.regions)
    finally:
        a.close()
    assert answers[-1] is None and all(isinstance(p, int) for p in answers[:-1])
    assert len(answers) > 3000 and held > 3 * 1024 * MiB
    assert free == [], "room was left that a fallback could have used"
    assert reservations() == before
    # The interpreter's own mappings (obmalloc arenas, malloc'd blocks) may differ a little.
    assert sysmem.mapping_count() - count0 <= 32
    print(f"{rule}: {len(answers) - 1} fallbacks of 1 MiB, {held / MiB:.0f} MiB held, {time.monotonic() - t0:.1f} s")


@pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="fills the map count of a 64-bit process")
@pytest.mark.parametrize("rule", arena.RULES)
def test_max_map_count_runs_out_cleanly(rule):
    env = dict(os.environ, PYTHONMALLOC="malloc", PYTHONPATH=str(TARGET.parent.parent))
    out = subprocess.run([sys.executable, str(TARGET), rule], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, f"return code {out.returncode}:\n{out.stdout}\n{out.stderr}"
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["errors"] == []
    assert r["ints"] > 10 and r["last"] is None and r["nones"] == 5
    assert r["at_limit"] >= r["limit"] - 2, "the limit was not reached"
    assert "out-of-memory" in r["verdicts"]
    assert r["leaked"] == []
    assert r["count_after"] - r["count0"] <= 32
