"""What a manager of real address space needs besides its placement: checks, held mappings, lifetime.

``HeapArenas`` (Go 1.11's sparse heap arenas) is built on it. ``Arena`` (Go's
linear heap arena) has the same parts of its own, grown with views and a
bounded history; the two could share this base.
"""
from __future__ import annotations

import operator
import threading

from . import sysmem
from .layout import Layout, check_layout
from .manager import ArenaClosed


class Manager:
    """A lock, the mappings held (``_regions``), what was handed out (``_allocations``), and ``close``."""

    # The layout attribute that bounds a request: Go 1.8's _MaxMem, or Go 1.11's maxAlloc.
    _span_limit = "max_mem"

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
        self._regions: list[tuple[int, int, str]] = []
        self._unreleased: list[tuple[int, int]] = []  # mappings whose release the kernel refused
        self._allocations: list[tuple[int, int]] = []
        return memory

    def _page_multiple(self, name: str, value: object, *, positive: bool, size: bool = True) -> int:
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})") from None
        if value < 0 or (positive and value == 0):
            raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value}")
        if value % self.layout.page_size:
            raise ValueError(f"{name} must be a multiple of the arena page {self.layout.page_size:#x}, got {value:#x}")
        limit = getattr(self.layout, self._span_limit)
        if size and value > limit:
            raise ValueError(f"{name} {value:#x} is more than the arena can span ({self._span_limit} {limit:#x})")
        return value

    def _reserve(self, hint: int, size: int) -> int | None:
        """``memory.reserve``, except that a range the address space cannot hold is no room.

        The layer raises ``ValueError`` for such a size (it checks its own
        arguments); to the arena a request too large for the space is simply
        out of memory, as sysReserve returning nil was to Go.
        """
        if not 0 < size < self.memory.limit or hint + size > 1 << self.layout.address_bits:
            return None
        return self.memory.reserve(hint, size)

    def _release(self, p: int, size: int) -> None:
        """Give back a mapping the manager does not keep; one the kernel refuses stays on the books.

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

    closed = property(lambda self: self._closed, doc="Whether ``close`` ran: the mappings are released and every call but ``close`` raises ``ArenaClosed``.")

    @property
    def allocations(self) -> list[tuple[int, int]]:
        """``(address, size)`` of everything ``sys_alloc`` handed out, in order."""
        return list(self._allocations)

    def save_trace(self, path: str) -> None:
        """Write this manager's history to ``path`` as a replayable trace (docs/trace-format.md); ``OSError`` if it cannot."""
        from . import trace

        trace.save(self, path)

    def close(self) -> None:
        """Release every mapping the manager made; idempotent.

        A mapping the kernel refused to release (``OSError``) stays on the books
        and is tried again by the next ``close``.
        """
        with self._lock:
            if self._closed and not self._unreleased:
                return
            self._closed = True
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

    def __enter__(self):
        """The manager itself; leaving the ``with`` block closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
