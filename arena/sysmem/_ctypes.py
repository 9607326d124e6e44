"""The OS layer over libc through ctypes, for machines without a C compiler."""
from __future__ import annotations

import ctypes
import mmap

from ._base import NATIVE_BITS, Memory

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_mmap.restype = ctypes.c_void_p
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

_MAP_FAILED = (1 << NATIVE_BITS) - 1
# Linux's values on x86 and arm; the mmap module does not export these two.
_MAP_NORESERVE = 0x4000
_MAP_FIXED_NOREPLACE = 0x100000
_RESERVE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
_RW = mmap.PROT_READ | mmap.PROT_WRITE
_PROT_NONE = 0


class CtypesMemory(Memory):
    """Real mmap/mprotect/madvise/munmap through libc with ctypes, for machines without a C compiler.

    ``CtypesMemory(address_bits=None)`` as ``CffiMemory``; the methods are
    ``Memory``'s, with every argument checked in Python first.
    """

    page_size = mmap.PAGESIZE

    def reserve(self, hint: int, size: int) -> int | None:
        hint, size = self.check_hint(hint, size)
        # A hint only: never MAP_FIXED, the kernel may answer anywhere.
        # ctypes hands a c_void_p back as an int, or None for NULL.
        p: int | None = _mmap(hint, size, _PROT_NONE, _RESERVE, -1, 0)
        if p != _MAP_FAILED:
            return p
        return self.failed("reserve", ctypes.get_errno(), "hint", hint, size)

    def reserve_exact(self, addr: int, size: int) -> int | None:
        addr, size = self.check("addr", addr, size)
        self.check_lowest(addr)
        p: int | None = _mmap(addr, size, _PROT_NONE, _RESERVE | _MAP_FIXED_NOREPLACE, -1, 0)
        if p == _MAP_FAILED:
            return self.failed("reserve_exact", ctypes.get_errno(), "addr", addr, size)
        if p != addr:
            # Before Linux 4.17 the flag is ignored: another address means occupied.
            _munmap(p, size)
            return None
        return p

    def commit(self, addr: int, size: int) -> None:
        addr, size = self.check("addr", addr, size)
        if _mprotect(addr, size, _RW):
            self.failed("commit", ctypes.get_errno(), "addr", addr, size)

    def decommit(self, addr: int, size: int) -> None:
        addr, size = self.check("addr", addr, size)
        if _madvise(addr, size, mmap.MADV_DONTNEED) or _mprotect(addr, size, _PROT_NONE):
            self.failed("decommit", ctypes.get_errno(), "addr", addr, size)

    def release(self, addr: int, size: int) -> None:
        addr, size = self.check("addr", addr, size)
        if _munmap(addr, size):
            self.failed("release", ctypes.get_errno(), "addr", addr, size)
