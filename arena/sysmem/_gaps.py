"""The free gaps of the confined (32-bit) address space, kept in step with every confined map and unmap.

A 32-bit process's kernel places a refused hint top-down in the highest free
gap that fits, and finds that gap in O(log n) from an augmented tree. The model
of it used to read /proc/self/maps for every placement, and the kernel takes
microseconds per line: with 60,000 live regions one placement cost ~0.25 s.
``ConfinedSpace`` keeps the gaps instead, one per process (every confined
``Memory`` shares it), read from the maps at the first placement (until then
nothing needs it) and then updated by each reservation and release made through
a confined layer. A placement costs O(non-empty size classes) plus the work in
one bucket of a few hundred entries, whatever the number of regions.

The index can be stale, and both ways are safe:

- It believes free a range that something else mapped (the native layer,
  Python, a library using MAP_32BIT, brk). Every mapping is made with
  MAP_FIXED_NOREPLACE, which then fails: the index is read again from the maps
  and the placement retried, a bounded number of times.
- It believes occupied a range that something else unmapped. Then the highest
  gap it knows may be lower than the kernel's. This is noticed, and the index
  read again, when a map the index catches up with (a hint or
  ``reserve_exact`` taken) lands on a range it thought taken, and before any
  "no room" answer (``None`` costs one maps read). Otherwise it is not:
  **release through the layer that reserved** (any
  confined ``Memory``; a confined mapping released by the native layer leaves
  the index believing the range taken until one of those events).
"""
from __future__ import annotations

import os
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator

from ._maps import free_gaps, mappings

# Lengths below 2**_EXACT_BITS pages get a size class each; above, each power of
# two is cut into 2**_SUB_BITS classes (as TLSF does), so a class's gaps differ
# in length by less than 1/16.
_SUB_BITS = 4
_EXACT_BITS = _SUB_BITS + 1
_EXACT = 1 << _EXACT_BITS
_SUB_MASK = (1 << _SUB_BITS) - 1
# A bucket of a sorted list is split when it passes twice this.
_LOAD = 256
# Another thread can map a gap between reading the maps and mapping it.
_PLACEMENT_TRIES = 8
# Logged maps and unmaps wait at most this long for the next placement.
_LOG_LIMIT = 1024


def size_class(pages: int) -> int:
    """The class of a gap of ``pages`` pages: monotonic in ``pages``, exact below 2**_EXACT_BITS."""
    if pages < _EXACT:
        return pages
    k = pages.bit_length() - _EXACT_BITS
    return ((k + 1) << _SUB_BITS) | ((pages >> k) & _SUB_MASK)


class SortedInts:
    """Distinct ints in order, in buckets of at most 2 * load, so that an insert
    or delete moves O(load + n / load) words, not O(n) as one list would."""

    def __init__(self, items: Iterable[int] = (), load: int = _LOAD) -> None:
        items = sorted(items)
        self._load = load
        self._lists = [items[i : i + load] for i in range(0, len(items), load)]
        self._maxes = [b[-1] for b in self._lists]

    def __len__(self) -> int:
        return sum(map(len, self._lists))

    def __bool__(self) -> bool:
        return bool(self._maxes)

    def __iter__(self) -> Iterator[int]:
        for b in self._lists:
            yield from b

    def last(self) -> int:
        return self._maxes[-1]

    def add(self, x: int) -> None:
        maxes = self._maxes
        if not maxes:
            self._lists.append([x])
            maxes.append(x)
            return
        i = bisect_left(maxes, x)
        if i == len(maxes):
            # Past every bucket: it becomes the last bucket's maximum.
            i -= 1
            self._lists[i].append(x)
            maxes[i] = x
        else:
            insort(self._lists[i], x)
        b = self._lists[i]
        if len(b) > 2 * self._load:
            self._lists[i : i + 1] = [b[: self._load], b[self._load :]]
            maxes[i : i + 1] = [b[self._load - 1], b[-1]]

    def remove(self, x: int) -> None:
        """Remove ``x``, which must be present."""
        i = bisect_left(self._maxes, x)
        b = self._lists[i]
        j = bisect_left(b, x)
        del b[j]
        if not b:
            del self._lists[i], self._maxes[i]
        elif j == len(b):
            self._maxes[i] = b[-1]

    def replace(self, old: int, new: int) -> None:
        """Put ``new`` in the place of ``old``, which must be present, with no element between them."""
        i = bisect_left(self._maxes, old)
        b = self._lists[i]
        j = bisect_left(b, old)
        b[j] = new
        if j == len(b) - 1:
            self._maxes[i] = new

    def floor(self, x: int) -> int | None:
        """The largest element ``<= x``, or ``None``."""
        i = bisect_right(self._maxes, x)
        # Buckets before i lie wholly at or below x; bucket i may start at or below x.
        if i < len(self._maxes) and self._lists[i][0] <= x:
            b = self._lists[i]
            return b[bisect_right(b, x) - 1]
        return self._maxes[i - 1] if i else None

    def between(self, lo: int, hi: int) -> list[int]:
        """The elements in ``[lo, hi)``, lowest first."""
        out: list[int] = []
        first = bisect_left(self._maxes, lo)
        if first == len(self._maxes) or hi <= lo:
            return out
        for i in range(first, len(self._maxes)):
            b = self._lists[i]
            if b[0] >= hi:
                break
            out.extend(b[bisect_left(b, lo) : bisect_left(b, hi)])
        return out

    def descending(self) -> Iterator[int]:
        for b in reversed(self._lists):
            yield from reversed(b)


class GapIndex:
    """The free gaps ``[start, end)`` of ``[low, high)``.

    Invariants: gaps are non-empty, page-aligned, inside ``[low, high)``,
    disjoint and never adjacent (a free range is always one maximal gap), so a
    gap is named by its start and, equally, by its end.
    """

    def __init__(self, low: int, high: int, page_size: int, load: int = _LOAD) -> None:
        self.low, self.high = low, high
        self._shift = page_size.bit_length() - 1
        self._load = load
        self.rebuild([])

    def rebuild(self, gaps: list[tuple[int, int]]) -> None:
        """Start again from ``gaps`` (maximal, lowest first, as ``free_gaps`` gives them)."""
        self._starts = SortedInts([a for a, _ in gaps], self._load)
        self._end_of = dict(gaps)
        self._start_of = {b: a for a, b in gaps}
        by_class: dict[int, list[int]] = {}
        for a, b in gaps:
            by_class.setdefault(size_class((b - a) >> self._shift), []).append(b)
        # Per size class, the gaps' ends in order; _classes lists the non-empty ones.
        self._by_class = {c: SortedInts(ends, self._load) for c, ends in by_class.items()}
        self._classes = sorted(self._by_class)

    def gaps(self) -> list[tuple[int, int]]:
        """Every gap, lowest first."""
        return [(a, self._end_of[a]) for a in self._starts]

    # -- the primitives: each keeps all four structures in step ----------------

    def _class_add(self, c: int, b: int) -> None:
        ends = self._by_class.get(c)
        if ends is None:
            ends = self._by_class[c] = SortedInts((), self._load)
        if not ends:
            insort(self._classes, c)
        ends.add(b)

    def _class_remove(self, c: int, b: int) -> None:
        ends = self._by_class[c]
        ends.remove(b)
        if not ends:
            # Only non-empty classes are listed: the query takes their maxima.
            # The empty list is kept for the next gap of this class.
            self._classes.remove(c)

    def _insert(self, a: int, b: int) -> None:
        self._starts.add(a)
        self._end_of[a] = b
        self._start_of[b] = a
        self._class_add(size_class((b - a) >> self._shift), b)

    def _delete(self, a: int) -> int:
        b = self._end_of.pop(a)
        del self._start_of[b]
        self._starts.remove(a)
        self._class_remove(size_class((b - a) >> self._shift), b)
        return b

    def _resize(self, a: int, b: int, na: int, nb: int) -> None:
        """Gap ``[a, b)`` becomes ``[na, nb)``, crossing no other gap: the common
        case of a placement or a release, done in place where the order allows."""
        end_of, start_of = self._end_of, self._start_of
        if na != a:
            # No other gap starts between a and na: the order of starts holds.
            self._starts.replace(a, na)
            del end_of[a]
        if nb != b:
            del start_of[b]
        end_of[na] = nb
        start_of[nb] = na
        sh = self._shift
        c, nc = size_class((b - a) >> sh), size_class((nb - na) >> sh)
        if c != nc:
            self._class_remove(c, b)
            self._class_add(nc, nb)
        elif nb != b:
            # Same class, and no other gap ends between b and nb.
            self._by_class[c].replace(b, nb)

    # -- queries and updates ------------------------------------------------------

    def is_free(self, a: int, b: int) -> bool:
        """Whether ``[a, b)`` lies inside one gap."""
        g = self._starts.floor(a)
        return g is not None and self._end_of[g] >= b

    def highest(self, size: int) -> int | None:
        """The end of the highest gap at least ``size`` bytes long, or ``None``."""
        # Top-down placement mostly fits the highest gap of all: it is then the answer.
        if self._starts:
            a = self._starts.last()
            b = self._end_of[a]
            if b - a >= size:
                return b
        c = size_class(size >> self._shift)
        best = None
        # Every gap of a larger class fits: the best of them is the highest class maximum.
        i = bisect_right(self._classes, c)
        if i < len(self._classes):
            by_class = self._by_class
            best = max(by_class[k].last() for k in self._classes[i:])
        # Gaps of size's own class fit if long enough (all of them in an exact
        # class). Walk down from the highest only while it could beat ``best``:
        # what is skipped is shorter than size by less than 1/16.
        ends = self._by_class.get(c)
        if ends:
            start_of = self._start_of
            for b in ends.descending():
                if best is not None and b < best:
                    break
                if b - start_of[b] >= size:
                    return b
        return best

    def occupy(self, a: int, b: int) -> bool:
        """Mark ``[a, b)`` mapped; ``False`` if any of it was already believed mapped (the index was stale)."""
        if a < self.low or b > self.high:
            a, b = max(a, self.low), min(b, self.high)
            if a >= b:
                return True
        g = self._starts.floor(a)
        if g is None:
            # No gap starts at or below a: an empty one at -1 stands in, which
            # holds [a, b) in neither branch below.
            g = e = -1
        else:
            e = self._end_of[g]
        if e >= b:
            # The usual case: inside one gap, which loses [a, b) and leaves 0-2 gaps.
            if g < a:
                self._resize(g, e, g, a)
                if b < e:
                    self._insert(b, e)
            elif b < e:
                self._resize(g, e, b, e)
            else:
                self._delete(g)
            return True
        # Stale: cut [a, b) out of every gap it overlaps.
        hit = self._starts.between(a + 1, b)
        if e > a:
            hit.insert(0, g)
        for g in hit:
            e = self._delete(g)
            if g < a:
                self._insert(g, a)
            if b < e:
                self._insert(b, e)
        return False

    def free(self, a: int, b: int) -> None:
        """Mark ``[a, b)`` unmapped; parts of it may already be free (munmap allows that)."""
        if a < self.low or b > self.high:
            a, b = max(a, self.low), min(b, self.high)
            if a >= b:
                return
        # Absorb every gap starting inside [a, b], the one starting at b
        # included: gaps must never be adjacent ...
        g = self._starts.floor(a)
        for o in self._starts.between(a + 1, b + 1):
            b = max(b, self._delete(o))
        # ... and grow the gap reaching a, or ending at it, over the rest.
        if g is not None and self._end_of[g] >= a:
            e = self._end_of[g]
            if b > e:
                self._resize(g, e, g, b)
        else:
            self._insert(a, b)


Reserve = Callable[[int, int], "int | None"]
Release = Callable[[int, int], None]


class ConfinedSpace:
    """The gap index of one confined space and the rules that keep it honest.

    The lock is held across the index query, the syscall and the update, so
    that two threads never pick the same gap and an unmap is never recorded
    after another thread mapped the range again.

    Only a placement reads the index, so every map and unmap is logged, and
    the log is applied when the index is next read. A release that undoes the
    log's last map cancels it: a reservation given back at once (a rejected
    region, a fallback mapping, an arena closing in reverse order) never
    touches the index at all, and adjacent unmaps are logged as one.
    """

    def __init__(self, low: int, high: int, page_size: int) -> None:
        self._index = GapIndex(low, high, page_size)
        self.lock = threading.Lock()
        # Read from the maps at the first placement: until then nothing needs it.
        self.built = False
        self.resyncs = 0
        # (addr, size) mapped, (addr, -size) unmapped, since the index was last brought up to date.
        self._log: list[tuple[int, int]] = []

    @property
    def index(self) -> GapIndex:
        """The gap index, brought up to date."""
        with self.lock:
            self._catch_up()
        return self._index

    def resync(self) -> None:
        """Read the gaps again from /proc/self/maps (the caller holds the lock)."""
        ix = self._index
        ix.rebuild(free_gaps(mappings(below=ix.high), ix.low, ix.high))
        # The maps already show every logged change.
        self._log = []
        self.built = True
        self.resyncs += 1

    def _catch_up(self) -> None:
        """Apply the log to the index (the caller holds the lock)."""
        log, ix = self._log, self._index
        if not log:
            return
        self._log = []
        for addr, size in log:
            if size < 0:
                ix.free(addr, addr - size)
            elif not ix.occupy(addr, addr + size):
                # Part of it was believed mapped: unmapped behind the index's back.
                self.resync()
                return

    def _note(self, addr: int, size: int) -> None:
        """Log a map (``size`` > 0) or an unmap (``size`` < 0) for the index (the caller holds the lock)."""
        log = self._log
        if size < 0 and log:
            last, length = log[-1]
            if (last, length) == (addr, -size):
                # Unmapping what was just mapped: to the index, neither happened.
                log.pop()
                return
            if length < 0 and (last == addr - size or addr == last - length):
                # Next to the unmap before it (an arena closing in reverse order):
                # one wider unmap, one update of the index.
                log[-1] = (min(last, addr), length + size)
                return
        log.append((addr, size))
        if len(log) >= _LOG_LIMIT:
            self._catch_up()

    def reserve(self, exact: Reserve, hint: int, size: int) -> int | None:
        """The model of a 32-bit mmap: the hint if ``[hint, hint+size)`` is free,
        else the top of the highest free gap that fits, else ``None``.
        ``exact`` is the raw layer's MAP_FIXED_NOREPLACE reservation."""
        ix = self._index
        self.lock.acquire()
        try:
            synced = False
            # A hint is honoured only if its whole range is free and mappable;
            # 0, or a hint below mmap_min_addr, means no preference.
            if hint >= ix.low and hint + size <= ix.high:
                # Tried whatever the index says: the kernel, not the index, decides.
                p = exact(hint, size)
                if p is not None:
                    if self.built:
                        self._note(p, size)
                    return p
                if self.built:
                    self._catch_up()
                    if ix.is_free(hint, hint + size):
                        # Believed free, yet refused: mapped behind the index's back.
                        self.resync()
                        synced = True
            if not self.built:
                # Only a placement needs the index: the first one reads the maps.
                self.resync()
                synced = True
            for _ in range(_PLACEMENT_TRIES):
                self._catch_up()
                end = ix.highest(size)
                if end is not None:
                    # Top-down, like the kernel's search from mmap_base.
                    p = exact(end - size, size)
                    if p is not None:
                        # Logged like any map: the next placement catches up
                        # first, and a release that follows cancels it.
                        self._note(p, size)
                        return p
                elif synced:
                    # No room, according to maps read during this call.
                    return None
                # The gap was taken behind the index's back, or "no room" came
                # from an index that may miss an unmap: read the maps again.
                self.resync()
                synced = True
            return None
        finally:
            self.lock.release()

    def reserve_exact(self, exact: Reserve, addr: int, size: int) -> int | None:
        """``exact(addr, size)``, logged for the index once it is built."""
        with self.lock:
            p = exact(addr, size)
            if not self.built:
                return p
            if p is not None:
                self._note(p, size)
                return p
            self._catch_up()
            if self._index.is_free(addr, addr + size):
                self.resync()  # believed free, yet refused: mapped behind the index's back
            return None

    def release(self, unmap: Release, addr: int, size: int) -> None:
        """``unmap(addr, size)``, logged for the index (only if it succeeded)."""
        self.lock.acquire()
        try:
            unmap(addr, size)
            if self.built:
                self._note(addr, -size)
        finally:
            self.lock.release()


_spaces: dict[tuple[int, int, int], ConfinedSpace] = {}
_spaces_lock = threading.Lock()


def space(low: int, high: int, page_size: int) -> ConfinedSpace:
    """The process's one ``ConfinedSpace`` for ``[low, high)``."""
    key = (low, high, page_size)
    s = _spaces.get(key)
    if s is None:
        with _spaces_lock:
            s = _spaces.setdefault(key, ConfinedSpace(low, high, page_size))
    return s


def _after_fork_in_child() -> None:
    # The child has the parent's mappings, so the gaps still hold; a lock held
    # by a parent thread that does not exist in the child must not be.
    global _spaces_lock
    _spaces_lock = threading.Lock()
    for s in _spaces.values():
        s.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
