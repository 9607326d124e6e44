"""The OS layer over the compiled shim (``arena._native``): integers in, integers out."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._base import NATIVE_BITS, Memory, named
from ._layer import RangeCall, ReserveCall

if TYPE_CHECKING:
    from .._native import _Lib

# A uintptr_t result at or above this is -code: the top page is never mapped.
_FAILED = (1 << NATIVE_BITS) - 4095
_WRAP = 1 << NATIVE_BITS
_lib: _Lib | None = None


class ShimUnavailable(ImportError):
    """The compiled shim (``arena._native``) does not import, most often because it was not built.

    The shim is compiled when the package is installed, if a C compiler is
    there; without one the install skips it. ``reason`` is the import error.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"compiled shim unavailable ({reason}): install a C compiler and reinstall "
            "(pip install --force-reinstall --no-deps --no-cache-dir mmap-arena), or set ARENA_BACKEND=ctypes",
            name="arena._native",
        )


def _load() -> _Lib:
    """Import the compiled module on first use, so that a missing one is a ShimUnavailable here."""
    global _lib
    if _lib is None:
        try:
            from .._native import lib
        except ImportError as exc:
            raise ShimUnavailable(str(exc)) from exc
        _lib = lib
    return _lib


def _returns_address(memory: Memory, fn: Callable[[int, int], int], op: str) -> ReserveCall:
    """``memory.<op>`` over a shim call that returns an address or -code.

    A closure kept on the instance, not a method: on the hot path a call is the
    shim call and one comparison, with no method binding or attribute lookups.
    """
    failed, check_hint = memory.failed, memory.check_hint

    def call(hint: int, size: int) -> int | None:
        try:
            p = fn(hint, size)
        except (TypeError, OverflowError):
            # Raises naming the argument; what passes is an int-like (__index__)
            # that cffi does not convert itself, as ctypes does: call with ints.
            hint, size = check_hint(hint, size)
            p = fn(hint, size)
        if p < _FAILED:
            return p
        return failed(op, _WRAP - p, "hint", hint, size)

    return named(call, op)


def _returns_code(memory: Memory, fn: Callable[[int, int], int], op: str) -> RangeCall:
    """``memory.<op>`` over a shim call that returns 0 or a code (see ``_returns_address``)."""
    failed, check = memory.failed, memory.check

    def call(addr: int, size: int) -> None:
        try:
            code = fn(addr, size)
        except (TypeError, OverflowError):
            addr, size = check("addr", addr, size)
            code = fn(addr, size)
        if code:
            failed(op, code, "addr", addr, size)

    return named(call, op)


class CffiMemory(Memory):
    """Real mmap/mprotect/madvise/munmap through the compiled shim (cffi, API mode).

    ``CffiMemory(address_bits=None)``: ``None`` is this process's width; 32
    in a 64-bit process confines every mapping below 4 GiB, as a 32-bit
    process's kernel would. ``ShimUnavailable`` (an ImportError) if the shim
    was not compiled. ``reserve``, ``commit``, ``decommit`` and ``release``
    are the ones documented on ``Memory``, held by each instance as plain
    functions (see ``_returns_address``) so that a call costs the least.
    """

    def __init__(self, address_bits: int | None = None) -> None:
        lib = _load()
        self.page_size = lib.shim_page_size()
        self._reserve_exact = lib.shim_reserve_exact
        # Plain functions held by the instance shadow the class's methods (deliberately: see _returns_address).
        self.reserve = _returns_address(self, lib.shim_reserve, "reserve")  # type: ignore[method-assign]
        self.commit = _returns_code(self, lib.shim_commit, "commit")  # type: ignore[method-assign]
        self.decommit = _returns_code(self, lib.shim_decommit, "decommit")  # type: ignore[method-assign]
        self.release = _returns_code(self, lib.shim_release, "release")  # type: ignore[method-assign]
        super().__init__(address_bits)

    def reserve_exact(self, addr: int, size: int) -> int | None:
        # Only plain ints are compared here (a subclass's own "<" could pass an
        # address below lowest); anything else is converted once, by check.
        if type(addr) is not int or type(size) is not int or addr < self.lowest:
            addr, size = self.check("addr", addr, size)
            self.check_lowest(addr)
        try:
            p = self._reserve_exact(addr, size)
        except OverflowError:
            self.check("addr", addr, size)  # raises, naming the argument out of range
            raise
        if p < _FAILED:
            return p
        return self.failed("reserve_exact", _WRAP - p, "addr", addr, size)
