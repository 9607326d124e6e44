"""The arena manager: Go's linear heap arena and its sysAlloc, under a placement rule.

Bounds follow Go's names. Everything in [arena_start, arena_used) is "heap"
(``contains``); arena_used must never decrease, or live memory above it stops
being heap. A rule (``arena.rules``) decides what Go's versions decided
differently: which non-contiguous reservation to accept, which cursor
allocation moves, and what the 32-bit fallback does; the rest is the same
under every rule.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import operator
import threading
from typing import NamedTuple

from . import rules, sysmem
from .layout import LAYOUT_64, Layout, MiB
from .rules import RULES, Bounds, Rule  # noqa: F401  (RULES and Bounds are still imported from here)


class ArenaClosed(RuntimeError):
    """The arena was closed: its mappings are gone."""


class ReservationFailed(MemoryError):
    """Not even the smallest first reservation could be made (Go throws here)."""


class Region(NamedTuple):
    """A mapping the arena made and holds: ``role`` is first, reservation or fallback."""

    start: int
    size: int
    role: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclasses.dataclass(frozen=True)
class Event:
    """One decision: what was asked, what the kernel answered, the verdict and why."""

    step: str  # first, grow, commit or fallback
    request: int  # the n of sys_alloc (0 for the first reservation)
    hint: int | None
    size: int
    returned: int | None
    verdict: str
    reason: str
    before: Bounds
    after: Bounds


@dataclasses.dataclass
class Stats:
    """Counters of an arena, tallied from its decisions (``Arena.stats``)."""

    reserved: int = 0  # bytes of address space held now
    committed: int = 0  # bytes made read-write (Go's heap_sys)
    released_after_rejection: int = 0  # Go's "fake stat": never counted above
    reservations: int = 0  # reservations the kernel answered
    contiguous: int = 0
    noncontiguous: int = 0
    rejections: int = 0
    fallbacks: int = 0


@functools.cache
def _binary_end() -> int:
    """Where the executable's image ends: it does not move, so the maps are read once."""
    return sysmem.program_extent(sysmem.mappings())[0]


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


class Arena:
    """A linear heap arena over real reservations, growing as Go's sysAlloc did."""

    def __init__(
        self,
        layout: Layout = LAYOUT_64,
        rule: str | Rule = "fixed",
        memory: sysmem.Memory | None = None,
        start: int | None = None,
        initial_size: int | None = None,
    ) -> None:
        if not isinstance(layout, Layout):
            raise TypeError(f"layout must be a Layout, not {type(layout).__name__}")
        rule = rules.resolve(rule)
        if memory is None:
            memory = sysmem.default(address_bits=layout.address_bits)
        if getattr(memory, "address_bits", None) != layout.address_bits:
            raise ValueError(f"a {layout.name} layout needs a {layout.address_bits}-bit memory layer, got {memory!r}")
        if layout.page_size % memory.page_size:
            raise ValueError(f"the arena page {layout.page_size:#x} is not a multiple of the OS page {memory.page_size:#x}")
        self.layout = layout
        # rule is the rule's name (what reports, JSON and traces show); placement the rule itself.
        self.placement, self.rule = rule, rules.name_of(rule)
        # Read once: a rule cannot change how an arena behaves after it is made.
        self._refusal = rule.refusal
        self._separate_cursor, self._fallback_on_no_room = rule.separate_cursor, rule.fallback_on_no_room
        self._fallback_raises_end = rule.fallback_raises_end
        self.memory = memory
        self._lock = threading.Lock()
        self._closed = False
        # The hot path reads these as plain attributes, not through layout and memory.
        self._page, self._step, self._max_mem = layout.page_size, layout.growth_step, layout.max_mem
        self._top, self._limit = 1 << layout.address_bits, memory.limit
        self._mem_reserve, self._mem_commit = memory.reserve, memory.commit
        # Plain tuples, as cheap to record as possible: Region, Event and Stats
        # are built from them only when someone reads them.
        self._regions: list[tuple[int, int, str]] = []
        self._unreleased: list[tuple[int, int]] = []  # mappings whose release the kernel refused
        self._allocations: list[tuple[int, int]] = []
        # One tuple per decision: what was asked and answered, then the bounds
        # after it. The bounds before it are the previous decision's after:
        # every change of the bounds is a decision.
        self._events: list[tuple] = []
        self._tally, self._tallied = Stats(), 0
        self._start = self._used = self._alloc = self._end = 0
        start, initial_size = self._check_start(start), self._check_initial_size(initial_size)
        try:
            self._reserve_first(start, initial_size)
        except BaseException:
            # No arena to close: give back what a failed release left behind.
            self._closed = True
            for p, size in self._unreleased:
                try:
                    self.memory.release(p, size)
                except OSError:
                    pass
            raise

    # -- arguments -------------------------------------------------------------

    def _page_multiple(self, name: str, value: object, *, positive: bool, size: bool = True) -> int:
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})") from None
        if value < 0 or (positive and value == 0):
            raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value}")
        if value % self.layout.page_size:
            raise ValueError(f"{name} must be a multiple of the arena page {self.layout.page_size:#x}, got {value:#x}")
        if size and value > self.layout.max_mem:
            raise ValueError(f"{name} {value:#x} is more than the arena can span (max_mem {self.layout.max_mem:#x})")
        return value

    def _check_start(self, start: object) -> int | None:
        if start is None:
            return None
        start = self._page_multiple("start", start, positive=True, size=False)
        if start - self.layout.metadata_size < self.memory.lowest:
            raise ValueError(
                f"start {start:#x} leaves no room below it for {self.layout.metadata_size:#x} bytes of heap metadata"
            )
        if start >= self.memory.limit:
            raise ValueError(f"start {start:#x} is outside the address space (below {self.memory.limit:#x})")
        return start

    def _check_initial_size(self, size: object) -> int | None:
        if size is None:
            return None
        size = self._page_multiple("initial_size", size, positive=False)
        if size + self.layout.metadata_size == 0:
            raise ValueError(f"initial_size must be positive: the {self.layout.name} layout has no metadata to reserve")
        return size

    # -- state -----------------------------------------------------------------

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

    def _record(self, step, request, hint, size, returned, verdict, reason) -> None:
        self._events.append((step, request, hint, size, returned, verdict, reason, self._start, self._used, self._alloc, self._end))

    def _check_open(self) -> None:
        if self._closed:
            raise ArenaClosed("the arena is closed")

    # -- the first reservation -------------------------------------------------

    def _first_hint(self, total: int) -> int:
        """Go's 32-bit rule: 256 KiB above the binary, rounded to 1 MiB; above the brk if that falls inside."""
        limit, brk = self.memory.limit, sysmem.program_break()
        binary_end = _binary_end()
        # On a 64-bit host nothing of the binary lies in a 32-bit space: start low.
        binary_end = binary_end if binary_end < limit else 0
        p = _round_up(binary_end + (1 << 18), MiB)
        if brk < limit and p <= brk < p + total:
            p = _round_up(brk + MiB, MiB)
        return p

    def _reserve_first(self, start: int | None, initial_size: int | None) -> None:
        layout, meta = self.layout, self.layout.metadata_size
        sizes = layout.first_sizes if initial_size is None else (initial_size,)
        if start is None:
            # 64-bit: each hint is taken only where it is honoured exactly.
            for hint in layout.first_hints:
                total = meta + sizes[0]
                p = self._reserve(hint, total)
                if p == hint:
                    return self._take_first(p, total, hint)
                if p is not None:
                    self._release(p, total)
                self._record("first", 0, hint, total, p, "missed", "not at the hint; released, next hint")
        for size in sizes:
            total = meta + size
            hint = self._first_hint(total) if start is None else start - meta
            p = self._reserve(hint, total)
            if p is not None:
                return self._take_first(p, total, hint)
            self._record("first", 0, hint, total, None, "no-room", "no room; trying a smaller arena")
        raise ReservationFailed(f"cannot reserve arena address space: tried {', '.join(f'{s:#x}' for s in sizes)} bytes")

    def _take_first(self, p: int, total: int, hint: int) -> None:
        # The metadata sits below the arena part, as in Go's single reservation.
        base = _round_up(p, self.layout.page_size) + self.layout.metadata_size
        self._start = 0 if self.layout.arena_start_is_zero else base
        self._used = self._alloc = base
        self._end = max(p + total, base)
        self._regions.append((p, total, "first"))
        where = "at the hint" if p == hint else f"the kernel chose {p:#x} instead of {hint:#x}"
        self._record("first", 0, hint, total, p, "reserved", f"first reservation {where}")

    # -- sysAlloc --------------------------------------------------------------
    #
    # The usual calls (a commit from the reservation, a contiguous growth) run
    # as straight-line code: bounds, layout and memory calls are plain
    # attributes, and a decision is one tuple appended to the history.

    def sys_alloc(self, n: int) -> int | None:
        """``n`` bytes of committed, read-write memory, or ``None`` when out of memory."""
        # acquire/release, not "with": half the cost of a lock on the hot path.
        self._lock.acquire()
        try:
            if self._closed:  # _check_open, without a call on the hot path
                raise ArenaClosed("the arena is closed")
            # The usual request, an int page multiple within max_mem, costs a few comparisons.
            if type(n) is not int or n <= 0 or n % self._page or n > self._max_mem:
                n = self._page_multiple("n", n, positive=True)
            p = self._alloc
            if n > self._end - p:
                if self._grow(n) is False:
                    return None
                # With a separate cursor (go1.9) a fallback can raise arena_used past arena_end, but
                # never arena_alloc: the cursor stays inside the current block.
                p = self._alloc
                if n > self._end - p:
                    return self._fallback(n)
            return self._commit(p, n)
        finally:
            self._lock.release()

    def _grow(self, n: int) -> bool | None:
        """Try to extend the reservation; ``False`` means Go 1.8 gives up here."""
        end, step = self._end, self._step
        p_size = -(-(n + self._page) // step) * step
        new_end = end + p_size
        # Go's "arena_end <= new_end" is its overflow check: a block ending at
        # exactly 2**bits wraps to 0 in uintptr and is not tried either.
        if new_end >= self._top or new_end - self._start - 1 > self._max_mem:
            self._record("grow", n, None, p_size, None, "beyond-max-mem", "growing would pass max_mem or the top; not tried")
            return None
        # _reserve's check, of which new_end < 2**bits is already done: this is the hot path.
        p = self._mem_reserve(end, p_size) if p_size < self._limit else None
        if p == end:
            self._regions.append((p, p_size, "reservation"))
            self._end = new_end
            self._events.append(("grow", n, end, p_size, p, "contiguous", "contiguous with the reservation",
                                 self._start, self._used, self._alloc, new_end))
            return True
        if p is None:
            if self._fallback_on_no_room:
                self._record("grow", n, end, p_size, None, "no-room", "no room; falling back")
                return None
            self._record("grow", n, end, p_size, None, "no-room", "no room; Go 1.8 returns nil here")
            return False
        # p can be anywhere in the address space, including before arena_end.
        return self._noncontiguous(n, p, p_size)

    def _noncontiguous(self, n: int, p: int, p_size: int) -> None | bool:
        """Take the region at ``p`` if the rule accepts it, else give it back."""
        hint, used_before = self._end, self._used
        try:
            why, failure = self._accepts(p, p_size), None
        except Exception as exc:
            # A rule that fails refuses: the region is given back and recorded before the error is raised.
            why, failure = f"the rule failed ({type(exc).__name__}: {exc})", exc
        if why is None:
            self._regions.append((p, p_size, "reservation"))
            self._end = p + p_size
            self._alloc = _round_up(p, self._page)
            if not self._separate_cursor:
                # Before Go 1.9 the allocation cursor is arena_used itself: under
                # "legacy" a region below arena_used lowers it, which is the bug.
                self._used = self._alloc
            lowered = " LOWERED arena_used" if self._used < used_before else ""
            self._record("grow", n, hint, p_size, p, "accepted", f"non-contiguous region accepted ({self.rule}){lowered}")
            return True
        # Not usable: release it against the fake stat, so the real ones never count it.
        try:
            self._release(p, p_size)
        finally:
            # Rejected either way: a refused release is kept on the books for close().
            self._record("grow", n, hint, p_size, p, "rejected", f"{why}; released")
        if failure is not None:
            raise failure
        return None

    def _accepts(self, p: int, p_size: int) -> str | None:
        """``None`` if the rule takes a non-contiguous region at ``p``, else why not."""
        # Every rule: the heap spans at most max_mem + 1 bytes from arena_start.
        if p + p_size - self._start - 1 > self.layout.max_mem:
            return f"region ends past arena_start + max_mem ({self._start + self.layout.max_mem:#x})"
        why = self._refusal(Bounds(self._start, self._used, self._alloc, self._end), p, p_size, self.layout)
        if why is not None and not isinstance(why, str):
            raise TypeError(f"rule {self.rule}: refusal must return None or a reason (str), not {why!r}")
        return why

    def _commit(self, p: int, n: int) -> int | None:
        # [p, p + n) lies inside the current block, which the arena reserved and
        # still holds: sys_alloc commits only when n <= arena_end - arena_alloc,
        # and arena_alloc..arena_end is always part of one held region. This is
        # the only place memory is made read-write, and it is mprotect, never
        # mmap with MAP_FIXED: nothing outside the arena's own reservations is
        # ever replaced or changed (tests/test_hardening_foreign.py checks it).
        try:
            self._mem_commit(p, n)
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
            # mprotect splits the reservation's mapping: at vm.max_map_count (or
            # out of kernel memory) that is ENOMEM. Nothing changed: out of memory.
            self._record("commit", n, None, n, p, "out-of-memory", "the kernel could not commit (ENOMEM)")
            return None
        self._alloc = q = p + n
        if q > self._used:
            self._used = q
        self._allocations.append((p, n))
        self._events.append(("commit", n, None, n, p, "committed", "from the reservation", self._start, self._used, q, self._end))
        return p

    def _fallback(self, n: int) -> int | None:
        layout = self.layout
        if not layout.fallback:
            self._record("fallback", n, None, 0, None, "out-of-memory", "the reservation is all a 64-bit arena has")
            return None
        p_size = _round_up(n, layout.page_size) + layout.page_size
        p = self._reserve(0, p_size)
        if p is None:
            self._record("fallback", n, 0, p_size, None, "out-of-memory", "no room for a fallback mapping")
            return None
        # Go computes p + p_size - arena_start in uintptr, which wraps to 0 for a
        # region ending at exactly 4 GiB; exact integers keep such a region, since
        # it does lie inside the space, and never let a wrapped value pass.
        if p < self._start or p + p_size - self._start - 1 > layout.max_mem:
            try:
                self._release(p, p_size)
            finally:
                self._record("fallback", n, 0, p_size, p, "fallback-rejected", "outside [arena_start, arena_start + max_mem]")
            return None
        q = _round_up(p, layout.page_size)
        try:
            # [q, q + n) lies inside the fallback mapping just reserved (see _commit).
            self.memory.commit(q, n)
        except OSError as exc:
            try:
                self._release(p, p_size)
            except OSError:
                pass  # kept on the books; the commit's error is the one to report
            if exc.errno != errno.ENOMEM:
                raise
            # Splitting the mapping would pass vm.max_map_count, or no memory:
            # the kernel is out of memory, and so is the arena.
            self._record("fallback", n, 0, p_size, p, "out-of-memory", "the kernel could not commit the fallback mapping (ENOMEM)")
            return None
        self._regions.append((p, p_size, "fallback"))
        self._allocations.append((q, n))
        if q + n > self._used:
            self._used = q + n
            if not self._separate_cursor:
                # Go 1.8 allocates from arena_used itself ...
                self._alloc = self._used
            if self._fallback_raises_end:
                # ... so it also moves arena_end to the mapping's end:
                # arena_used never passes arena_end, and the next commit
                # stays inside this mapping.
                self._end = max(self._end, p + p_size)
        self._record("fallback", n, 0, p_size, p, "fallback", "small mapping anywhere the kernel likes")
        return q

    # -- queries ---------------------------------------------------------------

    def contains(self, addr: int) -> bool:
        """Go's heap check: ``arena_start <= addr < arena_used``, nothing else."""
        try:
            addr = operator.index(addr)
        except TypeError:
            raise TypeError(f"addr must be an int, not {type(addr).__name__} ({addr!r})") from None
        with self._lock:
            self._check_open()
            return self._start <= addr < self._used

    arena_start = property(lambda self: self._start, doc="Lowest heap address (0 on 32-bit).")
    arena_used = property(lambda self: self._used, doc="End of the heap handed out so far.")
    arena_alloc = property(lambda self: self._alloc, doc="Allocation cursor (arena_used unless the rule has a separate cursor).")
    arena_end = property(lambda self: self._end, doc="End of the current reservation.")
    arena_reserved = property(lambda self: True, doc="Always True: every block is really reserved.")
    closed = property(lambda self: self._closed)

    @property
    def allocations(self) -> list[tuple[int, int]]:
        """``(address, size)`` of everything ``sys_alloc`` handed out, in order."""
        return list(self._allocations)

    @property
    def regions(self) -> list[Region]:
        """The mappings the arena holds."""
        return [Region(*r) for r in self._regions]

    @property
    def events(self) -> list[Event]:
        """One record per decision, in order."""
        out, before = [], Bounds(0, 0, 0, 0)
        for e in self._events:
            after = Bounds(*e[7:])
            out.append(Event(*e[:7], before, after))
            before = after
        return out

    @property
    def stats(self) -> Stats:
        """The counters, tallied from the decisions made since the last read."""
        with self._lock:
            t, events = self._tally, self._events
            for step, request, _, size, returned, verdict, *_ in events[self._tallied :]:
                if returned is not None and step in ("first", "grow"):
                    t.reservations += 1  # the kernel answered, whatever became of it
                if verdict == "committed":
                    t.committed += request
                elif verdict == "contiguous":
                    t.contiguous += 1
                elif verdict == "accepted":
                    t.noncontiguous += 1
                elif verdict == "rejected":
                    t.rejections += 1
                    t.released_after_rejection += size
                elif verdict == "fallback":
                    t.fallbacks += 1
                    t.committed += request
            self._tallied = len(events)
            return dataclasses.replace(t, reserved=sum(size for _, size, _ in self._regions))

    def save_trace(self, path: str) -> None:
        """Write this arena's history as a replayable trace (docs/trace-format.md)."""
        from . import trace

        trace.save(self, path)

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Release every mapping the arena made; idempotent.

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

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"used={self._used:#x} end={self._end:#x}"
        return f"<Arena {self.layout.name} rule={self.rule} start={self._start:#x} {state}>"
