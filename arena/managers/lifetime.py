"""What a manager of real address space needs besides its placement: checks, held mappings, views, lifetime.

``Arena`` (Go's linear heap arena) and ``HeapArenas`` (Go 1.11's sparse heap
arenas) are built on it: each decides where memory goes; this class checks
their arguments, asks the memory layer, keeps the mappings they hold, gives
out views of what they handed out, and closes.
"""
from __future__ import annotations

import operator
import threading
from bisect import bisect_left, bisect_right
from collections import deque
from typing import Any, Self

from .. import sysmem
from ..policy.layout import Layout, check_layout
from ..words import plural
from . import record, views
from .vocabulary import ArenaClosed, Region


class _Ranges:
    """Disjoint address ranges: ``starts`` sorted, ``end_at[start]``, and ``size``, their bytes."""

    __slots__ = ("starts", "end_at", "size")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.end_at: dict[int, int] = {}
        self.size = 0

    def add(self, start: int, end: int, merge: bool = False) -> None:
        """Add ``[start, end)``; with ``merge``, joined to a range it touches."""
        starts, end_at = self.starts, self.end_at
        self.size += end - start
        if not starts or start > starts[-1]:
            i = len(starts)
        else:
            i = bisect_left(starts, start)
        if merge and i and end_at[starts[i - 1]] == start:
            i -= 1
            start = starts[i]
        elif i == len(starts):
            starts.append(start)
        else:
            starts.insert(i, start)
        if merge and i + 1 < len(starts) and starts[i + 1] == end:
            end = end_at.pop(starts.pop(i + 1))
        end_at[start] = end

    def copy(self) -> _Ranges:
        other = _Ranges()
        other.starts, other.end_at, other.size = list(self.starts), dict(self.end_at), self.size
        return other

    def below(self, addr: int) -> tuple[int, int] | None:
        """The range starting nearest at or below ``addr``, if any."""
        i = bisect_right(self.starts, addr) - 1
        return (self.starts[i], self.end_at[self.starts[i]]) if i >= 0 else None


class Manager:
    """A lock, the mappings held (``_regions``), what was handed out (``_allocations``), views, and ``close``.

    A subclass calls ``_take`` first in its constructor, ``_give_up`` if the
    constructor fails after reserving, and defines ``sys_alloc`` (which appends
    each allocation to ``_allocations``) and ``_check_start_room``.
    """

    # The layout attribute that bounds a request: Go 1.8's _MaxMem, or Go 1.11's maxAlloc.
    _span_limit = "max_mem"
    # How many decisions and allocations are kept: None, all (see Arena's history).
    # A manager with a bounded history defines _run_end, which views then check against.
    _history: int | None = None

    def _take(self, layout: Layout, memory: sysmem.Memory | None) -> sysmem.Memory:
        """Check the layout and the memory layer a constructor was given; returns the layer to use."""
        layout = check_layout(layout)
        memory = sysmem.layer(memory, layout.address_bits)
        if layout.page_size % memory.page_size:
            raise ValueError(f"the arena page {layout.page_size:#x} is not a multiple of the OS page {memory.page_size:#x}")
        self.layout = layout
        self.memory = memory
        self._lock = threading.Lock()
        self._closed = False
        # Read by _reserve as plain attributes, not through layout and memory: Arena's hot path calls it.
        self._top, self._limit, self._mem_reserve = 1 << layout.address_bits, memory.limit, memory.reserve
        self._regions: list[tuple[int, int, str]] = []
        self._unreleased: list[tuple[int, int]] = []  # mappings whose release the kernel refused
        self._allocations: list[tuple[int, int]] | deque[tuple[int, int]] = []  # a deque: Arena's bounded history
        # Views: the types of the arrays that export them, and (history=None)
        # the allocations by address, indexed from _allocations when a view
        # needs them.
        self._exports = views.Exports(self, layout.page_size)
        self._by_address = _Ranges()
        return memory

    # -- arguments -------------------------------------------------------------

    @staticmethod
    def _int(name: str, value: object) -> int:
        try:
            return operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})") from None

    def _page_multiple(self, name: str, value: object, *, positive: bool, size: bool = True) -> int:
        value = self._int(name, value)
        if value < 0 or (positive and value == 0):
            raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value}")
        if value % self.layout.page_size:
            raise ValueError(f"{name} must be a multiple of the arena page {self.layout.page_size:#x}, got {value:#x}")
        limit = getattr(self.layout, self._span_limit)
        if size and value > limit:
            raise ValueError(f"{name} {value:#x} is more than the arena can span ({self._span_limit} {limit:#x})")
        return value

    def _check_start(self, start: object) -> int | None:
        if start is None:
            return None
        start = self._page_multiple("start", start, positive=True, size=False)
        self._check_start_room(start)
        if start >= self.memory.limit:
            raise ValueError(f"start {start:#x} is outside the address space (below {self.memory.limit:#x})")
        return start

    def _check_start_room(self, start: int) -> None:
        """What the manager's own placement needs of ``start``; ``ValueError`` if it is not met."""
        raise NotImplementedError

    # -- the memory layer ------------------------------------------------------

    def _reserve(self, hint: int, size: int) -> int | None:
        """``memory.reserve``, except that a range the address space cannot hold is no room.

        The layer raises ``ValueError`` for such a size (it checks its own
        arguments); to the arena a request too large for the space is simply
        out of memory, as sysReserve returning nil was to Go.
        """
        if not 0 < size < self._limit or hint + size > self._top:
            return None
        return self._mem_reserve(hint, size)

    def _release(self, p: int, size: int) -> None:
        """Give back a mapping the arena does not keep; one the kernel refuses stays on the books.

        Such a mapping is retried by ``close`` (or at once if the constructor
        fails), so a failed munmap never leaks it.
        """
        try:
            self.memory.release(p, size)
        except OSError:
            self._unreleased.append((p, size))
            raise

    def _give_up(self) -> None:
        """A constructor failed: give back what it reserved, and what a failed release left behind."""
        try:
            self.close()
        except OSError:
            pass  # the constructor's own error is the one to report

    def _check_open(self) -> None:
        if self._closed:
            raise ArenaClosed("the arena is closed")

    # -- queries ---------------------------------------------------------------

    closed = property(lambda self: self._closed, doc="Whether ``close`` ran: the mappings are released and every call but ``close`` raises ``ArenaClosed``.")

    @property
    def allocations(self) -> list[tuple[int, int]]:
        """``(address, size)`` of what ``sys_alloc`` handed out, in order (the last ``history`` of them)."""
        return list(self._allocations)

    @property
    def regions(self) -> list[Region]:
        """The mappings the arena holds."""
        return [Region(*r) for r in self._regions]

    def save_trace(self, path: str) -> None:
        """Write this manager's history to ``path`` as a replayable trace (docs/trace-format.md).

        ``OSError`` if the file cannot be written; ``ValueError`` if the history
        is not whole (``Arena(history=N)``) or longer than a trace may be.
        """
        record.save(self, path)

    history_complete = True  # whether events and allocations still hold every decision (Arena's history can bound them)
    history: int | None = None

    def _trace_start(self) -> tuple[int, dict[str, Any]]:
        """The trace format version this manager's trace needs, and its constructor's ``start`` and ``initial_size``."""
        raise NotImplementedError

    # -- views -----------------------------------------------------------------

    def view(self, addr: int, size: int | None = None) -> memoryview:
        """A writable byte view (format ``'B'``) of ``[addr, addr + size)``.

        With ``history=None`` the range must lie inside one allocation, and
        ``size=None`` runs to its end. A bounded or no history no longer knows
        where each allocation ends: the range must lie inside one run of
        committed memory (``committed_runs``) and ``size`` is required.
        Raises ``TypeError`` for a non-int, ``ValueError`` for a range
        outside, and ``ArenaClosed``. While the view (a slice of it, or
        anything holding it) is alive, ``close`` refuses; the view keeps the
        arena alive.
        """
        if type(addr) is not int:
            addr = self._int("addr", addr)
        if size is not None and type(size) is not int:
            size = self._int("size", size)
        self._lock.acquire()
        try:
            if self._closed:
                raise ArenaClosed("the arena is closed")
            if self._history is None:
                index = self._by_address
                if len(index.starts) != len(self._allocations):
                    self._index_allocations()
                # A view of an allocation starts where it does: one lookup.
                end = index.end_at.get(addr) or self._end_around(addr, index)
            elif size is None:
                raise ValueError(f"view needs a size: with history={self._history} the arena no longer knows where allocations end")
            else:
                end = self._run_end(addr)
            if size is None:
                size = end - addr
            elif size <= 0 or addr + size > end:
                raise ValueError(self._too_long(addr, size, end))
            return self._exports.export(addr, size)
        finally:
            self._lock.release()

    def alloc(self, n: int) -> memoryview | None:
        """``sys_alloc(n)`` as a writable view of the ``n`` bytes (``address_of`` gives its address), or ``None``.

        Raises as ``sys_alloc`` does. While the view is alive ``close`` refuses (see ``view``).
        """
        p = self.sys_alloc(n)
        if p is None:
            return None
        with self._lock:
            if self._closed:  # by another thread, since sys_alloc returned
                raise ArenaClosed("the arena is closed")
            return self._exports.export(p, operator.index(n))

    def address_of(self, view: memoryview) -> int:
        """The address of the first byte of ``view``: one from ``view`` or ``alloc``, or a slice of one.

        ``TypeError`` for a non-memoryview, ``ValueError`` for a view of other
        memory, a released view or one not C-contiguous and writable.
        """
        return views.address_of(self, view)

    def _index_allocations(self) -> None:
        """Index what sys_alloc handed out since the last view."""
        index = self._by_address
        for p, n in self._allocations[len(index.starts) :]:
            index.add(p, p + n)

    def _end_around(self, addr: int, ranges: _Ranges) -> int:
        """The end of the range (allocation or run) holding ``addr``; ``ValueError`` naming the nearest if none."""
        near = ranges.below(addr)
        if near and addr < near[1]:
            return near[1]
        text, what, near = self._outside(addr, near)
        if near:
            text += f"; the nearest {what} below it is [{near[0]:#x}, {near[1]:#x})"
        raise ValueError(text)

    def _outside(self, addr: int, near: tuple[int, int] | None) -> tuple[str, str, tuple[int, int] | None]:
        """Why no range holds ``addr``, what the ranges are called, and the nearest one below it."""
        return f"{addr:#x} is in no allocation of this arena", "allocation", near

    def _too_long(self, addr: int, size: int, end: int) -> str:
        if size <= 0:
            return f"size must be positive, got {size}"
        start = self._by_address.below(addr)[0]
        return f"[{addr:#x}, {addr + size:#x}) runs past the end of the allocation [{start:#x}, {end:#x}) it starts in"

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Release every mapping the arena made; idempotent.

        ``BufferError`` while a view of its memory is alive (release them, or
        let them go); nothing is unmapped then. A mapping the kernel refused
        to release (``OSError``) stays on the books and is tried again by the
        next ``close``.
        """
        with self._lock:
            if self._closed and not self._unreleased:
                return
            # As mmap.close(): nothing is unmapped while a view could still reach it.
            alive = self._exports.alive()
            if alive:
                raise BufferError(f"cannot close: {plural(alive, 'view')} of arena memory {'is' if alive == 1 else 'are'} still alive")
            self._closed = True
            self._exports.clear()
            self._by_address = _Ranges()
            self._closing()
            error = None
            # What the kernel refused to release before is tried again, every time.
            pending = [(p, size) for p, size, _ in reversed(self._regions)] + self._unreleased
            self._regions.clear()
            self._unreleased = []
            for p, size in pending:
                try:
                    self.memory.release(p, size)
                except OSError as exc:
                    self._unreleased.append((p, size))
                    error = error or exc
            if error is not None:
                raise error

    def _closing(self) -> None:
        """``close`` is about to give back every region: what a subclass keeps of them, it takes now."""

    def __enter__(self) -> Self:
        """The manager itself; leaving the ``with`` block closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
