"""What both backends share: argument checks, error decoding, 32-bit confinement.

The backends keep the checks off their fast path: the cffi shim checks in C and
the arguments are examined here only after a call failed, to say which one was
wrong. The ctypes backend has no C to check for it and calls ``check`` first.
"""
from __future__ import annotations

import errno
import operator
import os
import struct

from . import _gaps
from ._maps import lowest_mappable, mappings

NATIVE_BITS = struct.calcsize("P") * 8
# A 32-bit process on an x86-64 kernel can map up to here (TASK_SIZE of a
# compat task): the last page below 4 GiB stays unmapped.
COMPAT_TASK_SIZE = 0xFFFFE000
# A native i386 kernel with the 3G/1G split stops here.
_I386_TASK_SIZE = 0xC0000000
_LOWEST_FLOOR = 0x10000


def _task_size() -> int:
    """One past the highest address this process can map, judged from where its stack is."""
    stack_end = max((m.end for m in mappings() if m.name == "[stack]"), default=0)
    if NATIVE_BITS == 32:
        return COMPAT_TASK_SIZE if stack_end > _I386_TASK_SIZE else _I386_TASK_SIZE
    # 47 bits on x86-64 and most arm64 kernels (a larger space only on
    # request), less the top page, which x86-64 keeps unmapped.
    return (1 << max(47, stack_end.bit_length())) - 4096


TASK_SIZE = _task_size()


def _integer(name: str, value: object) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})") from None


def _usual_calls(limit: int, page_size: int):
    """Whether a call is the usual one, which every check passes: ints,
    page-aligned, a range inside the space. Only others are checked in full."""
    mask = page_size - 1

    def usual(addr: object, size: object) -> bool:
        return (
            type(addr) is int and type(size) is int and 0 <= addr and 0 < size < limit
            and addr + size <= limit and not (addr | size) & mask
        )

    return usual


class Memory:
    """The OS memory layer: reserve, commit, decommit and release address space.

    ``address_bits=32`` in a 64-bit process confines every mapping below
    ``COMPAT_TASK_SIZE`` and places a refused hint top-down in the highest free
    gap, as the kernel does for a 32-bit process. The gaps are kept in one index
    per process (``_gaps``), updated by every confined reserve and release:
    release a confined mapping through a confined layer, not the native one.
    """

    page_size: int

    def __init__(self, address_bits: int | None = None) -> None:
        if address_bits is None:
            address_bits = NATIVE_BITS
        address_bits = _integer("address_bits", address_bits)
        if address_bits not in (32, 64):
            raise ValueError(f"address_bits must be 32 or 64, got {address_bits}")
        if address_bits > NATIVE_BITS:
            raise ValueError(f"a {NATIVE_BITS}-bit process cannot map a {address_bits}-bit address space")
        self.address_bits = address_bits
        self.confined = address_bits < NATIVE_BITS
        self.limit = COMPAT_TASK_SIZE if self.confined else TASK_SIZE
        # The kernel's floor is also CONFIG_LSM_MMAP_MIN_ADDR (64 KiB on common
        # builds), and root may map below the sysctl: never go under 64 KiB.
        self.lowest = max(-(-lowest_mappable() // self.page_size) * self.page_size, _LOWEST_FLOOR)
        if self.confined:
            # Shared by every confined instance: the address space is the process's.
            self._space = _gaps.space(self.lowest, self.limit, self.page_size)
            self._usual = _usual_calls(self.limit, self.page_size)
            # The backend's unconfined calls, taken before they are shadowed:
            # what the space maps and unmaps with.
            self._raw_reserve_exact = self.reserve_exact
            self._raw_release = self.release
            # Instance attributes shadow the unconfined methods of the class.
            self.reserve = self._confined_reserve
            self.reserve_exact = self._confined_reserve_exact
            self.commit = self._confined("commit")
            self.decommit = self._confined("decommit")
            self.release = self._confined_release

    def __repr__(self) -> str:
        where = f", confined below {self.limit:#x}" if self.confined else ""
        return f"{type(self).__name__}(address_bits={self.address_bits}{where})"

    # -- checks --------------------------------------------------------------

    def check_size(self, size: object) -> int:
        size = _integer("size", size)
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if size % self.page_size:
            raise ValueError(f"size must be a multiple of the page size {self.page_size:#x}, got {size:#x}")
        if size >= self.limit:
            raise ValueError(f"size {size:#x} does not fit the address space below {self.limit:#x}")
        return size

    def check(self, name: str, addr: object, size: object) -> tuple[int, int]:
        """Raise ``TypeError``/``ValueError`` naming the argument unless ``[addr, addr+size)`` is valid."""
        size = self.check_size(size)
        addr = _integer(name, addr)
        if addr < 0:
            raise ValueError(f"{name} must not be negative, got {addr}")
        if addr % self.page_size:
            raise ValueError(f"{name} {addr:#x} is not aligned to the page size {self.page_size:#x}")
        if addr + size > self.limit:
            raise ValueError(
                f"{name} range [{addr:#x}, {addr + size:#x}) passes the top of the address space {self.limit:#x}"
            )
        return addr, size

    def check_hint(self, hint: object, size: object) -> tuple[int, int]:
        """Like ``check``, but a hint only has to be an aligned address: the kernel ignores one that does not fit."""
        size = self.check_size(size)
        hint = _integer("hint", hint)
        if not 0 <= hint < 1 << self.address_bits:
            raise ValueError(f"hint {hint:#x} is not a {self.address_bits}-bit address")
        if hint % self.page_size:
            raise ValueError(f"hint {hint:#x} is not aligned to the page size {self.page_size:#x}")
        if hint + size > 1 << self.address_bits:
            raise ValueError(f"hint range [{hint:#x}, {hint + size:#x}) wraps past the top of the address space")
        return hint, size

    def failed(self, op: str, code: int, name: str, addr: object, size: object) -> int | None:
        """Turn a failed call's code into the documented answer: ``None``, or the right exception."""
        if name == "hint":
            self.check_hint(addr, size)
        else:
            self.check(name, addr, size)
        if op.startswith("reserve") and code == errno.ENOMEM:
            return None
        if op == "reserve_exact" and code == errno.EEXIST:
            return None
        raise OSError(code, f"{op}({name}={addr:#x}, size={size:#x}): {os.strerror(code)}")

    def check_lowest(self, addr: int) -> None:
        """Root may map below vm.mmap_min_addr; page 0 must still never be ours."""
        if addr < self.lowest:
            raise ValueError(f"addr {addr:#x} is below the lowest mappable address {self.lowest:#x}")

    # -- confinement ---------------------------------------------------------

    def _confined_reserve(self, hint: int, size: int) -> int | None:
        if not self._usual(hint, size):
            hint, size = self.check_hint(hint, size)
        # The hint if free, else top-down in the highest gap that fits (see _gaps).
        return self._space.reserve(self._raw_reserve_exact, hint, size)

    def _confined_reserve_exact(self, addr: int, size: int) -> int | None:
        if not self._usual(addr, size):
            addr, size = self.check("addr", addr, size)
        return self._space.reserve_exact(self._raw_reserve_exact, addr, size)

    def _confined_release(self, addr: int, size: int) -> None:
        if not self._usual(addr, size):
            addr, size = self.check("addr", addr, size)
        self._space.release(self._raw_release, addr, size)

    def _confined(self, op: str):
        raw, usual = getattr(self, op), self._usual

        def call(addr: int, size: int) -> None:
            if not usual(addr, size):
                addr, size = self.check("addr", addr, size)
            raw(addr, size)

        call.__name__ = op
        return call
