"""The OS memory layer: real mmap with address hints, and this process's mappings.

Two backends with one interface: ``CffiMemory`` over the compiled shim and
``CtypesMemory`` over libc through ctypes. ``default()`` picks one.
``MemoryLayer`` is what a manager calls: a protocol that ``Memory`` and
``arena.spaces.ScriptedMemory`` both meet.
"""
from __future__ import annotations

import os
import warnings
from typing import cast

from ._base import COMPAT_TASK_SIZE, NATIVE_BITS, TASK_SIZE, Memory
from ._cffi import CffiMemory, ShimUnavailable
from ._ctypes import CtypesMemory
from ._held import Held, track_reservations
from ._layer import MemoryLayer
from ._maps import Mapping, free_gaps, mapping_count, mappings, parse_maps, program_break, program_extent, reservations

__all__ = [
    "COMPAT_TASK_SIZE",
    "NATIVE_BITS",
    "TASK_SIZE",
    "CffiMemory",
    "CtypesMemory",
    "Held",
    "Mapping",
    "Memory",
    "MemoryLayer",
    "ShimUnavailable",
    "UnknownBackend",
    "default",
    "layer",
    "free_gaps",
    "mapping_count",
    "mappings",
    "parse_maps",
    "program_break",
    "program_extent",
    "reservations",
    "track_reservations",
]

_BACKENDS = {"cffi": CffiMemory, "ctypes": CtypesMemory}
_warned = False


class UnknownBackend(ValueError):
    """``ARENA_BACKEND`` names no backend."""


def default(address_bits: int | None = None) -> Memory:
    """A new memory layer of ``address_bits`` (None: this process's width) over the best backend:
    the compiled shim (``CffiMemory``) if it imports, else ctypes (``CtypesMemory``, with one warning).

    ``ARENA_BACKEND=cffi|ctypes`` (any case) forces one: another value raises
    ``UnknownBackend`` (a ValueError), and ``cffi`` where the shim was not
    built raises ``ShimUnavailable`` (an ImportError) naming the fix.
    ``ValueError`` for ``address_bits`` other than 32 or 64, or wider than the process.
    """
    global _warned
    given = os.environ.get("ARENA_BACKEND", "")
    # An environment variable is easily written in capitals or with a stray space.
    choice = given.strip().lower()
    if choice:
        if choice not in _BACKENDS:
            raise UnknownBackend(f"ARENA_BACKEND={given!r} is not a backend: set it to one of {', '.join(_BACKENDS)}, "
                                 "or unset it")
        return _BACKENDS[choice](address_bits)
    try:
        return CffiMemory(address_bits)
    except ShimUnavailable as exc:
        if not _warned:
            _warned = True
            warnings.warn(f"arena: compiled shim unavailable ({exc.reason}); using the slower ctypes backend "
                          "(installing with a C compiler builds the shim)", RuntimeWarning, stacklevel=2)
        return CtypesMemory(address_bits)


# What an arena calls on its memory layer (ScriptedMemory has them too, without being a Memory).
_LAYER_PARTS = ("reserve", "reserve_exact", "commit", "decommit", "release")


def layer(memory: object, address_bits: int | None) -> MemoryLayer:
    """``memory`` checked to be a memory layer of ``address_bits`` bits (``None``: either), or
    ``default(address_bits)`` if it is None.

    ``TypeError`` for something that is not a memory layer (a ``Memory``, or
    an object with its methods and attributes, such as
    ``arena.testing.ScriptedMemory``); ``ValueError`` for a layer of the other
    width, or attributes out of range: ``address_bits`` 32 or 64,
    ``page_size`` a power of two, ``0 < lowest < limit``.
    """
    if memory is None:
        return default(address_bits=address_bits)
    if not all(callable(getattr(memory, part, None)) for part in _LAYER_PARTS):
        fix = (f"to choose a backend, pass arena.sysmem.{_BACKENDS[memory.lower()].__name__}() "
               f"or set ARENA_BACKEND={memory.lower()}"
               if isinstance(memory, str) and memory.lower() in _BACKENDS else
               "pass arena.sysmem.default() (or None), arena.sysmem.CffiMemory(), arena.sysmem.CtypesMemory() "
               "or an arena.testing.ScriptedMemory")
        raise TypeError(f"memory must be a memory layer, not {type(memory).__name__} ({memory!r}): {fix}")
    # What managers and crowds compute with: a layer of one's own must have them right.
    values: list[int] = []
    for name in ("address_bits", "page_size", "limit", "lowest"):
        value = getattr(memory, name, None)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a memory layer needs an int {name}, got {value!r} from {memory!r}")
        values.append(value)
    bits, page, limit, lowest = values
    if address_bits is not None and bits != address_bits:
        raise ValueError(f"a {address_bits}-bit layout needs a {address_bits}-bit memory layer, got {memory!r}")
    if bits not in (32, 64):
        raise ValueError(f"a memory layer's address_bits must be 32 or 64, got {bits} from {memory!r}")
    if page <= 0 or page & (page - 1):
        raise ValueError(f"a memory layer's page_size must be a power of two, got {page!r} from {memory!r}")
    if not 0 < lowest < limit:
        raise ValueError(f"a memory layer needs 0 < lowest < limit, got lowest={lowest:#x}, limit={limit:#x} from {memory!r}")
    # Checked part by part above, as a protocol cannot be at run time.
    return cast(MemoryLayer, memory)
