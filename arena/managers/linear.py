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
import sys
from collections import deque
from typing import Any, TypeAlias

from .. import sysmem
from ..policy import rules
from ..policy.layout import LAYOUT_64, Layout, MiB, check_layout
from ..policy.rules import Bounds, Rule
from .lifetime import _CLOSED, _INSIDE, Manager, _Ranges
from .vocabulary import Event, Stats, binary_end, round_up

# A decision as the arena records it: step, request, hint, size, returned, verdict,
# reason, then the bounds after it (arena_start, arena_used, arena_alloc, arena_end).
_Decision: TypeAlias = tuple[str, int, "int | None", int, "int | None", str, str, int, int, int, int]


# A growth not asked for (it would pass max_mem or the top): never an address.
_NOT_TRIED = -1


class ReservationFailed(MemoryError):
    """Not even the smallest first reservation could be made (Go throws here)."""


class Arena(Manager):
    """A linear heap arena over real reservations, growing as Go's sysAlloc did (Go 1.8 - 1.10).

    ``Arena(layout=LAYOUT_64, rule="fixed", memory=None, start=None, initial_size=None, history=None)``

    - ``layout``: a ``Layout``: ``LAYOUT_64``, ``LAYOUT_32`` (Go's constants
      on 64- and 32-bit), or a variant made with ``dataclasses.replace``.
    - ``rule``: which reservation answered away from ``arena_end`` the arena
      keeps (``arena.rules``, docs/rules.md): ``"fixed"``, Go commit e5a5c03:
      only one above ``arena_end``; ``"legacy"``, Go before it: any at or
      above ``arena_start``, which can lower ``arena_used`` below live memory
      (Go issue 20259); ``"go1.9"``, Go 1.9: a separate allocation cursor;
      ``"strict"``: only the exact hint. Or ``"module:attr"`` naming a rule of
      your own, or a ``Rule`` object. (Go 1.11's sparse heap is ``HeapArenas``.)
      It is read once (``rules.read``); a rule that fails is a
      ``rules.RuleFailed``, from ``sys_alloc`` after the region it was asked
      about is given back.
    - ``memory``: the OS memory layer (``arena.sysmem``); ``None`` takes
      ``sysmem.default()``. An ``arena.testing.ScriptedMemory`` places the
      kernel's answers where a test says.
    - ``start``: where the arena part of the first reservation begins (a
      multiple of the arena page); ``None``: the layout's hints (64-bit) or
      just above the program (32-bit), as Go did.
    - ``initial_size``: the first reservation's arena size (a multiple of the
      arena page); ``None``: the layout's sizes, largest first.
    - ``history``: how many decisions (``events``) and allocations
      (``allocations``) the arena keeps: ``None``, every one; ``N``, the last
      N; ``0``, none. ``stats``, the decisions that lowered arena_used
      (``lowered``) and the committed memory (``committed_runs``) are kept
      whatever it says, so ``check.verify`` works with any history.

    Raises ``TypeError`` for an argument of the wrong type and
    ``ValueError`` for one out of range (each naming the argument), and
    ``ReservationFailed`` when no first reservation can be made. Close it
    (``close``, or use it as a context manager) to release its mappings;
    one dropped unclosed is closed by the garbage collector, with a
    ``ResourceWarning``. It cannot be copied or pickled (``TypeError``).
    """

    __slots__ = ("_rule", "_page", "_step", "_max_mem", "_grow_limit", "_mem_commit", "_history", "_events", "_tally",
                 "_regions_closed", "_lowered", "_runs", "_run_start", "_start", "_used", "_alloc", "_end")

    def __init__(
        self,
        layout: Layout = LAYOUT_64,
        rule: str | Rule | rules.Parts = "fixed",
        memory: sysmem.MemoryLayer | None = None,
        start: int | None = None,
        initial_size: int | None = None,
        history: int | None = None,
    ) -> None:
        if history is not None:
            if isinstance(history, bool) or not isinstance(history, int):
                raise TypeError(f"history must be None (keep every decision) or an int N (keep the last N), not {history!r}")
            history = int.__index__(history)  # a plain int: a subclass's own methods are never asked
            if not 0 <= history < sys.maxsize:
                raise ValueError(f"history must be None or the number of decisions to keep (0: none), got {history}")
        check_layout(layout)  # before the rule: a wrong layout is reported first
        # Read once, into the values that were checked (rules.Parts): a rule
        # whose parts change later cannot change how the arena behaves, nor
        # slip a pair the check forbids past it.
        self._rule = rules.read(rule)
        memory = self._take(layout, memory)
        # The hot path reads these as plain attributes, not through layout and memory
        # (_take keeps _top, _limit and _mem_reserve so too).
        self._page, self._step, self._max_mem = layout.page_size, layout.growth_step, layout.max_mem
        self._grow_limit = 0  # set with the first reservation (_take_first)
        self._mem_commit = memory.commit
        # Plain tuples, as cheap to record as possible: Region, Event and Stats
        # are built from them only when someone reads them (_regions too).
        # One tuple per decision: what was asked and answered, then the bounds
        # after it. The bounds before it are the previous decision's after:
        # every change of the bounds is a decision. A bounded history keeps one
        # decision more than it shows, for the bounds before the first shown;
        # appending to a full deque drops the oldest at no extra cost.
        self._history = history
        if history is None:
            self._events: list[_Decision] | deque[_Decision] = []
        else:
            self._events, self._allocations = deque(maxlen=history + 1), deque(maxlen=history)
        # Counted as they happen in _record; what the hot path decides (commits,
        # contiguous growth) is derived from the bounds and regions in stats.
        self._tally = Stats()
        self._regions_closed = 0  # regions released by close(), for stats.contiguous
        self._lowered: list[tuple[Bounds, _Decision]] = []  # (bounds before, decision) of each lowering
        # Committed memory, allocations merged where they touch: closed runs,
        # sorted, plus the open run [_run_start, arena_alloc) the cursor extends.
        # The cursor moves only by commits, which extend the open run, except
        # where it jumps (a non-contiguous region, a fallback): only those slow
        # paths file a run, so the hot path keeps the runs without a write.
        # A closed run can touch the open one (a fallback mapping placed right
        # at a full block's end): readers join them (committed_runs, _run_end).
        self._runs, self._run_start = _Ranges(), 0
        self._start = self._used = self._alloc = self._end = 0
        start, initial_size = self._check_start(start), self._check_initial_size(initial_size)
        try:
            self._reserve_first(start, initial_size)
        except BaseException:
            self._give_up()
            raise

    # -- arguments -------------------------------------------------------------

    def _check_start_room(self, start: int) -> None:
        if start - self.layout.metadata_size < self.memory.lowest:
            raise ValueError(
                f"start {start:#x} leaves no room below it for {self.layout.metadata_size:#x} bytes of heap metadata"
            )

    def _check_initial_size(self, size: object) -> int | None:
        if size is None:
            return None
        size = self._page_multiple("initial_size", size, positive=False)
        if size + self.layout.metadata_size == 0:
            raise ValueError(f"initial_size must be positive: the {self.layout.name} layout has no metadata to reserve")
        return size

    # -- state -----------------------------------------------------------------

    def _record(self, step: str, request: int, hint: int | None, size: int, returned: int | None, verdict: str,
                reason: str) -> None:
        # Every decision but the hot path's two (a commit, a contiguous growth)
        # is recorded here: their counters are kept as they happen.
        t = self._tally
        if returned is not None and step in ("first", "grow"):
            t.reservations += 1  # the kernel answered, whatever became of it
        if verdict == "accepted":
            t.noncontiguous += 1
        elif verdict == "rejected":
            t.rejections += 1
            t.released_after_rejection += size
        elif verdict == "fallback":
            t.fallbacks += 1
        self._events.append((step, request, hint, size, returned, verdict, reason,
                             self._start, self._used, self._alloc, self._end))

    def _close_run(self, start: int, end: int) -> None:
        """File committed ``[start, end)`` among the closed runs, merged with a run it touches."""
        if start < end:
            self._runs.add(start, end, merge=True)

    # -- the first reservation -------------------------------------------------

    def _first_hint(self, total: int) -> int:
        """Go's 32-bit rule: 256 KiB above the binary, rounded to 1 MiB; above the brk if that falls inside."""
        limit, brk = self.memory.limit, sysmem.program_break()
        end = binary_end()
        # On a 64-bit host nothing of the binary lies in a 32-bit space: start low.
        end = end if end < limit else 0
        p = round_up(end + (1 << 18), MiB)
        if brk < limit and p <= brk < p + total:
            p = round_up(brk + MiB, MiB)
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
        base = round_up(p, self.layout.page_size) + self.layout.metadata_size
        self._start = 0 if self.layout.arena_start_is_zero else base
        self._used = self._alloc = self._run_start = base
        self._end = max(p + total, base)
        # Growing may end at most here (_grow): below 2**bits, and the heap
        # spanning at most max_mem + 1 bytes from arena_start.
        self._grow_limit = min(self._top - 1, self._start + self._max_mem + 1)
        self._regions.append((p, total, "first"))
        where = "at the hint" if p == hint else f"the kernel chose {p:#x} instead of {hint:#x}"
        self._record("first", 0, hint, total, p, "reserved", f"first reservation {where}")

    # -- sysAlloc --------------------------------------------------------------
    #
    # The usual calls (a commit from the reservation, a contiguous growth) run
    # as straight-line code: bounds, layout and memory calls are plain
    # attributes, and a decision is one tuple appended to the history.

    def sys_alloc(self, n: int) -> int | None:
        """The address of ``n`` bytes of committed, read-write memory, or ``None`` when out of memory.

        ``n`` is a positive multiple of the arena page up to ``layout.max_mem``
        (``TypeError``/``ValueError`` otherwise), read once. Raises
        ``ArenaClosed`` after ``close``, ``OSError`` if the kernel fails in a
        way that is not "out of memory", ``ReentrantCall`` when called from
        inside another call on the arena, and what the rule or the memory
        layer raise (after putting back what the call took).
        """
        # Read once, at the door, before the lock: an __index__ that calls back
        # into the arena finds it free.
        if type(n) is not int:
            n = self._int("n", n)
        # _enter, inlined (acquire/release, not "with": half the cost of a lock on the hot path).
        lock = self._lock
        lock.acquire()
        if self._flags:
            state = self._flags  # read under the lock: another thread may change it after
            lock.release()
            self._refuse("sys_alloc", state)
        self._flags = _INSIDE
        try:
            # The usual request, a page multiple within max_mem, costs a few comparisons.
            if n <= 0 or n % self._page or n > self._max_mem:
                self._page_multiple("n", n, positive=True)  # raises, saying what is wrong
            p, end = self._alloc, self._end
            if n > end - p:
                # A growth: round(n + page, growth_step) bytes more, asked for
                # right at arena_end. Its usual answer, there, is taken here;
                # _grow decides every other.
                step, m = self._step, n + self._page
                p_size = step if m <= step else -(-m // step) * step
                new_end = end + p_size
                # Go's "arena_end <= new_end" is its overflow check: a block ending at
                # exactly 2**bits wraps to 0 in uintptr and is not tried either. Both
                # that and max_mem are in _grow_limit (new_end >= 2**bits, or
                # new_end - arena_start - 1 > max_mem). Then _reserve's check, of
                # which new_end < 2**bits is already done.
                if new_end > self._grow_limit:
                    r: int | None = _NOT_TRIED
                elif p_size < self._limit:
                    reserve = self._mem_reserve  # an instance's function: called from a local, not looked up as a method
                    r = reserve(end, p_size)
                else:
                    r = None
                if r == end:
                    self._regions.append((end, p_size, "reservation"))
                    self._end = new_end
                    self._events.append(("grow", n, end, p_size, end, "contiguous", "contiguous with the reservation",
                                         self._start, self._used, p, new_end))
                    end = new_end
                elif self._grow(n, p_size, r) is False:
                    return None
                else:
                    p, end = self._alloc, self._end
                # A cursor past arena_end (a fallback under a rule that leaves arena_end alone)
                # is still past it: the growth did not make room there. With a separate cursor
                # (go1.9) a fallback can raise arena_used past arena_end, but never arena_alloc:
                # the cursor stays inside the current block.
                if n > end - p:
                    return self._fallback(n)
            # [p, p + n) lies inside the current block, which the arena reserved and
            # still holds: it commits only when n <= arena_end - arena_alloc, and
            # arena_alloc..arena_end is always part of one held region. This is
            # the only place memory is made read-write, and it is mprotect, never
            # mmap with MAP_FIXED: nothing outside the arena's own reservations is
            # ever replaced or changed (tests/test_hardening_foreign.py checks it).
            commit = self._mem_commit  # an instance's function: called from a local, not looked up as a method
            try:
                commit(p, n)
            except OSError as exc:
                if exc.errno != errno.ENOMEM:
                    raise
                self._out_of_memory(p, n)
                return None
            self._alloc = q = p + n
            used = self._used
            if q > used:
                self._used = used = q
            self._allocations.append((p, n))
            self._events.append(("commit", n, None, n, p, "committed", "from the reservation", self._start, used, q, end))
            return p
        finally:
            self._flags = 0
            lock.release()

    def _grow(self, n: int, p_size: int, p: int | None) -> bool | None:
        """A growth of ``p_size`` bytes that did not land at arena_end: ``p`` is where the kernel put it, ``None``
        if there was no room, ``_NOT_TRIED`` if it would pass max_mem or the top. ``True`` if a region was taken
        (the cursor may have moved), ``False`` if Go 1.8 gives up here, ``None`` to fall back."""
        end = self._end
        if p == _NOT_TRIED:
            self._record("grow", n, None, p_size, None, "beyond-max-mem", "growing would pass max_mem or the top; not tried")
            return None
        if p is None:
            if self._rule.fallback_on_no_room:
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
        except BaseException as exc:
            # A rule that fails (RuleFailed), or is interrupted, refuses: the region
            # is given back and recorded before the error is raised.
            why = str(exc) if isinstance(exc, rules.RuleFailed) else f"the rule failed ({type(exc).__name__}: {exc})"
            failure = exc
        if why is None:
            before = Bounds(self._start, self._used, self._alloc, self._end)
            self._regions.append((p, p_size, "reservation"))
            self._close_run(self._run_start, self._alloc)
            self._end = p + p_size
            self._alloc = self._run_start = round_up(p, self._page)
            if not self._rule.separate_cursor:
                # Before Go 1.9 the allocation cursor is arena_used itself: under
                # "legacy" a region below arena_used lowers it, which is the bug.
                self._used = self._alloc
            lowered = " LOWERED arena_used" if self._used < used_before else ""
            self._record("grow", n, hint, p_size, p, "accepted", f"non-contiguous region accepted ({self.rule}){lowered}")
            if lowered:
                # The only assignment that can lower arena_used (commits and
                # fallbacks only raise it), so this record is complete: verify
                # reads it, whatever the history keeps.
                self._lowered.append((before, self._events[-1]))
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
        # RuleFailed if the rule raises or answers neither None nor a str; it is handed a copy of the layout.
        return self._rule.refuse(Bounds(self._start, self._used, self._alloc, self._end), p, p_size, self.layout)

    def _out_of_memory(self, p: int, n: int) -> None:
        """sys_alloc's commit of ``[p, p + n)`` failed with ENOMEM: recorded, and the arena is out of memory."""
        # mprotect splits the reservation's mapping: at vm.max_map_count (or
        # out of kernel memory) that is ENOMEM. Nothing changed: out of memory.
        self._record("commit", n, None, n, p, "out-of-memory", "the kernel could not commit (ENOMEM)")

    def _fallback(self, n: int) -> int | None:
        layout = self.layout
        if not layout.fallback:
            self._record("fallback", n, None, 0, None, "out-of-memory", "the reservation is all a 64-bit arena has")
            return None
        p_size = round_up(n, layout.page_size) + layout.page_size
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
        q = round_up(p, layout.page_size)
        try:
            # [q, q + n) lies inside the fallback mapping just reserved (see sys_alloc's commit).
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
            self._record("fallback", n, 0, p_size, p, "out-of-memory",
                         "the kernel could not commit the fallback mapping (ENOMEM)")
            return None
        self._regions.append((p, p_size, "fallback"))
        self._allocations.append((q, n))
        if q + n > self._used:
            self._used = q + n
            if not self._rule.separate_cursor:
                # Go 1.8 allocates from arena_used itself ...
                self._close_run(self._run_start, self._alloc)
                self._run_start, self._alloc = q, self._used
            if self._rule.fallback_raises_end:
                # ... so it also moves arena_end to the mapping's end:
                # arena_used never passes arena_end, and the next commit
                # stays inside this mapping.
                self._end = max(self._end, p + p_size)
        if self._alloc != q + n:
            # The cursor stayed in its block: the fallback is a run of its own.
            self._close_run(q, q + n)
        self._record("fallback", n, 0, p_size, p, "fallback", "small mapping anywhere the kernel likes")
        return q

    # -- queries ---------------------------------------------------------------

    def contains(self, addr: int) -> bool:
        """Go's heap check: ``arena_start <= addr < arena_used``, nothing else.

        ``TypeError`` for a non-int ``addr``, ``ArenaClosed`` after ``close``,
        ``ReentrantCall`` from inside another call on the arena.
        """
        addr = self._int("addr", addr)
        # _enter, inlined: verify asks it of every allocation.
        self._lock.acquire()
        if self._flags:
            state = self._flags  # read under the lock: another thread may change it after
            self._lock.release()
            self._refuse("contains", state)
        self._flags = _INSIDE
        try:
            return self._start <= addr < self._used
        finally:
            self._flags = 0
            self._lock.release()

    rule = property(lambda self: self._rule.name, doc="The rule's name: what reports, JSON and traces show.")
    placement = property(lambda self: self._rule.rule, doc="The rule itself (a ``Rule``, or your own object).")
    arena_start = property(lambda self: self._start, doc="Lowest heap address (0 on 32-bit).")
    arena_used = property(lambda self: self._used, doc="End of the heap handed out so far.")
    arena_alloc = property(lambda self: self._alloc, doc="Allocation cursor (arena_used unless the rule has a separate cursor).")
    arena_end = property(lambda self: self._end, doc="End of the current reservation.")
    arena_reserved = property(lambda self: True, doc="Always True: every block is really reserved.")

    @property
    def events(self) -> list[Event[Bounds]]:
        """One record per decision, in order (the last ``history`` of them)."""
        return self._events_once(self._built)

    def _built(self, kept: list[_Decision]) -> list[Event[Bounds]]:
        """The events of the decisions ``kept`` (with a bounded history, the first only gives the bounds before)."""
        before = Bounds(0, 0, 0, 0)
        if self._history is not None and len(kept) > self._history:
            before, kept = Bounds(*kept[0][7:]), kept[1:]
        out: list[Event[Bounds]] = []
        for e in kept:
            after = Bounds(*e[7:])
            out.append(Event(*e[:7], before, after))
            before = after
        return out

    history = property(lambda self: self._history, doc="How many decisions the arena keeps: None, all; N, the last N.")

    # The base's plain True is HeapArenas' answer (it keeps every decision): a class attribute the type
    # checker calls writable, which this read-only property overrides deliberately.
    @property
    def history_complete(self) -> bool:  # type: ignore[override]
        """Whether ``events`` and ``allocations`` still hold every decision and allocation."""
        return self._history is None or len(self._events) <= self._history

    @property
    def lowered(self) -> list[Event[Bounds]]:
        """Every decision that lowered arena_used (Go issue 20259), kept whatever ``history`` is."""
        return [Event(*e[:7], before, Bounds(*e[7:])) for before, e in self._lowered]

    @property
    def committed_runs(self) -> list[tuple[int, int]]:
        """``(address, size)`` of the committed memory, lowest first: allocations merged where they touch.

        Kept whatever ``history`` is; its size is bounded by the regions.
        ``ReentrantCall`` from inside another call on the arena.
        """
        self._enter("committed_runs", open_only=False)
        try:
            runs = self._runs.copy()
            if self._alloc > self._run_start:
                runs.add(self._run_start, self._alloc, merge=True)
        finally:
            self._leave()
        return [(start, runs.end_at[start] - start) for start in runs.starts]

    @property
    def stats(self) -> Stats:
        """A snapshot of the arena's counters (``Stats``): cumulative since it was made, whatever ``history`` keeps.

        Reading it resets nothing; each read is a new ``Stats``. ``ReentrantCall``
        from inside another call on the arena.
        """
        self._enter("stats", open_only=False)
        try:
            t = self._tally
            # Every region is the first one, a contiguous growth, an accepted
            # non-contiguous region or a fallback: the hot path's growths need
            # no counter of their own.
            contiguous = len(self._regions) + self._regions_closed - 1 - t.noncontiguous - t.fallbacks
            return dataclasses.replace(
                t,
                reserved=sum(size for _, size, _ in self._regions),
                committed=self._runs.size + self._alloc - self._run_start,
                reservations=t.reservations + contiguous,
                contiguous=contiguous,
            )
        finally:
            self._leave()

    # -- views (bounded history) ----------------------------------------------

    def _outside(self, addr: int, near: tuple[int, int] | None) -> tuple[str, str, tuple[int, int] | None]:
        if self._history is None:
            return super()._outside(addr, near)
        text = (f"{addr:#x} is in no committed memory of this arena (with history={self._history} a view is "
                "checked against the runs of committed memory, not against each allocation)")
        if self._run_start < self._alloc <= addr:
            near = max(near or (0, 0), (self._run_start, self._alloc))
        return text, "committed run", near

    def _run_end(self, addr: int) -> int:
        """The end of the run of committed memory holding ``addr``; ``ValueError`` naming the nearest if none."""
        alloc, runs = self._alloc, self._runs
        if self._run_start <= addr < alloc:
            end = alloc
        else:
            end = self._end_around(addr, runs)
            # Only the open run can touch a closed one (closed ones are merged when filed).
            if end == self._run_start:
                end = alloc
        return runs.end_at.get(end, end)

    def _too_long(self, addr: int, size: int, end: int) -> str:
        if self._history is None or size <= 0:
            return super()._too_long(addr, size, end)
        return f"[{addr:#x}, {addr + size:#x}) runs past the end of the committed memory it starts in, at {end:#x}"

    # -- traces ----------------------------------------------------------------

    def _trace_start(self) -> tuple[int, dict[str, Any]]:
        """Version 1 (every reader reads it), and ``start`` and ``initial_size`` read back from the first reservation."""
        layout = self.layout
        first = [e for e in self.events if e.step == "first"]
        taken = first[-1]
        # 64-bit's hint ladder ran unless the caller gave a start; replaying it with
        # the recorded answers reproduces it. One size tried means the caller gave it.
        ladder = taken.hint in layout.first_hints or any(e.verdict == "missed" for e in first)
        assert taken.hint is not None  # a first reservation is always hinted
        start = None if ladder else taken.hint + layout.metadata_size
        tried = [e for e in first if e.verdict != "missed"]
        initial_size = taken.size - layout.metadata_size if len(tried) == 1 else None
        return 1, {"start": None if start is None else hex(start), "initial_size": initial_size}

    # -- lifetime --------------------------------------------------------------

    def _closing(self) -> None:
        self._regions_closed += len(self._regions)  # for stats.contiguous

    def __repr__(self) -> str:
        state = "closed" if self._flags & _CLOSED else f"used={self._used:#x} end={self._end:#x}"
        return f"<Arena {self.layout.name} rule={self.rule} start={self._start:#x} {state}>"
