"""Crowded address spaces: real blocker mappings that occupy hints, fill ranges or copy a real process's layout."""
from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import NamedTuple, NoReturn

from .. import sysmem

EXAMPLE_MAPS = ("python3-i386", "python3-x86_64")
"""Maps dumps shipped with the package: real Python 3 processes (i386 and x86-64) with extension modules loaded."""


def example_maps(name: str) -> str:
    """The text of a shipped maps dump (one of ``EXAMPLE_MAPS``), for ``Crowd.from_maps``."""
    if name not in EXAMPLE_MAPS:
        raise ValueError(f"no shipped maps dump {name!r}; there are {', '.join(EXAMPLE_MAPS)}")
    import importlib.resources  # here: the package's data is read by few commands, imported by every one

    return importlib.resources.files("arena").joinpath(f"data/maps-{name}.txt").read_text(encoding="utf-8")


class Skipped(NamedTuple):
    """A range of a maps dump that ``Crowd.from_maps`` did not occupy, and why."""

    start: int
    end: int
    why: str


# Room the stack may still grow into below its mapping (8 MiB, the usual
# RLIMIT_STACK, and the kernel's 1 MiB guard gap): a placeholder never goes there.
_STACK_ROOM = 9 << 20


class Crowd:
    """Real blocker mappings (PROT_NONE) that occupy hints or fill ranges; released on exit.

    ``Crowd(memory=None)``: the memory layer the blockers are mapped with
    (``None``: ``sysmem.default()``); ``TypeError``/``ValueError`` for one
    that is not a memory layer (see ``sysmem.layer``). A crowd owns its
    blockers: it cannot be copied or pickled (``TypeError``).
    """

    def __init__(self, memory: sysmem.MemoryLayer | None = None) -> None:
        self.memory = sysmem.layer(memory, None)
        self.blocks: list[tuple[int, int]] = []
        self.skipped: list[Skipped] = []

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # A copy would release the same blockers again, unmapping whatever is there by then.
        raise TypeError("cannot copy or pickle a Crowd: it owns its blocker mappings (make a new one)")

    @classmethod
    def from_maps(cls, text: str, memory: sysmem.MemoryLayer | None = None) -> Crowd:
        """A crowd occupying, with PROT_NONE placeholders, what a /proc/PID/maps dump maps.

        Only what is free here is taken; ``skipped`` lists the rest: ranges
        outside ``memory``'s space (a 64-bit dump on the 32-bit layer, say),
        ranges this process maps itself, and room its stack may grow into.
        ``ValueError`` naming the line if ``text`` has one that is not a maps
        line; nothing is mapped then. ``TypeError`` if ``text`` is not a str,
        and as ``Crowd()`` for ``memory``.
        """
        if not isinstance(text, str):
            raise TypeError(f"from_maps needs the text of a maps dump (a str, as example_maps gives), not {type(text).__name__}")
        runs: list[list[int]] = []
        for m in sorted(sysmem.parse_maps(text)):
            # Adjacent and overlapping ranges become one: fewer placeholders, fewer syscalls.
            if runs and m.start <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], m.end)
            else:
                runs.append([m.start, m.end])
        crowd = cls(memory)
        memory, page = crowd.memory, crowd.memory.page_size
        here = sysmem.mappings()
        stacks = [m for m in here if m.name == "[stack]"]
        taken = sorted(here + [sysmem.Mapping(m.start - _STACK_ROOM, m.start, "", "") for m in stacks])
        try:
            for a, b in runs:
                lo, hi = max(a, memory.lowest), min(b, memory.limit)
                if lo >= hi:
                    crowd.skipped.append(Skipped(a, b, f"outside the {memory.address_bits}-bit space"))
                    continue
                if (lo, hi) != (a, b):
                    crowd.skipped.append(Skipped(a, b, f"partly outside the {memory.address_bits}-bit space"))
                cursor = lo
                for ga, gb in sysmem.free_gaps(taken, lo, hi):
                    if cursor < ga:
                        crowd.skipped.append(Skipped(cursor, ga, "mapped here (or room for this process's stack)"))
                    cursor = gb
                    ga, gb = -(-ga // page) * page, gb // page * page
                    if ga < gb and memory.reserve_exact(ga, gb - ga) is not None:
                        crowd.blocks.append((ga, gb - ga))
                    elif ga < gb:
                        crowd.skipped.append(Skipped(ga, gb, "mapped here meanwhile"))
                if cursor < hi:
                    crowd.skipped.append(Skipped(cursor, hi, "mapped here (or room for this process's stack)"))
        except BaseException:
            crowd.release()
            raise
        return crowd

    @property
    def occupied(self) -> int:
        """Bytes held by the placeholders."""
        return sum(size for _, size in self.blocks)

    def occupy(self, addr: int, size: int) -> int:
        """Map exactly ``[addr, addr+size)``; ``RuntimeError`` naming the range if it is not free.

        ``TypeError``/``ValueError`` for bad arguments, ``OSError`` as the layer's ``reserve_exact``.
        """
        try:
            # Read once: release gives back exactly what was mapped.
            addr, size = operator.index(addr), operator.index(size)
        except TypeError:
            raise TypeError(f"addr and size must be ints, not {type(addr).__name__} and {type(size).__name__}") from None
        p = self.memory.reserve_exact(addr, size)
        if p is None:
            raise RuntimeError(f"cannot occupy [{addr:#x}, {addr + size:#x}): not free")
        self.blocks.append((p, size))
        return p

    def fill(self, low: int, high: int, holes: Iterable[tuple[int, int]] = ()) -> int:
        """Occupy every free byte of ``[low, high)`` except the ``holes`` ``[(start, end), ...]``; returns bytes taken."""
        page = self.memory.page_size
        cuts = sorted(holes)
        taken = 0
        for a, b in sysmem.free_gaps(sysmem.mappings(), low, high):
            pieces = [(a, b)]
            for ha, hb in cuts:
                pieces = [p for lo, hi in pieces for p in ((lo, min(hi, ha)), (max(lo, hb), hi)) if p[0] < p[1]]
            for lo, hi in pieces:
                lo, hi = -(-lo // page) * page, hi // page * page
                if lo < hi:
                    self.occupy(lo, hi - lo)
                    taken += hi - lo
        return taken

    def release(self) -> None:
        """Give back every blocker."""
        while self.blocks:
            p, size = self.blocks.pop()
            self.memory.release(p, size)

    def __enter__(self) -> Crowd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
