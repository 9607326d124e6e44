"""Go 1.11's sparse heap arenas: ``(*mheap).sysAlloc`` of the Go 1.11 release, over real memory.

Go 1.11 replaced the linear arena (Go 1.8 - 1.10, ``Arena``) by a set of
aligned *heap arenas* registered in a two-level index. "Is this address heap?"
asks the index (``contains``), not ``[arena_start, arena_used)``: there are no
bounds that a badly placed reservation could lower, and a low mmap is just
another heap arena.

Line references are to Go 1.11's ``src/runtime/malloc.go`` and ``mheap.go``
(https://github.com/golang/go/blob/go1.11/src/runtime/malloc.go; the release's
text of both files is that of Go commit 2d4c1ff, their last change before the
release). Linux only: the Windows branch of sysReserveAligned and the race
detector's hints are not modelled (docs/heap-arenas.md).
"""
from __future__ import annotations

import errno
from typing import Any, NoReturn, TypeAlias

from .. import sysmem
from ..policy.layout import LAYOUT_64, KiB, Layout, MiB
from ..words import plural
from .lifetime import _CLOSED, _INSIDE, Manager
from .vocabulary import Event, HeapState, Stats, binary_end, round_up

RELEASE = "go1.11"
# mallocinit's 32-bit pre-reservation sizes, largest first (malloc.go L495-499).
PRERESERVATION_SIZES = (512 * MiB, 256 * MiB, 128 * MiB)


class GoThrow(RuntimeError):
    """A check on which Go 1.11's runtime throws (a fatal error there) failed; the message is Go's.

    Nothing was registered and the offending region was released: the
    manager stays usable, where Go would have stopped the program.
    """


_NOTHING = HeapState(None, False, 0, 0, 0, 0)
# Verdicts of an event that made a reserve call the kernel answered.
ANSWERED = ("reserved", "trimmed", "honoured", "missed", "trim-failed")
# A decision as the manager records it, in one flat tuple (the least a record costs): step, request, hint,
# size, returned, verdict, reason, then the fields of the HeapState after it.
_Decision: TypeAlias = tuple[str, int, "int | None", int, "int | None", str, str, "int | None", bool, int, int, int, int]



def metadata_size(layout: Layout) -> int:
    """Go 1.11's 32-bit metadata reservation: one heapArena (bitmap and span map) per arena of the index (malloc.go L463)."""
    ptr, size = layout.address_bits // 8, layout.heap_arena_size
    assert size is not None  # Layout fills it in when made
    bitmap = size // (ptr * 8 // 2)  # heapArenaBitmapBytes: 2 bits per word
    spans = size // layout.page_size * ptr  # one *mspan per page
    return (1 << layout.arena_bits) * (bitmap + spans)


class HeapArenas(Manager):
    """Heap arenas placed at arena hints and registered in an index, as Go 1.11's sysAlloc did.

    ``HeapArenas(layout=LAYOUT_64, memory=None, start=None, initial_size=None)``

    - ``layout``: ``LAYOUT_64``, ``LAYOUT_32`` or a variant; its
      ``heap_arena_size``, ``heap_addr_bits``, ``arena_l1_bits`` and
      ``arena_base_offset`` are Go 1.11's for the width unless set.
    - ``memory``: the OS memory layer (``arena.sysmem``); ``None`` takes
      ``sysmem.default()``, an ``arena.testing.ScriptedMemory`` scripts the
      kernel's answers.
    - ``start``: 64-bit: the one first hint, instead of the layout's
      ``first_hints``; 32-bit: where the pre-reservation is hinted. A
      multiple of ``heap_arena_size``; ``None``: Go's own.
    - ``initial_size``: 32-bit only: the pre-reservation's size (``0``:
      none; ``None``: Go's 512, 256 then 128 MiB). A multiple of
      ``heap_arena_size``, as Go's are.

    ``sys_alloc(n)`` returns the start of ``round(n, heap_arena_size)``
    committed, read-write bytes (one arena more when the kernel's answer to
    an aligned reservation was already aligned: Go keeps all of it), whole
    heap arenas registered in the index; ``allocations`` has each size. Its
    name in the command line, demo and traces is the rule name ``"go1.11"``.

    Raises ``TypeError`` for an argument of the wrong type and ``ValueError``
    for one out of range, each naming it. Closing, views, the garbage
    collector's closing of one dropped unclosed, ``ReentrantCall`` and the
    refusal to be copied are ``Arena``'s.
    """

    _span_limit = "max_alloc"
    rule = RELEASE  # the name the demo, reports and traces give this manager
    __slots__ = ("_size", "_mask", "_bits", "_span", "_l2_bits", "_l2_mask", "_offset", "_page", "_max_alloc", "_mem_commit",
                 "_hints", "_index", "_arenas", "_pre", "_pre_state", "_events", "_start", "_initial_size")

    def __init__(
        self,
        layout: Layout = LAYOUT_64,
        memory: sysmem.MemoryLayer | None = None,
        start: int | None = None,
        initial_size: int | None = None,
    ) -> None:
        memory = self._take(layout, memory)
        size, l1_bits, offset = layout.heap_arena_size, layout.arena_l1_bits, layout.arena_base_offset
        assert size is not None and l1_bits is not None and offset is not None  # Layout fills them in when made
        self._size, self._offset = size, offset
        self._mask = self._top - 1
        self._bits, self._l2_bits = layout.arena_bits, layout.arena_bits - l1_bits
        # The bytes the index covers: arenaIndex(p) >> arenaBits is not 0 exactly when
        # (p + arenaBaseOffset) & mask >= _span.
        self._span = size << self._bits
        # The hot path reads these as plain attributes, not through layout and memory.
        self._l2_mask = (1 << self._l2_bits) - 1
        self._page, self._max_alloc, self._mem_commit = layout.page_size, layout.max_alloc, memory.commit
        # arenaHints as (addr, down) pairs; the head of Go's list is the last item.
        self._hints: list[tuple[int, bool]] = []
        # mheap_.arenas: the L1 map, each entry None or an L2 map from arena number to
        # the allocation that registered it (Go: a *heapArena of bitmap and span map).
        self._index: list[dict[int, int] | None] = [None] * (1 << l1_bits)
        self._arenas = 0
        self._pre: tuple[int, int, int] | None = None  # 32-bit mheap_.arena: next, mapped, end
        self._pre_state = (0, 0)  # its next and end, as a HeapState shows them
        # Flat tuples: each container made counts towards the next garbage collection.
        self._events: list[_Decision] = []
        self._start = self._check_start(start)
        self._initial_size = self._check_initial_size(initial_size)
        try:
            self._init_hints()
        except BaseException:
            self._give_up()
            raise

    # -- arguments -------------------------------------------------------------

    def _check_start_room(self, start: int) -> None:
        if start % self._size:
            raise ValueError(f"start {start:#x} is not aligned to the heap arena size {self._size:#x}")

    def _check_initial_size(self, size: object) -> int | None:
        if size is None:
            return None
        if self.layout.first_hints:
            raise ValueError(f"initial_size: the {self.layout.name} layout has no pre-reservation "
                             "(Go 1.11 reserves one on 32-bit only)")
        size = self._page_multiple("initial_size", size, positive=False)
        # The arena hint starts where the pre-reservation ends (L504), and Go throws on a heap
        # arena that is not aligned: Go's own sizes (512, 256, 128 MiB) are whole heap arenas.
        if size % self._size:
            raise ValueError(f"initial_size must be a multiple of the heap arena size {self._size:#x}, got {size:#x}")
        return size

    # -- records ---------------------------------------------------------------

    def _state(self) -> tuple[int | None, bool, int, int, int, int]:
        """The fields of the ``HeapState`` now, as a plain tuple (what a record keeps: cheaper to make)."""
        addr, down = self._hints[-1] if self._hints else (None, False)
        nxt, end = self._pre_state
        return (addr, down, len(self._hints), self._arenas, nxt, end)

    def _record(self, step: str, request: int, hint: int | None, size: int, returned: int | None, verdict: str,
                reason: str) -> None:
        self._events.append((step, request, hint, size, returned, verdict, reason, *self._state()))

    # -- mallocinit: the first hints -------------------------------------------

    def _init_hints(self) -> None:
        layout = self.layout
        if layout.first_hints:
            # 64-bit (malloc.go L392-444): 0x00c0<<32, 1<<40 | 0x00c0<<32, ... up to 0x7f<<40;
            # Go pushes them from the last, so the first is the head.
            hints = layout.first_hints if self._start is None else (self._start,)
            self._hints = [(h, False) for h in reversed(hints)]
            self._record("first", 0, None, 0, None, "hints", f"{plural(len(hints), 'arena hint')}, the first at {hints[0]:#x}")
            return
        # 32-bit (L445-510): the metadata of every arena the index can hold is
        # reserved anywhere, so that it never interleaves with the heap.
        meta_size = round_up(metadata_size(layout), self.memory.page_size)
        meta = self._reserve(0, meta_size)
        if meta is None:
            self._record("first", 0, 0, meta_size, None, "no-room", "no room for the heap arena metadata; Go goes on without it")
        else:
            self._regions.append((meta, meta_size, "metadata"))
            self._record("first", 0, 0, meta_size, meta, "reserved", "heap arena metadata, anywhere")
        p = self._start if self._start is not None else self._first_hint(meta, meta_size)
        sizes = PRERESERVATION_SIZES if self._initial_size is None else (self._initial_size,) if self._initial_size else ()
        for size in sizes:
            a, got = self._reserve_aligned("first", 0, p, size)
            if a is not None:
                self._pre, self._pre_state = (a, a, a + got), (a, a + got)
                self._regions.append((a, got, "prereserved"))
                p = (a + got) & self._mask  # L504: the hint below starts where it ends
                break
        self._hints = [(p, False)]
        self._record("first", 0, None, 0, None, "hints", f"one arena hint, at {p:#x}")

    def _first_hint(self, meta: int | None, meta_size: int) -> int:
        """L476-492: above the binary and the brk, past the metadata, 256 KiB on, arena-aligned."""
        limit = self.memory.limit
        # On a 64-bit host no part of the binary or the brk lies in a 32-bit space: start low.
        p = max((x for x in (binary_end(), sysmem.program_break()) if x < limit), default=0)
        if meta is not None and meta <= p < meta + meta_size:
            p = meta + meta_size
        # Go's round() is uintptr arithmetic: past the top it wraps to 0 (no preference).
        return round_up(p + 256 * KiB, self._size) & self._mask

    # -- sysReserve and sysReserveAligned ---------------------------------------

    def _reserve(self, hint: int, size: int) -> int | None:
        """sysReserve (mem_linux.go): any error of mmap is nil, as no room is (``Manager._reserve``'s checks too)."""
        if not 0 < size < self._limit or hint + size > self._top:
            return None
        try:
            return self._mem_reserve(hint, size)
        except OSError:
            return None

    def _reserve_aligned(self, step: str, request: int, hint: int, size: int) -> tuple[int | None, int]:
        """malloc.go L664-707: reserve ``size`` + one arena and trim to alignment; ``(start, size kept)``.

        Linux's branch: an unaligned answer loses its ends, an aligned one is
        kept whole. (The release-and-retry loop is Windows', which cannot
        release part of a reservation.)
        """
        align = self._size
        full = size + align
        p = self._reserve(hint, full)
        if p is None:
            self._record(step, request, hint, full, None, "no-room", "no room for an aligned region")
            return None, 0
        if p % align == 0:
            self._record(step, request, hint, full, p, "reserved", "aligned already: all of it kept")
            return p, full
        q = round_up(p, align)
        pending = [(p, q - p), (q + size, p + full - q - size)]
        while pending:
            try:
                self._release(*pending.pop(0))
            except OSError:
                # The rest, aligned part included, stays on the books for close() to give back.
                self._unreleased += [*pending, (q, size)]
                self._record(step, request, hint, full, p, "trim-failed", "the kernel refused to release an unaligned end")
                raise
        self._record(step, request, hint, full, p, "trimmed",
                     f"trimmed to {q:#x}: {q - p:#x} bytes below and {p + full - q - size:#x} above released")
        return q, size

    # -- sysAlloc --------------------------------------------------------------

    def sys_alloc(self, n: int) -> int | None:
        """Start of at least ``n`` committed, read-write bytes in registered heap arenas, or ``None`` when out of memory.

        ``n`` is a positive multiple of the arena page up to ``layout.max_alloc``
        (``TypeError``/``ValueError`` otherwise), read once, before the lock.
        Raises ``GoThrow`` where Go 1.11 throws, ``ArenaClosed`` after
        ``close``, ``OSError`` as ``Arena.sys_alloc`` does, ``ReentrantCall``
        when called from inside another call on the manager, and what the
        memory layer raises (nothing registered then).
        """
        if type(n) is not int:
            n = self._int("n", n)
        # _enter, inlined: growth is measured against C.
        lock = self._lock
        lock.acquire()
        if self._flags:
            state = self._flags  # read under the lock: another thread may change it after
            lock.release()
            self._refuse("sys_alloc", state)
        self._flags = _INSIDE
        try:
            # The usual request, a page multiple within max_alloc, costs a few comparisons.
            if n <= 0 or n % self._page or n > self._max_alloc:
                self._page_multiple("n", n, positive=True)  # raises, saying what is wrong
            return self._sys_alloc(n)
        finally:
            self._flags = 0
            lock.release()

    def _arena_index(self, p: int) -> int:
        """mheap.go L429: Go's arenaIndex, in uintptr arithmetic (the hot paths inline it)."""
        return ((p + self._offset) & self._mask) // self._size

    def _sys_alloc(self, request: int) -> int | None:
        # L522: whole arenas. Exact integers: a request rounded past the top is
        # simply more than any reservation can hold (Go's uintptr would wrap).
        size = self._size
        n = (request + size - 1) & -size  # Go's round(n, heapArenaBytes): the size is a power of two
        if self._pre is not None:
            p = self._from_prereservation(request, n)
            if p is not None:
                return p
        hints, mask, offset = self._hints, self._mask, self._offset
        # L532-567: try the hints, dropping each that fails.
        while hints:
            addr, down = hints[-1]
            p = (addr - n) & mask if down else addr
            end = p + n
            v = None
            if end & mask < p:
                verdict, why = "wraps", "p + n overflows: not asked"
            elif (end - 1 + offset) & mask >= self._span:  # arenaIndex(p + n - 1) >= 1 << arenaBits: past the index
                verdict, why = "outside", "ends outside the addressable heap: not asked"
            else:
                # sysReserve (_reserve, inlined): any error of mmap is nil, as no room is.
                if 0 < n < self._limit and end <= self._top:
                    reserve = self._mem_reserve  # an instance's function: called from a local, not looked up as a method
                    try:
                        v = reserve(p, n)
                    except OSError:
                        pass
                # Go compares p with the result, and nil is 0: a down hint that
                # reaches 0 with no room would pass for success. Here it does not.
                if v is not None and v == p:
                    pre_next, pre_end = self._pre_state
                    self._events.append(("hint", request, p, n, v, "honoured",
                                         "at the hint, growing down" if down else "at the hint",
                                         addr, down, len(hints), self._arenas, pre_next, pre_end))
                    return self._map(request, v, n, p if down else end, None)
                verdict, why = (("missed", "not at the hint; released, hint dropped") if v is not None
                                else ("no-room", "no room; hint dropped"))
            hints.pop()
            try:
                if v is not None:
                    self._release(v, n)  # against no stat: Go's sysFree(v, n, nil)
            finally:
                self._record("hint", request, p, n, v, verdict, why)
        # L569-593: every hint failed; any sufficiently aligned region will do.
        v, size = self._reserve_aligned("aligned", request, 0, n)
        if v is None:
            self._record("commit", request, None, n, None, "out-of-memory", "no hint left and no room for an aligned region")
            return None
        return self._map(request, v, size, None, [(v, True), ((v + size) & mask, False)])

    def _from_prereservation(self, request: int, n: int) -> int | None:
        """L524-529 with linearAlloc.alloc (L1222-1234): the 32-bit pre-reservation, mapped as it is used."""
        assert self._pre is not None  # the caller's check: 32-bit, with a pre-reservation
        nxt, mapped, end = self._pre
        p = round_up(nxt, self._size)
        if p + n > end:
            return None
        if (self._arena_index(p) | self._arena_index(p + n - 1)) >> self._bits:
            # Go indexes its arena map here unchecked (the hints and aligned regions
            # are checked in _map): a pre-reservation outside a heap narrower than
            # the space (mips' 31 bits, say) fails Go's bounds check, a fatal panic.
            self._throw(request, p, n, False, f"runtime error: index out of range: heap arenas of [{p:#x}, {p + n:#x}) "
                        f"are outside the {self.layout.heap_addr_bits}-bit heap the arena index covers")
        nxt = p + n
        mapped_end = max(mapped, round_up(nxt, self.memory.page_size))
        self._check_unregistered(request, p, n, release=False)
        if mapped_end > mapped:
            self._commit(request, mapped, mapped_end - mapped, release=False)
        self._pre, self._pre_state = (nxt, mapped_end, end), (nxt, end)
        self._register(p, n)
        self._record("commit", request, None, n, p, "committed", "from the pre-reservation")
        return p

    def _map(self, request: int, v: int, size: int, hint_after: int | None,
             new_hints: list[tuple[int, bool]] | None) -> int:
        """L595-651: check the region, back it (sysMap) and register its arenas; hints change only then."""
        mask, arena, offset = self._mask, self._size, self._offset
        end = v + size
        # The region's first and last byte, each as arenaIndex(p) * heapArenaBytes (mheap.go L429).
        lo, hi = (v + offset) & mask, (end - 1 + offset) & mask
        # L596-612: bounds Go checks before trusting the OS's answer (an index >= 1 << arenaBits is past it).
        bad = None
        if end & mask < v:
            bad = "region exceeds uintptr range"
        elif lo >= self._span:
            bad = "base outside usable address space"
        elif hi >= self._span:
            bad = "end outside usable address space"
        if bad:
            self._throw(request, v, size, True, f"memory allocated by OS [{v:#x}, {v + size:#x}) not in usable address space: "
                                                f"{bad}: memory reservation exceeds address space limit")
        if v % arena:
            self._throw(request, v, size, True, "misrounded allocation in sysAlloc")
        first, last = lo // arena, hi // arena
        # L634-636 ("arena already initialized"), checked before mapping so that
        # a throw leaves nothing changed; both ends are inside the index (above).
        # The usual region is one heap arena: its L1 and L2 keys are computed once.
        index, l2_bits, l2_mask = self._index, self._l2_bits, self._l2_mask
        if first == last:
            l1, key = first >> l2_bits, first & l2_mask
            l2 = index[l1]
            if l2 is not None and key in l2:
                self._throw(request, v, size, True,
                            f"arena already initialized (arena {first:#x} at {self._arena_base(first):#x})")
        else:
            self._check_unregistered(request, v, size, release=True)
        # sysMap (mem_linux.go): read-write, or a throw (see _commit). Only ever
        # inside a region this manager reserved and holds.
        commit = self._mem_commit  # an instance's function: called from a local, not looked up as a method
        try:
            commit(v, size)
        except OSError as exc:
            self._commit_failed(request, v, size, True, exc)
        self._regions.append((v, size, "heap"))
        hints = self._hints
        if hint_after is not None:
            hints[-1] = (hint_after, hints[-1][1])  # L548-552
        if new_hints:
            hints += new_hints  # L586-592: down from its start, then up from its end (the new head)
        # L622-651: an L2 map is made on first use; an entry never goes back to nil.
        if first == last:
            if l2 is None:
                l2 = index[l1] = {}
            l2[key] = v
            self._arenas = arenas = self._arenas + 1
            self._allocations.append((v, size))
            reason = "1 heap arena registered"
        else:
            self._register(v, size)
            arenas = self._arenas
            reason = f"{plural(last + 1 - first, 'heap arena')} registered"
        addr, down = hints[-1]
        pre_next, pre_end = self._pre_state
        self._events.append(("commit", request, None, size, v, "committed", reason,
                             addr, down, len(hints), arenas, pre_next, pre_end))
        return v

    def _commit(self, request: int, v: int, size: int, release: bool) -> None:
        """sysMap (mem_linux.go): read-write, or a throw. Only ever inside a region this manager reserved and holds."""
        try:
            self._mem_commit(v, size)
        except OSError as exc:
            self._commit_failed(request, v, size, release, exc)

    def _commit_failed(self, request: int, v: int, size: int, release: bool, exc: OSError) -> NoReturn:
        why = "runtime: out of memory" if exc.errno == errno.ENOMEM else "runtime: cannot map pages in arena address space"
        self._throw(request, v, size, release, f"{why} ({exc})")

    def _check_unregistered(self, request: int, v: int, size: int, release: bool) -> None:
        for ri in range(self._arena_index(v), self._arena_index(v + size - 1) + 1):
            if self._lookup(ri) is not None:
                self._throw(request, v, size, release, f"arena already initialized (arena {ri:#x} at {self._arena_base(ri):#x})")

    def _throw(self, request: int, v: int, size: int, release: bool, message: str) -> NoReturn:
        """Go throws here: give the region back (unless it is the pre-reservation's), record it, raise ``GoThrow``."""
        try:
            if release:
                self._release(v, size)
        finally:
            self._record("commit", request, None, size, v, "throw", message)
        raise GoThrow(message)

    # -- the index (mheap_.arenas) ---------------------------------------------

    def _lookup(self, ri: int) -> int | None:
        """The allocation that registered arena ``ri``, or None: spanOf's walk (mheap.go L497-523)."""
        if ri >> self._bits:
            return None  # out of the index's bounds: not heap
        l2 = self._index[ri >> self._l2_bits]
        return None if l2 is None else l2.get(ri & self._l2_mask)

    def _register(self, v: int, size: int) -> None:
        """L622-651: an L2 map is made on first use; an entry never goes back to nil."""
        for ri in range(self._arena_index(v), self._arena_index(v + size - 1) + 1):
            l1 = ri >> self._l2_bits
            l2 = self._index[l1]
            if l2 is None:
                l2 = self._index[l1] = {}
            l2[ri & self._l2_mask] = v
            self._arenas += 1
        self._allocations.append((v, size))

    def _arena_base(self, ri: int) -> int:
        """mheap.go L435: the low address of arena ``ri``."""
        return (ri * self._size - self._offset) & self._mask

    # -- queries ---------------------------------------------------------------

    def contains(self, addr: int) -> bool:
        """Go's spanOf question: does ``addr`` lie in a registered heap arena? (An int outside the space does not.)

        ``TypeError`` for a non-int, ``ArenaClosed``, ``ReentrantCall`` from inside another call on it.
        """
        addr = self._int("addr", addr)
        self._enter("contains")
        try:
            return 0 <= addr < self._top and self._lookup(self._arena_index(addr)) is not None
        finally:
            self._leave()

    @property
    def arenas(self) -> list[int]:
        """Start addresses of the registered heap arenas, lowest first."""
        self._enter("arenas", open_only=False)
        try:
            # _arena_base of each, an L2 map at a time: a trace may register hundreds of thousands.
            size, offset, mask, l2_bits = self._size, self._offset, self._mask, self._l2_bits
            bases: list[int] = []
            for l1, l2s in enumerate(self._index):
                if l2s is not None:
                    first = (l1 << l2_bits) * size - offset  # arena number l1 << l2_bits | l2, l2 < 2**l2_bits
                    bases += [(first + l2 * size) & mask for l2 in l2s]
            return sorted(bases)
        finally:
            self._leave()

    @property
    def hints(self) -> list[tuple[int, bool]]:
        """The arena hints ``(address, down)``, the next one tried first."""
        self._enter("hints", open_only=False)
        try:
            return [(addr, down) for addr, down in reversed(self._hints)]
        finally:
            self._leave()

    @property
    def state(self) -> HeapState:
        """What the manager holds now (``HeapState``): the next hint, the number of heap arenas, the pre-reservation."""
        self._enter("state", open_only=False)
        try:
            return HeapState(*self._state())
        finally:
            self._leave()

    @property
    def events(self) -> list[Event[HeapState]]:
        """One record per decision, in order; ``before``/``after`` are ``HeapState``."""
        return self._events_once(self._built)

    @staticmethod
    def _built(kept: list[_Decision]) -> list[Event[HeapState]]:
        """The events of the decisions ``kept``."""
        out, before = [], _NOTHING
        for e in kept:
            after = HeapState(*e[7:])
            out.append(Event(*e[:7], before, after))
            before = after
        return out

    @property
    def stats(self) -> Stats:
        """The counters: hints honoured count as contiguous, aligned regions as non-contiguous,
        missed hints as rejections; what was released without a stat (missed hints, trimmed ends)
        as ``released_after_rejection``."""
        t = Stats()
        self._enter("stats", open_only=False)
        try:
            for step, _, _, size, returned, verdict, *_ in self._events:
                if returned is not None and verdict in ANSWERED:
                    t.reservations += 1
                if verdict == "committed":
                    t.committed += size
                elif verdict == "honoured":
                    t.contiguous += 1
                elif verdict == "missed":
                    t.rejections += 1
                    t.released_after_rejection += size
                elif verdict == "trimmed":
                    t.released_after_rejection += self._size  # both ends together: one arena's worth
                if step == "aligned" and verdict in ("reserved", "trimmed"):
                    t.noncontiguous += 1
            t.reserved = sum(size for _, size, _ in self._regions)
        finally:
            self._leave()
        return t

    def _trace_start(self) -> tuple[int, dict[str, Any]]:
        """Version 2 (which added ``go1.11``), and the constructor's own arguments: the first hints are Go's
        unless ``start`` was given."""
        return 2, {"start": None if self._start is None else hex(self._start), "initial_size": self._initial_size}

    def __repr__(self) -> str:
        state = "closed" if self._flags & _CLOSED else f"arenas={self._arenas} hints={len(self._hints)}"
        return f"<HeapArenas {self.layout.name} {RELEASE} {state}>"
