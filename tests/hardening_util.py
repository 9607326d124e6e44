"""Helpers shared by the hardening tests: foreign mappings and the call-log check."""
from __future__ import annotations

import ctypes
import dataclasses
import mmap

from arena import LAYOUT_32, LAYOUT_64, sysmem
from arena.policy.layout import MiB

# libc's own calls as the ctypes backend declares them: foreign mappings are
# made with them directly, not through the OS layer.
from arena.sysmem._ctypes import _MAP_FIXED_NOREPLACE, _mmap, _mprotect, _munmap

# Cheap layouts: small first reservations and growth steps, so a cycle or a
# growth costs a few syscalls.
SMALL32 = dataclasses.replace(LAYOUT_32, name="32-bit small", metadata_size=8192, first_sizes=(16 * MiB,), growth_step=16 * MiB)
SMALL64 = dataclasses.replace(LAYOUT_64, name="64-bit small", first_sizes=(16 * MiB,), growth_step=16 * MiB)
LAYOUTS = [SMALL32, LAYOUT_32] + ([SMALL64, LAYOUT_64] if sysmem.NATIVE_BITS == 64 else [])


class Foreign:
    """Somebody else's mappings (plain mmap, not through the OS layer), filled with known bytes."""

    def __init__(self) -> None:
        self.maps: list[tuple[int, int, str, bytes]] = []

    def place(self, addr: int, size: int, writable: bool, seed: int) -> bool:
        """Map exactly ``[addr, addr+size)`` if it is free; False if not."""
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        p = _mmap(addr, size, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED_NOREPLACE, -1, 0)
        if p in (None, (1 << sysmem.NATIVE_BITS) - 1):
            return False
        if p != addr:
            _munmap(p, size)
            return False
        data = bytes((seed * 131 + i * 7) & 0xFF for i in range(256)) * (size // 256)
        ctypes.memmove(addr, data, size)
        if not writable:
            assert _mprotect(addr, size, mmap.PROT_READ) == 0
        self.maps.append((addr, size, "rw-p" if writable else "r--p", data))
        return True

    def damaged(self) -> list[str]:
        """Every foreign mapping that is no longer all there, with its permissions and bytes."""
        maps = sysmem.mappings()
        out = []
        for addr, size, perms, data in self.maps:
            cover = [m for m in maps if m.start < addr + size and addr < m.end]
            if not cover or cover[0].start > addr or cover[-1].end < addr + size or any(m.perms != perms for m in cover) or any(
                a.end != b.start for a, b in zip(cover, cover[1:])
            ):
                out.append(f"[{addr:#x}, {addr + size:#x}) {perms}: now {[(hex(m.start), hex(m.end), m.perms) for m in cover]}")
            elif ctypes.string_at(addr, size) != data:
                out.append(f"[{addr:#x}, {addr + size:#x}): bytes changed")
        return out

    def release(self) -> None:
        while self.maps:
            addr, size, _, _ = self.maps.pop()
            _munmap(addr, size)


def commits_inside_reservations(calls) -> list[str]:
    """Replay a ScriptedMemory call log: every commit must lie in a range reserved and not yet released."""
    held: list[tuple[int, int]] = []
    bad = []
    for c in calls:
        if c.op in ("reserve", "reserve_exact") and isinstance(c.result, int):
            held.append((c.result, c.result + c.size))
        elif c.op == "release" and c.result is None:
            lo, hi = c.addr, c.addr + c.size
            held = [piece for a, b in held for piece in ((a, min(b, lo)), (max(a, hi), b)) if piece[0] < piece[1]]
        elif c.op == "commit":
            lo, hi = c.addr, c.addr + c.size
            cursor = lo
            for a, b in sorted(held):
                if a <= cursor < b:
                    cursor = b
            if cursor < hi:
                bad.append(f"commit [{lo:#x}, {hi:#x}) outside the arena's reservations {[(hex(a), hex(b)) for a, b in held]}")
    return bad
