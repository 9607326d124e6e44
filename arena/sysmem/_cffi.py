"""The OS layer over the compiled shim (``arena._native``): integers in, integers out."""
from __future__ import annotations

from ._base import NATIVE_BITS, Memory

# A uintptr_t result at or above this is -code: the top page is never mapped.
_FAILED = (1 << NATIVE_BITS) - 4095
_WRAP = 1 << NATIVE_BITS
_lib = None


def _load():
    """Import the compiled module on first use, so that a missing one is an ImportError here."""
    global _lib
    if _lib is None:
        from .._native import lib

        _lib = lib
    return _lib


class CffiMemory(Memory):
    """Real mmap/mprotect/madvise/munmap through the cffi shim (API mode)."""

    def __init__(self, address_bits: int | None = None) -> None:
        lib = _load()
        self.page_size = lib.shim_page_size()
        # Bound once: an attribute of the instance is the cheapest lookup on the hot path.
        self._reserve = lib.shim_reserve
        self._reserve_exact = lib.shim_reserve_exact
        self._commit = lib.shim_commit
        self._decommit = lib.shim_decommit
        self._release = lib.shim_release
        super().__init__(address_bits)

    def reserve(self, hint: int, size: int) -> int | None:
        """Reserve ``size`` bytes PROT_NONE near ``hint`` (0: anywhere); ``None`` if there is no room."""
        try:
            p = self._reserve(hint, size)
        except (TypeError, OverflowError):
            # Raises naming the argument; what passes is an int-like (__index__)
            # that cffi does not convert itself, as ctypes does: call with ints.
            hint, size = self.check_hint(hint, size)
            p = self._reserve(hint, size)
        if p < _FAILED:
            return p
        return self.failed("reserve", _WRAP - p, "hint", hint, size)

    def reserve_exact(self, addr: int, size: int) -> int | None:
        """Reserve exactly ``[addr, addr+size)``; ``None`` if any of it is taken or there is no room."""
        try:
            if addr < self.lowest:
                self.check("addr", addr, size)
                self.check_lowest(addr)
            p = self._reserve_exact(addr, size)
        except (TypeError, OverflowError):
            addr, size = self.check("addr", addr, size)
            self.check_lowest(addr)
            p = self._reserve_exact(addr, size)
        if p < _FAILED:
            return p
        return self.failed("reserve_exact", _WRAP - p, "addr", addr, size)

    def commit(self, addr: int, size: int) -> None:
        """Make ``[addr, addr+size)`` of a reservation readable and writable."""
        try:
            code = self._commit(addr, size)
        except (TypeError, OverflowError):
            addr, size = self.check("addr", addr, size)
            code = self._commit(addr, size)
        if code:
            self.failed("commit", code, "addr", addr, size)

    def decommit(self, addr: int, size: int) -> None:
        """Give the pages of ``[addr, addr+size)`` back and make them PROT_NONE again."""
        try:
            code = self._decommit(addr, size)
        except (TypeError, OverflowError):
            addr, size = self.check("addr", addr, size)
            code = self._decommit(addr, size)
        if code:
            self.failed("decommit", code, "addr", addr, size)

    def release(self, addr: int, size: int) -> None:
        """Unmap ``[addr, addr+size)``."""
        try:
            code = self._release(addr, size)
        except (TypeError, OverflowError):
            addr, size = self.check("addr", addr, size)
            code = self._release(addr, size)
        if code:
            self.failed("release", code, "addr", addr, size)
