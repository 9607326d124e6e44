"""Writable views of arena memory, and how many of them are still alive.

CPython 3.11 lets no pure-Python object export a buffer (PEP 688 came in
3.12), so a view is exported by a ctypes array laid over the arena pages it
lies in (``view.obj``): pages of the same allocation (or committed run), so
the array reaches no byte the arena has not committed. The array's type is
made for one arena and holds it as a class attribute: a view keeps its arena
alive at no cost per view.

Counting: a view, its slices and casts, and anything holding one
(``numpy.frombuffer``, ``ctypes.c_char.from_buffer``, a ``memoryview`` of it)
share one managed buffer, which holds the array until the last of them is
released or freed; and every instance of a class made at run time holds its
class. So the views alive are the references to the arena's array types
beyond their own: exact, and counted only when asked (``close``), with
nothing recorded per view. Like ``mmap``, a view in a reference cycle counts
until the garbage collector frees it.
"""
from __future__ import annotations

import ctypes
import functools
import sys
import weakref
from collections.abc import Callable
from sys import getrefcount
from typing import Any, TypeAlias, cast

_KEPT = 256
_EMPTY = ctypes.c_char * 0
# The type of the array behind a view: a subclass, made per arena, of an array of bytes.
_Pages: TypeAlias = "type[ctypes.Array[ctypes.c_ubyte]]"
# Its from_address, bound: an array of it at an address.
_Maker: TypeAlias = "Callable[[int], ctypes.Array[ctypes.c_ubyte]]"


# ctypes keeps array types only while something uses them, and making one
# costs tens of microseconds: the sizes used last stay here. Every arena of
# every thread shares this cache, so it is lru_cache's, which is thread-safe
# (a cache of its own, evicted without a lock, lost entries under threads).
@functools.lru_cache(maxsize=_KEPT)
def _array_type(size: int) -> _Pages:
    return ctypes.c_ubyte * size


def _new_maker(owner: object, size: int) -> _Maker:
    """``from_address`` of a new array type of ``size`` bytes for ``owner``: an array at an address (it holds its type)."""
    # type() is typed as making a plain type: this one is a subclass of the array type.
    return cast(_Pages, type("ArenaPages", (_array_type(size),), {"_arena": owner})).from_address


def _refcounts(makers: dict[int, Any]) -> list[int]:
    return [getrefcount(m.__self__) for m in makers.values()]


# What _refcounts reads for a type no instance holds: its maker's reference,
# its own __mro__, the descriptors in its namespace, the loop's and
# getrefcount's references. Measured on a type made the same way, not assumed.
_UNHELD = _refcounts({0: _new_maker(None, 1)})[0]


class Exports:
    """The array types behind one arena's views; ``alive()`` counts the views still held.

    Each type is kept as its bound ``from_address`` (a view is one call of
    it, with no method lookup on the type), by the number of bytes it spans.
    """

    __slots__ = ("_owner", "mask", "makers")

    def __init__(self, owner: object, page: int) -> None:
        # The owner by a weak reference: a strong one would make a cycle with the
        # manager, which only the garbage collector could free, some time later
        # and in the middle of whatever runs then (a benchmark's timed loop, say).
        self._owner, self.mask = weakref.ref(owner), page - 1  # a Layout's page is a power of two
        self.makers: dict[int, _Maker] = {}

    def export(self, addr: int, size: int) -> memoryview:
        """A writable byte view of ``[addr, addr + size)``, which the caller checked lies in committed,
        page-aligned memory (so the pages around it do too)."""
        mask = self.mask
        # ctypes exports '<B'; the cast gives plain 'B', sharing the buffer.
        if not (addr | size) & mask:  # whole pages: an allocation, or pages of one
            return memoryview((self.makers.get(size) or self.maker(size))(addr)).cast("B")
        offset = addr & mask
        span = (offset + size + mask) & ~mask
        view = memoryview((self.makers.get(span) or self.maker(span))(addr - offset)).cast("B")
        return view[offset : offset + size]

    def maker(self, span: int) -> _Maker:
        if span > sys.maxsize:
            raise ValueError(f"size {span:#x} is more than one view can hold in this process "
                             f"(at most {sys.maxsize:#x} bytes): view the allocation in parts")
        makers = self.makers
        if len(makers) >= _KEPT:
            # Forget the types no view uses; one in use must stay, or its views go uncounted.
            for size, refs in zip(list(makers), _refcounts(makers)):
                if refs == _UNHELD:
                    del makers[size]
        m = makers[span] = _new_maker(self._owner(), span)
        return m

    def alive(self) -> int:
        """How many views (each with its slices and holders) are still alive."""
        return sum(_refcounts(self.makers)) - _UNHELD * len(self.makers)

    def types(self) -> list[_Pages]:
        """The array types of the views made and not yet forgotten: a view alive holds one of them."""
        return [m.__self__ for m in self.makers.values()]  # type: ignore[attr-defined]  # a bound method's class

    def clear(self) -> None:
        self.makers.clear()


def address_of(owner: object, view: object) -> int:
    """The address of ``view``'s first byte, if ``owner`` made it (or the view it was sliced from)."""
    if not isinstance(view, memoryview):
        raise TypeError(f"address_of needs a memoryview, not {type(view).__name__}")
    array = view.obj  # ValueError if the view was released
    if getattr(array, "_arena", None) is not owner:
        raise ValueError("the view is not of this arena's memory")
    try:
        return ctypes.addressof(_EMPTY.from_buffer(view))
    except TypeError:
        raise ValueError("address_of needs a writable, C-contiguous view (a view, or a slice of one with step 1)") from None
