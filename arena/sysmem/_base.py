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
from collections.abc import Callable
from typing import SupportsIndex, TypeVar, cast

from . import _gaps, _held
from ._layer import RangeCall
from ._maps import Mapping, lowest_mappable, mappings

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
        # Any object may come: one without __index__ raises TypeError, answered below.
        return operator.index(cast(SupportsIndex, value))
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})") from None


def _usual_calls(limit: int, page_size: int) -> Callable[[object, object], bool]:
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

    Attributes: ``address_bits`` (32 or 64), ``page_size`` (the OS page),
    ``limit`` (one past the highest address it maps), ``lowest`` (the lowest),
    ``confined`` (a 32-bit space in a 64-bit process).

    ``address_bits=32`` in a 64-bit process confines every mapping below
    ``COMPAT_TASK_SIZE`` and places a refused hint top-down in the highest free
    gap, as the kernel does for a 32-bit process. The gaps are kept in one index
    per process (``_gaps``), updated by every confined reserve and release:
    release a confined mapping through a confined layer, not the native one.

    A layer holds no mapping: a copy (``copy.copy``, ``pickle``) is a new
    layer of the same width.
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
            # Instance attributes shadow the unconfined methods of the class
            # (deliberately: what the type checker calls assigning to a method).
            self.reserve = self._confined_reserve  # type: ignore[method-assign]
            self.reserve_exact = self._confined_reserve_exact  # type: ignore[method-assign]
            self.commit = self._confined("commit")  # type: ignore[method-assign]
            self.decommit = self._confined("decommit")  # type: ignore[method-assign]
            self.release = self._confined_release  # type: ignore[method-assign]
        # Known to track_reservations (a leak check), which costs a call nothing unless it is on.
        _held.register(self)

    def __reduce__(self) -> tuple[type, tuple[int]]:
        # A layer holds no mapping: a copy (or an unpickled one) is a new layer of the same width, known to track_reservations.
        return type(self), (self.address_bits,)

    def __repr__(self) -> str:
        where = f", confined below {self.limit:#x}" if self.confined else ""
        return f"{type(self).__name__}(address_bits={self.address_bits}{where})"

    # -- checks --------------------------------------------------------------

    # -- the interface (CffiMemory sets these on each instance: see _cffi) ----

    def reserve(self, hint: int, size: int) -> int | None:
        """Reserve ``size`` bytes of address space (PROT_NONE, MAP_NORESERVE) near ``hint``; their address, or ``None``.

        The kernel takes ``hint`` (page-aligned; 0: anywhere) only as a hint
        and may answer anywhere; nothing mapped is ever replaced. ``None``
        when there is no room. ``size`` is a positive multiple of
        ``page_size`` below ``limit``. ``TypeError`` for a non-int and
        ``ValueError`` for a bad value (naming it); ``OSError`` if mmap fails
        otherwise.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement reserve")

    def reserve_exact(self, addr: int, size: int) -> int | None:
        """Reserve exactly ``[addr, addr + size)`` (MAP_FIXED_NOREPLACE): ``addr``, or ``None`` if any of it is
        taken or there is no room.

        Nothing already mapped is ever replaced. ``ValueError`` for a range
        that is unaligned, below ``lowest`` or past ``limit``; ``TypeError``
        for a non-int.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement reserve_exact")

    def commit(self, addr: int, size: int) -> None:
        """Make ``[addr, addr + size)`` readable and writable (mprotect); returns nothing.

        The range must lie inside reservations this process holds: else
        ``OSError`` (ENOMEM) saying it is not inside a reservation. ``OSError``
        (ENOMEM) too when the kernel cannot split the mapping (vm.max_map_count)
        or is out of memory. ``TypeError``/``ValueError`` for bad arguments.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement commit")

    def decommit(self, addr: int, size: int) -> None:
        """Give the pages of ``[addr, addr + size)`` back to the kernel (MADV_DONTNEED) and make them PROT_NONE again.

        The range stays reserved; the next commit reads zeros. Raises as ``commit`` does.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement decommit")

    def release(self, addr: int, size: int) -> None:
        """Unmap ``[addr, addr + size)`` (munmap): give back what a reserve returned, whole or in part.

        Release only what you reserved. ``TypeError``/``ValueError`` for bad
        arguments, ``OSError`` if the kernel refuses.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement release")

    def check_size(self, size: object) -> int:
        """``size`` as an int if it is a positive multiple of ``page_size`` below ``limit``; else ``TypeError``/``ValueError``."""
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
        # Raises for a bad argument; else the arguments as the ints they were read as.
        if name == "hint":
            addr, size = self.check_hint(addr, size)
        else:
            addr, size = self.check(name, addr, size)
        if op.startswith("reserve") and code == errno.ENOMEM:
            return None
        if op == "reserve_exact" and code == errno.EEXIST:
            return None
        why = os.strerror(code)
        if op in ("commit", "decommit") and code == errno.ENOMEM:
            # mprotect's ENOMEM means a page of the range is not mapped, or the
            # kernel could not split the mapping: the maps tell which.
            hole = _first_hole(mappings(below=addr + size), addr, addr + size)
            why = (f"[{addr:#x}, {addr + size:#x}) is not inside a reservation: nothing is mapped at {hole:#x} "
                   "(commit only what reserve returned and release has not given back)" if hole is not None else
                   "the kernel is out of memory or of mappings (vm.max_map_count)")
        raise OSError(code, f"{op}({name}={addr:#x}, size={size:#x}): {why}")

    def check_lowest(self, addr: int) -> None:
        """``ValueError`` if ``addr`` is below ``lowest``: root may map below vm.mmap_min_addr, but page 0 must never be ours."""
        if addr < self.lowest:
            raise ValueError(f"addr {addr:#x} is below the lowest mappable address {self.lowest:#x}")

    # -- confinement ---------------------------------------------------------

    def _confined_reserve(self, hint: int, size: int) -> int | None:
        """``reserve`` below ``limit``: the hint if free, else top-down in the highest gap, as a 32-bit kernel places it."""
        if not self._usual(hint, size):
            hint, size = self.check_hint(hint, size)
        # The hint if free, else top-down in the highest gap that fits (see _gaps).
        return self._space.reserve(self._raw_reserve_exact, hint, size)

    def _confined_reserve_exact(self, addr: int, size: int) -> int | None:
        """``reserve_exact`` below ``limit``, keeping the index of free gaps in step."""
        if not self._usual(addr, size):
            addr, size = self.check("addr", addr, size)
        return self._space.reserve_exact(self._raw_reserve_exact, addr, size)

    def _confined_release(self, addr: int, size: int) -> None:
        """``release``, keeping the index of free gaps in step."""
        if not self._usual(addr, size):
            addr, size = self.check("addr", addr, size)
        self._space.release(self._raw_release, addr, size)

    def _confined(self, op: str) -> RangeCall:
        raw: RangeCall = getattr(self, op)
        usual = self._usual

        def call(addr: int, size: int) -> None:
            if not usual(addr, size):
                addr, size = self.check("addr", addr, size)
            raw(addr, size)

        return named(call, op)


_Call = TypeVar("_Call", bound=Callable[..., object])


def named(call: _Call, op: str) -> _Call:
    """``call``, a closure an instance holds as its ``op``, named and documented as ``Memory.<op>`` (for help())."""
    call.__name__, call.__qualname__, call.__doc__ = op, f"Memory.{op}", getattr(Memory, op).__doc__
    return call


def _first_hole(maps: list[Mapping], start: int, end: int) -> int | None:
    """The lowest address of ``[start, end)`` that no mapping covers, or ``None``."""
    cursor = start
    for m in maps:
        if m.end <= cursor:
            continue
        if m.start > cursor:
            return cursor
        cursor = m.end
        if cursor >= end:
            return None
    return cursor if cursor < end else None
