"""Where in the address space the benchmarks work: free hints and the scale ballast."""
from __future__ import annotations

from arena import sysmem

MiB = 1 << 20
GO_HINT_64 = 0x00C0 << 32  # Go's first 64-bit arena hint, free in a fresh process


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


def free_hint(mem: sysmem.Memory, size: int) -> int:
    """A free, 1 MiB-aligned address where ``size`` bytes fit and the kernel takes the hint."""
    lo, hi = mem.lowest, mem.limit
    gaps = [(_round_up(a, MiB), b) for a, b in sysmem.free_gaps(sysmem.mappings(), lo, hi)]
    if mem.address_bits == 64:
        for a, b in gaps:
            if a <= GO_HINT_64 and GO_HINT_64 + size <= b:
                return GO_HINT_64
    # The middle of the largest gap: away from the brk below and the mmap area above.
    a, b = max(gaps, key=lambda g: g[1] - g[0])
    if b - a < size + 2 * MiB:
        raise MemoryError(f"no free gap of {size:#x} bytes below {hi:#x}")
    return _round_up(a + (b - a - size) // 2, MiB)


def check_hint_taken(mem: sysmem.Memory, hint: int, size: int) -> None:
    """Fail loudly if the layer would not place a reservation at the hint (the case would measure another path)."""
    p = mem.reserve(hint, size)
    if p is not None:
        mem.release(p, size)
    if p != hint:
        raise RuntimeError(f"{mem!r} answered {p and hex(p)} for hint {hint:#x} (size {size:#x})")


class Ballast:
    """``count`` live, non-adjacent regions below ``limit``: one OS page each, one free page apart.

    Made with the raw (unconfined) layer's ``reserve_exact``, which costs the same
    whatever the number of regions, so building 60,000 of them takes well under
    a second; the gaps keep the kernel from merging them into one mapping.
    """

    def __init__(self, count: int, limit: int) -> None:
        self.mem = sysmem.CffiMemory()
        page = self.mem.page_size
        need = 2 * page * count
        gaps = sysmem.free_gaps(sysmem.mappings(), self.mem.lowest, min(limit, self.mem.limit))
        a, b = max(gaps, key=lambda g: g[1] - g[0])
        if b - a < need + 2 * MiB:
            raise MemoryError(f"no room below {limit:#x} for {count} ballast regions")
        # Low in the gap: the confined layer places fallback mappings top-down.
        start = _round_up(a + MiB, MiB)
        self.regions = []
        for i in range(count):
            p = start + 2 * page * i
            if self.mem.reserve_exact(p, page) != p:
                self.close()
                raise RuntimeError(f"ballast region at {p:#x} was taken")
            self.regions.append(p)

    def close(self) -> None:
        page = self.mem.page_size
        for p in self.regions:
            self.mem.release(p, page)
        self.regions.clear()


def ballast_to(level: int, limit: int, reserve_for: int = 0) -> Ballast:
    """Ballast that brings this process to ``level`` mappings, less ``reserve_for`` the case adds itself."""
    return Ballast(max(0, level - sysmem.mapping_count() - reserve_for), limit)
