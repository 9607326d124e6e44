"""The OS memory layer: real mmap with address hints, and this process's mappings.

Two backends with one interface: ``CffiMemory`` over the compiled shim and
``CtypesMemory`` over libc through ctypes. ``default()`` picks one.
"""
from __future__ import annotations

import os
import warnings

from ._base import COMPAT_TASK_SIZE, NATIVE_BITS, TASK_SIZE, Memory
from ._cffi import CffiMemory, ShimUnavailable
from ._ctypes import CtypesMemory
from ._maps import Mapping, free_gaps, mapping_count, mappings, parse_maps, program_break, program_extent

__all__ = [
    "COMPAT_TASK_SIZE",
    "NATIVE_BITS",
    "TASK_SIZE",
    "CffiMemory",
    "CtypesMemory",
    "Mapping",
    "Memory",
    "ShimUnavailable",
    "UnknownBackend",
    "default",
    "free_gaps",
    "mapping_count",
    "mappings",
    "parse_maps",
    "program_break",
    "program_extent",
]

_BACKENDS = {"cffi": CffiMemory, "ctypes": CtypesMemory}
_warned = False


class UnknownBackend(ValueError):
    """``ARENA_BACKEND`` names no backend."""


def default(address_bits: int | None = None) -> Memory:
    """The best backend: compiled if it imports, else ctypes (with one warning).

    ``ARENA_BACKEND=cffi|ctypes`` forces one: another value raises
    ``UnknownBackend`` (a ValueError), and ``cffi`` where the shim was not
    built raises ``ShimUnavailable`` (an ImportError) naming the fix.
    """
    global _warned
    choice = os.environ.get("ARENA_BACKEND", "")
    if choice:
        if choice not in _BACKENDS:
            raise UnknownBackend(f"ARENA_BACKEND={choice!r} is not a backend; use one of {', '.join(_BACKENDS)}")
        return _BACKENDS[choice](address_bits)
    try:
        return CffiMemory(address_bits)
    except ShimUnavailable as exc:
        if not _warned:
            _warned = True
            warnings.warn(f"arena: compiled shim unavailable ({exc.reason}); using the slower ctypes backend "
                          "(installing with a C compiler builds the shim)", RuntimeWarning, stacklevel=2)
        return CtypesMemory(address_bits)
