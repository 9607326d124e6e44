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
from sys import getrefcount
from typing import Any, TypeAlias, cast

_KEPT = 256
_EMPTY = ctypes.c_char * 0
# The type of the array behind a view: a subclass, made per arena, of an array of bytes.
_Pages: TypeAlias = "type[ctypes.Array[ctypes.c_ubyte]]"


# ctypes keeps array types only while something uses them, and making one
# costs tens of microseconds: the sizes used last stay here. Every arena of
# every thread shares this cache, so it is lru_cache's, which is thread-safe
# (a cache of its own, evicted without a lock, lost entries under threads).
@functools.lru_cache(maxsize=_KEPT)
def _array_type(size: int) -> _Pages:
    return ctypes.c_ubyte * size


def _new_type(owner: object, size: int) -> _Pages:
    # type() is typed as making a plain type: this one is a subclass of the array type.
    return cast(_Pages, type("ArenaPages", (_array_type(size),), {"_arena": owner}))


def _refcounts(types: dict[int, Any]) -> list[int]:
    return [getrefcount(t) for t in types.values()]


# What _refcounts reads for a type no instance holds: its dict entry, its own
# __mro__, the descriptors in its namespace, the loop's and getrefcount's
# references. Measured on a type made the same way, not assumed.
_UNHELD = _refcounts({0: _new_type(None, 1)})[0]


class Exports:
    """The array types behind one arena's views; ``alive()`` counts the views still held."""

    __slots__ = ("_owner", "_mask", "_types")

    def __init__(self, owner: object, page: int) -> None:
        self._owner, self._mask = owner, page - 1  # a Layout's page is a power of two
        self._types: dict[int, _Pages] = {}

    def export(self, addr: int, size: int) -> memoryview:
        """A writable byte view of ``[addr, addr + size)``, which the caller checked lies in committed,
        page-aligned memory (so the pages around it do too)."""
        mask = self._mask
        # ctypes exports '<B'; the cast gives plain 'B', sharing the buffer.
        if not (addr | size) & mask:  # whole pages: an allocation, or pages of one
            return memoryview((self._types.get(size) or self._type(size)).from_address(addr)).cast("B")
        offset = addr & mask
        span = (offset + size + mask) & ~mask
        view = memoryview((self._types.get(span) or self._type(span)).from_address(addr - offset)).cast("B")
        return view[offset : offset + size]

    def _type(self, span: int) -> _Pages:
        if span > sys.maxsize:
            raise ValueError(f"size {span:#x} is more than one view can hold in this process "
                             f"(at most {sys.maxsize:#x} bytes): view the allocation in parts")
        types = self._types
        if len(types) >= _KEPT:
            # Forget the types no view uses; one in use must stay, or its views go uncounted.
            for size, refs in zip(list(types), _refcounts(types)):
                if refs == _UNHELD:
                    del types[size]
        t = types[span] = _new_type(self._owner, span)
        return t

    def alive(self) -> int:
        """How many views (each with its slices and holders) are still alive."""
        return sum(_refcounts(self._types)) - _UNHELD * len(self._types)

    def types(self) -> list[_Pages]:
        """The array types of the views made and not yet forgotten: a view alive holds one of them."""
        return list(self._types.values())

    def clear(self) -> None:
        self._types.clear()


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
