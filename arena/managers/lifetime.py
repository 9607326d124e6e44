"""What a manager of real address space needs besides its placement: checks, held mappings, views, lifetime.

``Arena`` (Go's linear heap arena) and ``HeapArenas`` (Go 1.11's sparse heap
arenas) are built on it: each decides where memory goes; this class checks
their arguments, asks the memory layer, keeps the mappings they hold, gives
out views of what they handed out, and closes.
"""
from __future__ import annotations

import contextlib
import gc
import operator
import sys
import threading
import warnings
import weakref
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Self, SupportsIndex, TypeVar, cast

from .. import sysmem
from ..policy.layout import Layout, check_layout
from ..words import plural
from . import record, views
from .vocabulary import AnyEvent, ArenaClosed, ReentrantCall, Region

# A manager's state (``_flags``) is bits, so that the hot path's one test sees
# both reasons a call cannot go on: this thread is already inside a call on the
# manager, or it is closed. Every call sets _INSIDE while it holds the lock:
# code that runs meanwhile on this thread (a rule, a memory layer, a finalizer
# the collector runs, a signal handler) and calls back finds it. The lock is an
# RLock, so that such a call is an error (ReentrantCall), not a deadlock, and
# never runs in the middle of another.
_INSIDE, _CLOSED = 1, 2


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


# An event of one kind of manager (events: Event[Bounds] or Event[HeapState]).
_E = TypeVar("_E")


class Manager:
    """A lock, the mappings held (``_regions``), what was handed out (``_allocations``), views, and ``close``.

    A subclass calls ``_take`` first in its constructor, ``_give_up`` if the
    constructor fails after reserving, and defines ``sys_alloc`` (which appends
    each allocation to ``_allocations``) and ``_check_start_room``.
    """

    # Every attribute the managers set is a slot: CPython reads and writes
    # slots at a fixed offset, whatever their number (an instance dict loses
    # its fast access past 29 keys on CPython 3.11, which once cost sys_alloc
    # 11%). A subclass lists its own. __dict__ takes anything else (made only
    # when first used), as before.
    __slots__ = ("layout", "memory", "_lock", "_top", "_limit", "_mem_reserve", "_regions", "_unreleased",
                 "_allocations", "_exports", "_by_address", "_flags", "_shown", "__dict__", "__weakref__")

    # The layout attribute that bounds a request: Go 1.8's _MaxMem, or Go 1.11's maxAlloc.
    _span_limit = "max_mem"
    # How many decisions and allocations are kept: None, all (see Arena's history).
    # A manager with a bounded history (Arena) keeps runs of committed memory,
    # which views then check against: the open run [_run_start, _alloc), the
    # closed _runs, and _run_end for a view outside the open run.
    _history: int | None = None
    _run_start: int
    _alloc: int
    _runs: _Ranges

    if TYPE_CHECKING:
        # What each subclass (Arena, HeapArenas) defines, and this class reads.
        rule: str
        _events: Sequence[tuple[Any, ...]]  # the decisions, a tuple each, only ever appended

        @property
        def events(self) -> Sequence[AnyEvent]: ...
        def sys_alloc(self, n: int) -> int | None: ...
        def _run_end(self, addr: int) -> int: ...  # Arena's, with a bounded history (the only kind)

    def _take(self, layout: Layout, memory: sysmem.MemoryLayer | None) -> sysmem.MemoryLayer:
        """Check the layout and the memory layer a constructor was given; returns the layer to use."""
        layout = check_layout(layout)
        memory = sysmem.layer(memory, layout.address_bits)
        if layout.page_size % memory.page_size:
            raise ValueError(f"the arena page {layout.page_size:#x} is not a multiple of the OS page {memory.page_size:#x}")
        self.layout = layout
        self.memory = memory
        self._lock = threading.RLock()
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
        # The events last read, and the last decision they show (_events_once).
        self._shown: tuple[object, list[Any]] = (None, [])
        self._flags = 0  # last: until it is set, the finalizer has nothing to give back
        return memory

    # -- records ---------------------------------------------------------------

    def _events_once(self, built: Callable[[list[Any]], list[_E]]) -> list[_E]:
        """``built(decisions)``, the events of the decisions kept, made once per decision made.

        verify, the reports and a trace each read the same events, tens of
        thousands after a long run. A decision is only ever appended, a new
        tuple each time, so the last one says whether the events are those
        shown. Each reader gets a list of its own: changing it changes nothing
        shown.
        """
        kept = list(self._events)
        last = kept[-1] if kept else None
        if self._shown[0] is not last:
            self._shown = (last, built(kept))
        return cast("list[_E]", list(self._shown[1]))

    # -- arguments -------------------------------------------------------------

    @staticmethod
    def _int(name: str, value: object) -> int:
        try:
            # Any object may come: one without __index__ raises TypeError, answered below.
            return operator.index(cast(SupportsIndex, value))
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
        except Exception:  # OSError; or a memory layer of one's own that failed (ReentrantCall, say)
            self._unreleased.append((p, size))
            raise

    def _give_up(self) -> None:
        """A constructor failed: give back what it reserved, and what a failed release left behind."""
        try:
            self.close()
        except OSError:
            pass  # the constructor's own error is the one to report

    # -- the lock ----------------------------------------------------------------

    def _refuse(self, call: str, state: int) -> NoReturn:
        """Why a call that found ``state`` cannot go on: ``ReentrantCall`` or ``ArenaClosed``."""
        if state & _INSIDE:
            raise ReentrantCall(
                f"arena: re-entrant call to {call} from inside another call on the same {type(self).__name__} "
                "(a rule, a memory layer or an argument's __index__ called back into it): make it after that call returns")
        raise ArenaClosed("the arena is closed")

    def _enter(self, call: str, open_only: bool = True) -> None:
        """Take the lock for ``call`` (the hot paths inline this); ``_leave`` gives it back.

        Another thread waits; this thread, already inside a call on the
        manager, gets ``ReentrantCall``, and the outer call goes on.
        ``ArenaClosed`` once closed, if ``open_only``.
        """
        self._lock.acquire()
        state = self._flags
        if state & _INSIDE or (open_only and state):
            self._lock.release()
            self._refuse(call, state)
        self._flags = state | _INSIDE

    def _leave(self) -> None:
        self._flags &= _CLOSED
        self._lock.release()

    @contextlib.contextmanager
    def held(self, call: str = "held") -> Iterator[Self]:
        """The manager held by this thread for a block of reads that must see one state (``check.verify``'s).

        Another thread's calls wait until the block ends; the block's own calls
        on the manager run as usual, open or closed. ``ReentrantCall``, naming
        ``call``, from inside another call on the manager: checked at the door,
        whatever the manager holds, before anything is read.
        """
        self._lock.acquire()
        try:
            # Re-entry is refused here, not left to the calls the block makes: verify asks contains
            # only of an arena with allocations, so an empty arena's verify returned where a full one's
            # raised; and a read from inside a call would see that call half done.
            if self._flags & _INSIDE:
                self._refuse(call, self._flags)
            yield self
        finally:
            self._lock.release()

    # -- queries ---------------------------------------------------------------

    closed = property(lambda self: bool(self._flags & _CLOSED),
                      doc="Whether ``close`` ran: the mappings are released and every call but ``close`` raises ``ArenaClosed``.")

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
        is not whole (``Arena(history=N)``) or longer than a trace may be;
        ``ReentrantCall`` from inside another call on the manager (its history
        would be half a decision).
        """
        with self.held("save_trace"):
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
        outside, ``ArenaClosed``, and ``ReentrantCall`` from inside another
        call on the arena. While the view (a slice of it, or anything holding
        it) is alive, ``close`` refuses; the view keeps the arena alive.
        """
        if type(addr) is not int:
            addr = self._int("addr", addr)
        if size is not None and type(size) is not int:
            size = self._int("size", size)
        # _enter, inlined: views are made often.
        lock = self._lock
        lock.acquire()
        if self._flags:
            state = self._flags  # read under the lock: another thread may change it after
            lock.release()
            self._refuse("view", state)
        self._flags = _INSIDE
        try:
            if self._history is None:
                index = self._by_address
                if len(index.starts) != len(self._allocations):
                    self._index_allocations()
                # A view of an allocation starts where it does: one lookup.
                end = index.end_at.get(addr) or self._end_around(addr, index)
                if size is None:
                    size = end - addr
            elif size is None:
                raise ValueError(f"view needs a size: with history={self._history} the arena no longer knows "
                                 "where allocations end")
            else:
                # Arena's bounded history: the range must lie in one run of
                # committed memory. Most views are of the open run, which the
                # cursor extends; a closed run starting where it ends joins it.
                end = self._alloc
                if self._run_start <= addr < end:
                    end = self._runs.end_at.get(end, end)
                else:
                    end = self._run_end(addr)
            if size <= 0 or addr + size > end:
                raise ValueError(self._too_long(addr, size, end))
            # Exports.export's first case, inlined: a view of whole pages is one call of an array type's from_address.
            exports = self._exports
            if not (addr | size) & exports.mask:
                return memoryview((exports.makers.get(size) or exports.maker(size))(addr)).cast("B")
            return exports.export(addr, size)
        finally:
            self._flags = 0
            lock.release()

    def alloc(self, n: int) -> memoryview | None:
        """``sys_alloc(n)`` as a writable view of the ``n`` bytes (``address_of`` gives its address), or ``None``.

        Raises as ``sys_alloc`` does. While the view is alive ``close`` refuses (see ``view``).
        """
        # Read once: the view is exactly as long as what sys_alloc was asked for.
        n = self._int("n", n)
        p = self.sys_alloc(n)
        if p is None:
            return None
        self._enter("alloc")  # ArenaClosed if another thread closed it since sys_alloc returned
        try:
            return self._exports.export(p, n)
        finally:
            self._leave()

    def address_of(self, view: memoryview) -> int:
        """The address of the first byte of ``view``: one from ``view`` or ``alloc``, or a slice of one.

        ``TypeError`` for a non-memoryview, ``ValueError`` for a view of other
        memory, a released view or one not C-contiguous and writable.
        """
        return views.address_of(self, view)

    def _index_allocations(self) -> None:
        """Index what sys_alloc handed out since the last view."""
        index, allocations = self._by_address, self._allocations
        assert isinstance(allocations, list)  # views index allocations only with every one kept: a list, not a deque
        for p, n in allocations[len(index.starts) :]:
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
        near = self._by_address.below(addr)
        assert near is not None  # view found the allocation holding addr
        start = near[0]
        return f"[{addr:#x}, {addr + size:#x}) runs past the end of the allocation [{start:#x}, {end:#x}) it starts in"

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Release every mapping the arena made; idempotent.

        ``BufferError`` while a view of its memory is alive (release them, or
        let them go); nothing is unmapped then. A mapping the kernel refused
        to release (``OSError``) stays on the books and is tried again by the
        next ``close``. ``ReentrantCall`` from inside another call on the arena.

        An arena never closed is closed by the garbage collector, as a file
        is, with a ``ResourceWarning``: once no view of it is left.
        """
        self._enter("close", open_only=False)
        try:
            if self._flags & _CLOSED and not self._unreleased:
                return
            # As mmap.close(): nothing is unmapped while a view could still reach it.
            alive = self._exports.alive()
            if alive:
                raise BufferError(f"cannot close: {plural(alive, 'view')} of arena memory "
                                  f"{'is' if alive == 1 else 'are'} still alive")
            self._unreleased, error = _give_back(self.memory, self._take_mappings())
        finally:
            self._leave()
        if error is not None:
            raise error

    def _take_mappings(self) -> list[tuple[int, int]]:
        """Mark the manager closed and take every mapping off its books, for ``close`` or the collector to give back."""
        self._flags |= _CLOSED
        self._exports.clear()
        self._by_address = _Ranges()
        self._closing()
        # What the kernel refused to release before is tried again, every time.
        pending = [(p, size) for p, size, _ in reversed(self._regions)] + self._unreleased
        self._regions.clear()
        self._unreleased = []
        return pending

    def __del__(self, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
        # Dropped without close(): like a file, a ResourceWarning, and the
        # mappings go back. Views hold the manager, so none is reachable now;
        # but one that is garbage of this same collection is not freed yet:
        # the mappings are given back after the collection, once the types of
        # its views are gone too (_reap). At interpreter exit the OS takes them.
        # getattr, never __dict__: making the instance's dict here would hold
        # its attributes from outside the garbage, and keep them for one more collection.
        if _finalizing() or (getattr(self, "_flags", _CLOSED) & _CLOSED and not getattr(self, "_unreleased", None)):
            return
        if not self._lock.acquire(False):
            return  # cannot be: a thread inside a call holds the manager; were it so, nothing is safe here
        try:
            types = [weakref.ref(t) for t in self._exports.types()]
            with contextlib.suppress(Exception):  # warnings turned into errors must not keep the mappings
                warnings.warn(f"unclosed {self!r}: the garbage collector gives back its mappings "
                              "(close it, or use it in a with block)", ResourceWarning, source=self, stacklevel=1)
            _doomed.append((self.memory, self._take_mappings(), types))
        finally:
            self._lock.release()
        if _reap not in gc.callbacks:
            gc.callbacks.append(_reap)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # A copy would share the mappings: closing one would unmap what the other still hands out.
        raise TypeError(f"cannot copy or pickle {type(self).__name__}: it owns its mappings, as mmap does (make a new one)")

    def _closing(self) -> None:
        """``close`` is about to give back every region: what a subclass keeps of them, it takes now."""

    def __enter__(self) -> Self:
        """The manager itself; leaving the ``with`` block closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _give_back(memory: sysmem.MemoryLayer, pending: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], Exception | None]:
    """Release each mapping; those not released, to be tried again, and the first error."""
    left: list[tuple[int, int]] = []
    error = None
    for p, size in pending:
        try:
            memory.release(p, size)
        except Exception as exc:  # OSError from the kernel; anything from a memory layer of one's own
            left.append((p, size))
            error = error or exc
    return left, error


# Managers the collector found unclosed: (memory layer, mappings, weak references
# to the types of their views). Given back by _reap once every type is gone.
_doomed: list[tuple[sysmem.MemoryLayer, list[tuple[int, int]], list[weakref.ref[type]]]] = []


def _reap(phase: str, info: object, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
    """After a collection (a ``gc.callbacks`` entry): give back the mappings of unclosed managers no view can reach."""
    if phase != "stop" or not _doomed or _finalizing() or _in_memory_code(sys._getframe(1)):
        return
    kept = []
    while _doomed:
        entry = _doomed.pop()
        memory, pending, types = entry
        if any(t() is not None for t in types):
            kept.append(entry)  # a view still holds one (a finalizer kept it): not yet
            continue
        left, error = _give_back(memory, pending)
        if error is not None:
            with contextlib.suppress(Exception):
                warnings.warn(f"an unclosed arena's mappings {[(hex(p), hex(n)) for p, n in left]} could not be "
                              f"released: {error}", ResourceWarning, stacklevel=1)
    _doomed.extend(kept)


def _in_memory_code(frame: Any) -> bool:
    """Whether the collection ran inside a memory layer's code: it may hold a lock a release needs.

    The confined layers share one lock, and ``track_reservations`` another:
    releasing here could wait on this very thread forever. The next
    collection tries again.
    """
    layers = {type(memory).__module__ for memory, _, _ in _doomed}
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("arena.sysmem") or name in layers:
            return True
        frame = frame.f_back
    return False
