"""This process's mappings, read from /proc/self/maps directly."""
from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from typing import NamedTuple

# Small reads let a bounded read stop early: the kernel produces lines until
# the read is filled (at most a page). A bounded read starts with a kilobyte,
# about ten lines (40 us -> 17 us when what it wants is in the first lines);
# then, and for a whole read, a page at a time, the fewest syscalls.
_FIRST_CHUNK = 1024
_CHUNK = 4096


class Mapping(NamedTuple):
    """One line of /proc/PID/maps: ``[start, end)``, permissions such as ``rw-p``, and the file or ``[name]``
    ("" if anonymous)."""

    start: int
    end: int
    perms: str
    name: str

    @property
    def size(self) -> int:
        """Bytes mapped: ``end - start``."""
        return self.end - self.start


def mappings(below: int | None = None) -> list[Mapping]:
    """Every mapping of this process, lowest first; with ``below``, only those starting below it.

    The kernel writes the file in address order as it is read, and producing a
    line costs microseconds: reading stops as soon as a line starts at ``below``.
    """
    out: list[Mapping] = []
    fd = os.open("/proc/self/maps", os.O_RDONLY)
    try:
        rest = b""
        size = _CHUNK if below is None else _FIRST_CHUNK
        while chunk := os.read(fd, size):
            size = _CHUNK
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                m = _parse(line)
                if below is not None and m.start >= below:
                    return out
                out.append(m)
    finally:
        os.close(fd)
    return out


def _parse(line: bytes) -> Mapping:
    fields = line.split(None, 5)
    lo, _, hi = fields[0].partition(b"-")
    name = fields[5].decode("utf-8", "replace") if len(fields) > 5 else ""
    return Mapping(int(lo, 16), int(hi, 16), fields[1].decode(), name)


def parse_maps(text: str) -> list[Mapping]:
    """The mappings in the text of a /proc/PID/maps file (from any process), in its order.

    Blank lines and lines starting with ``#`` are skipped. ``ValueError``
    naming the line (number and text) for one that is not a maps line: a
    range ``start-end`` of page-aligned hex addresses, ``start < end``, and
    permissions such as ``r-xp``.
    """
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            m = _parse(line.encode())
        except (ValueError, IndexError, UnicodeError):
            m = None
        if m is None or not m.start < m.end or (m.start | m.end) % 4096 or len(m.perms) != 4 or any(
            c not in ok for c, ok in zip(m.perms, ("r-", "w-", "x-", "ps"))
        ):
            raise ValueError(f"line {number} is not a /proc/PID/maps line: {line.strip()[:80]!r}")
        out.append(m)
    return out


def mapping_count() -> int:
    """How many mappings this process has (one line of /proc/self/maps each)."""
    with open("/proc/self/maps", "rb") as f:
        return f.read().count(b"\n")


def lowest_mappable() -> int:
    """vm.mmap_min_addr: the kernel refuses to map below it."""
    try:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0x10000


def free_gaps(maps: Iterable[Mapping], low: int, high: int) -> list[tuple[int, int]]:
    """The unmapped ranges ``[start, end)`` inside ``[low, high)``, lowest first."""
    gaps = []
    cursor = low
    try:
        for m in maps:
            if m.end <= cursor:
                continue
            if m.start >= high:
                break
            if m.start > cursor:
                gaps.append((cursor, m.start))
            cursor = m.end
        if cursor < high:
            gaps.append((cursor, high))
    except (AttributeError, TypeError):
        raise TypeError(f"free_gaps needs Mappings (from mappings()) and int bounds, "
                        f"got {type(maps).__name__}, {low!r}, {high!r}") from None
    return gaps


_sbrk = ctypes.CDLL(None).sbrk
_sbrk.argtypes = [ctypes.c_ssize_t]
_sbrk.restype = ctypes.c_void_p


def program_break() -> int:
    """The current program break, ``sbrk(0)``: the brk without reading the maps."""
    return _sbrk(0) or 0


def program_extent(maps: Iterable[Mapping]) -> tuple[int, int]:
    """``(end of the executable's image, current program break)``; 0 for what is absent."""
    exe = os.readlink("/proc/self/exe")
    binary_end = brk = 0
    try:
        for m in maps:
            # The anonymous mapping right after the image is its .bss.
            if m.name == exe or (not m.name and m.start == binary_end):
                binary_end = max(binary_end, m.end)
            elif m.name == "[heap]":
                brk = m.end
    except (AttributeError, TypeError):
        raise TypeError(f"program_extent needs Mappings (from mappings()), got {type(maps).__name__}") from None
    return binary_end, brk


def reservations() -> frozenset[tuple[int, int, str]]:
    """Anonymous MAP_NORESERVE mappings (what the OS layer makes), from /proc/self/smaps.

    Python's own allocator never uses MAP_NORESERVE, so a difference between two
    calls is mappings somebody reserved through the OS layer and did not release.
    """
    with open("/proc/self/smaps", "rb") as f:
        text = f.read().decode("utf-8", "replace")
    found = []
    current = None
    for line in text.splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and not head[0].endswith(":"):
            lo, _, hi = head[0].partition("-")
            anonymous = len(head) < 6
            current = (int(lo, 16), int(hi, 16), head[1]) if anonymous else None
        elif head[0] == "VmFlags:" and current is not None and "nr" in line.split():
            found.append(current)
    return frozenset(found)
