"""A traced program's address space at the moment of a call: its /proc/PID/maps, read on first use, and its free ranges."""
from __future__ import annotations

import operator

from .. import sysmem
from ..sysmem import Mapping, free_gaps, parse_maps
from .calls import PAGE_SIZE


def _mmap_min_addr() -> int:
    try:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            return max(int(f.read()), PAGE_SIZE)
    except (OSError, ValueError):
        return 0x10000


BOTTOM = _mmap_min_addr()
# The kernel keeps this much free below a stack that grows down (stack_guard_gap, 256 pages by default):
# a hint that ends inside it is not honoured.
STACK_GUARD = 256 * PAGE_SIZE


def top(bits: int) -> int:
    """One past the highest address a ``bits``-bit program can map on this kernel."""
    return sysmem.TASK_SIZE if bits == sysmem.NATIVE_BITS else sysmem.COMPAT_TASK_SIZE


def _align(align: object) -> int:
    a = operator.index(align)  # type: ignore[arg-type]
    if a < PAGE_SIZE or a & (a - 1):
        raise ValueError(f"align must be a power of two of at least a page ({PAGE_SIZE}), got {a:#x}")
    return a


class Space:
    """The mappings of process ``pid`` (a ``bits``-bit program), read from /proc/PID/maps when first asked.

    The program is stopped in the call being decided, but its other threads
    may run: what this shows is the kernel's view at the moment of the read.
    Free ranges lie in ``[bottom, top)``: above ``vm.mmap_min_addr``, below
    the end of the program's address space, and not within the stack's guard
    gap, the way the kernel judges a hint.
    """

    def __init__(self, pid: int, bits: int) -> None:
        self.pid = pid
        self.bits = bits
        self.bottom = BOTTOM
        self.top = top(bits)
        self._maps: list[Mapping] | None = None

    @property
    def mappings(self) -> list[Mapping]:
        """Every mapping, lowest first (read once, at the first use). ``ProcessLookupError`` if the process is gone."""
        if self._maps is None:
            try:
                with open(f"/proc/{self.pid}/maps") as f:
                    text = f.read()
            except FileNotFoundError:
                raise ProcessLookupError(f"process {self.pid} has ended") from None
            self._maps = parse_maps(text)
        return self._maps

    def _taken(self) -> list[Mapping]:
        # A stack that grows down claims its guard gap too.
        return [m._replace(start=max(m.start - STACK_GUARD, 0)) if m.name == "[stack]" else m for m in self.mappings]

    def free(self, low: int | None = None, high: int | None = None) -> list[tuple[int, int]]:
        """The free ranges ``[start, end)`` within ``[low, high)`` (default: the whole mappable space), lowest first."""
        lo = self.bottom if low is None else max(operator.index(low), self.bottom)
        hi = self.top if high is None else min(operator.index(high), self.top)
        return free_gaps(self._taken(), lo, hi) if lo < hi else []

    def is_free(self, start: int, size: int) -> bool:
        """Whether ``[start, start + size)`` is free and mappable, so the kernel would honour it as a hint."""
        start, size = operator.index(start), operator.index(size)
        return size > 0 and any(s <= start and start + size <= e for s, e in self.free(start, start + size))

    def free_below(self, address: int, size: int, align: int = PAGE_SIZE) -> int | None:
        """The highest ``align``-aligned start of a free range of ``size`` bytes ending at or below ``address``;
        None if none fits."""
        address, size, align = operator.index(address), operator.index(size), _align(align)
        for start, end in reversed(self.free(high=address)):
            at = (end - size) & -align
            if size > 0 and at >= start:
                return at
        return None

    def free_above(self, address: int, size: int, align: int = PAGE_SIZE) -> int | None:
        """The lowest ``align``-aligned start at or above ``address`` of a free range of ``size`` bytes; None if none fits."""
        address, size, align = operator.index(address), operator.index(size), _align(align)
        for start, end in self.free(low=address):
            at = -(-start // align) * align
            if size > 0 and at + size <= end:
                return at
        return None

    def ending_at(self, address: int) -> Mapping | None:
        """The mapping that ends exactly at ``address`` (what a program extends when it hints there), or None."""
        address = operator.index(address)
        return next((m for m in self.mappings if m.end == address), None)

    def mapping_at(self, address: int) -> Mapping | None:
        """The mapping containing ``address``, or None."""
        address = operator.index(address)
        return next((m for m in self.mappings if m.start <= address < m.end), None)
