"""Exhaustion by vm.max_map_count, in its own process (run by tests/test_hardening_exhaustion.py).

At the limit the interpreter itself can no longer map memory, so this runs
apart from pytest, with PYTHONMALLOC=malloc and a pre-grown glibc heap (see
``headroom``). Prints one JSON line with what happened; exit status 0.

Why the limit is reached at all: a 32-bit fallback mapping is n + 8 KiB
reserved PROT_NONE, of which the first n bytes are committed read-write. The
confined layer places each one top-down, directly below the previous one, so
they are adjacent; but a read-write part always touches the PROT_NONE tail of
its neighbour, and mappings with different permissions never merge: every
fallback costs two entries of /proc/self/maps. With n = 8 KiB the 4 GiB space
would hold 262,144 fallbacks, so the 65,530 mappings of vm.max_map_count run
out first (after ~32,000). Driving 32,000 fallbacks would take minutes, so
this fills all but HEADROOM of the limit with mappings of its own (alternating
permissions in one block: they cannot merge either), then lets the arena take
the rest.
"""
import ctypes
import dataclasses
import json
import mmap
import sys

import arena
from arena import sysmem
from arena.spaces import reservations

HEADROOM = 80


def main() -> int:
    rule = sys.argv[1]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    limit = int(open("/proc/sys/vm/max_map_count").read())
    before, count0 = reservations(), sysmem.mapping_count()
    # Growth from 0x80000000 by a 3.75 GiB step would pass 4 GiB: every request
    # beyond the (empty) first block is a fallback, under every rule.
    layout = dataclasses.replace(arena.LAYOUT_32, first_sizes=(0,), growth_step=0xF0000000)
    a = arena.Arena(layout, rule, start=0x80000000)
    results = [None] * 2000
    errors = []
    # headroom: one big free chunk in glibc's heap serves the interpreter at the limit.
    pad = [bytes(1000) for _ in range(64 * 1024)]
    keep = pad.pop()
    del pad
    page = mmap.PAGESIZE
    k = max(0, (limit - sysmem.mapping_count() - HEADROOM) // 2)
    block = libc.mmap(None, (2 * k + 1) * page, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    for i in range(k):
        libc.mprotect(block + (2 * i + 1) * page, page, mmap.PROT_READ)
    filled = sysmem.mapping_count()
    calls = 0
    nones_in_a_row = 0
    for calls in range(1, len(results) + 1):
        try:
            p = a.sys_alloc(8192)
        except Exception as exc:  # anything but a documented answer is reported
            errors.append(f"{type(exc).__name__}: {exc}")
            break
        results[calls - 1] = p
        nones_in_a_row = nones_in_a_row + 1 if p is None else 0
        if nones_in_a_row == 5:
            break
    at_limit = sysmem.mapping_count()
    libc.munmap(block, (2 * k + 1) * page)
    verdicts = sorted({e.verdict for e in a.events})
    fallbacks = a.stats.fallbacks
    a.close()
    del keep
    print(json.dumps({
        "limit": limit, "filled": filled, "at_limit": at_limit, "calls": calls, "errors": errors,
        "ints": sum(isinstance(p, int) for p in results[:calls]), "nones": nones_in_a_row,
        "last": results[calls - 1], "fallbacks": fallbacks, "verdicts": verdicts,
        "leaked": sorted(reservations() - before), "count_after": sysmem.mapping_count(), "count0": count0,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
