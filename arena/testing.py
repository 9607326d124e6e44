"""Helpers for tests that provoke placement bugs with real mappings."""
from __future__ import annotations

import ctypes


def poke(addr: int, data: bytes) -> None:
    """Write ``data`` at ``addr``: only ever into committed memory you own."""
    ctypes.memmove(addr, data, len(data))


def peek(addr: int, size: int) -> bytes:
    """Read ``size`` bytes at ``addr``: only ever from committed memory you own."""
    return ctypes.string_at(addr, size)


def reservations() -> frozenset[tuple[int, int, str]]:
    """Anonymous MAP_NORESERVE mappings (what the OS layer makes), from /proc/self/smaps.

    Python's own allocator never uses MAP_NORESERVE, so a difference between two
    calls is mappings somebody reserved through the OS layer and did not release.
    """
    with open("/proc/self/smaps", "rb") as f:
        text = f.read().decode("utf-8", "replace")
    found = []
    current = None
    for line in text.splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and not head[0].endswith(":"):
            lo, _, hi = head[0].partition("-")
            anonymous = len(head) < 6
            current = (int(lo, 16), int(hi, 16), head[1]) if anonymous else None
        elif head[0] == "VmFlags:" and current is not None and "nr" in line.split():
            found.append(current)
    return frozenset(found)
