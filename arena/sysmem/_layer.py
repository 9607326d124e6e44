"""What a manager calls on its memory layer: the ``MemoryLayer`` protocol, and the shapes of a layer's calls."""
from __future__ import annotations

from typing import Protocol


class MemoryLayer(Protocol):
    """A memory layer as managers and crowds use it: ``Memory`` (both backends) and ``ScriptedMemory`` are ones.

    A protocol, not a base class: a layer of one's own needs only these
    parts, which ``sysmem.layer`` checks when a manager is made. The calls
    are positional (a layer may name its arguments as it likes) and mean
    what ``Memory``'s do; the attributes are read, never set.
    """

    @property
    def address_bits(self) -> int:
        """32 or 64."""

    @property
    def page_size(self) -> int:
        """The OS page, a power of two."""

    @property
    def limit(self) -> int:
        """One past the highest address the layer maps."""

    @property
    def lowest(self) -> int:
        """The lowest address the layer maps: ``0 < lowest < limit``."""

    def reserve(self, hint: int, size: int, /) -> int | None:
        """As ``Memory.reserve``: address space near ``hint``, its address or ``None`` for no room."""

    def reserve_exact(self, addr: int, size: int, /) -> int | None:
        """As ``Memory.reserve_exact``: exactly ``[addr, addr + size)``, or ``None``."""

    def commit(self, addr: int, size: int, /) -> None:
        """As ``Memory.commit``: make the range read-write."""

    def decommit(self, addr: int, size: int, /) -> None:
        """As ``Memory.decommit``: give the pages back, keep the range reserved."""

    def release(self, addr: int, size: int, /) -> None:
        """As ``Memory.release``: unmap the range."""


class ReserveCall(Protocol):
    """The shape of ``Memory.reserve`` when an instance holds it as a plain function (see ``_cffi``)."""

    def __call__(self, hint: int, size: int) -> int | None: ...


class RangeCall(Protocol):
    """The shape of ``Memory.commit``, ``decommit`` and ``release`` when an instance holds them as plain functions."""

    def __call__(self, addr: int, size: int) -> None: ...
