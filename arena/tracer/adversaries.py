"""Adversaries: objects that decide the kernel's answers to a traced program's mmap calls.

An adversary's ``decide(call, space)`` sees each adjustable call (an mmap or
mmap2 without MAP_FIXED or MAP_FIXED_NOREPLACE) and the program's mappings
at that moment, and answers ``KEEP``, ``move(address)`` (the hint is
rewritten; the kernel still places the mapping, for real) or ``FAIL`` (the
call fails with ENOMEM). It runs in the tracer process, a fork of the
caller: what it remembers between calls lives there, and what it wants to
tell the caller it says with ``note()`` (returned in ``Outcome.notes``).

The built-ins take their parameters as keywords (sizes in bytes,
``calls=None`` for all) and raise ``AdversarySpecError`` for a bad one;
``arena.tracer.spec`` reads them from text (``displace,by=12K``).
"""
from __future__ import annotations

import abc
import operator

from ..words import size_text
from .calls import FAIL, KEEP, PAGE_SIZE, PROT_NONE, Call, Decision, move
from .errors import AdversarySpecError
from .outcome import Outcome
from .procmaps import Space
from .record import MAX_NOTES


class Adversary(abc.ABC):
    """Decides the answers to a traced program's adjustable mmap calls; subclass it and define ``decide``.

    ``name`` is how outcomes and records name it: ``module:QualifiedName`` of
    the class unless a subclass says otherwise (built-ins give their spec).
    """

    @abc.abstractmethod
    def decide(self, call: Call, space: Space) -> Decision:
        """``KEEP``, ``move(address)`` or ``FAIL`` for ``call``; ``space`` reads the program's maps when asked."""

    @property
    def name(self) -> str:
        cls = type(self)
        return f"{cls.__module__}:{cls.__qualname__}"

    def note(self, text: str) -> None:
        """Tell the caller something about this run (``Outcome.notes``); at most ``MAX_NOTES`` are kept."""
        notes: list[str] = self.__dict__.setdefault("_notes", [])
        self.__dict__["_noted"] = self.__dict__.get("_noted", 0) + 1
        if len(notes) < MAX_NOTES:
            notes.append(str(text))

    def notes(self) -> list[str]:
        """What this adversary noted during the run (called once, when the program has ended)."""
        notes = list(self.__dict__.get("_notes", []))
        extra = self.__dict__.get("_noted", 0) - len(notes)
        return notes + [f"... and {extra:,} more notes"] if extra > 0 else notes

    def __repr__(self) -> str:
        return f"<adversary {self.name}>"


class Observe(Adversary):
    """``observe``: keeps every call (the program runs as it would, and its calls are recorded)."""

    @property
    def name(self) -> str:
        return "observe"

    def decide(self, call: Call, space: Space) -> Decision:
        return KEEP


class _Counted(Adversary):
    """Acts on the ``at``-th matching call (from 1) and the ``calls - 1`` after it (``None``: all), of at least ``min`` bytes."""

    # What a spec leaves out when ``calls`` has this value.
    _DEFAULT_CALLS: int | None = None

    def __init__(self, *, at: int, calls: int | None, min: int) -> None:
        self.at = _positive("at", at)
        self.calls = None if calls is None else _positive("calls", calls)
        self.min = _size("min", min, low=0)
        self._matched = 0

    def _take(self, call: Call) -> bool:
        """Whether ``call`` matches and falls in the acted-on run (counting it if it matches)."""
        if not self._matches(call):
            return False
        self._matched += 1
        n = self._matched - self.at
        return n >= 0 and (self.calls is None or n < self.calls)

    def _matches(self, call: Call) -> bool:
        return call.hinted and call.size >= self.min

    def _spec(self, head: str, *extra: str) -> str:
        parts = [head, *extra]
        if self.at != 1:
            parts.append(f"at={self.at}")
        if self.calls != self._DEFAULT_CALLS:
            parts.append(f"calls={'all' if self.calls is None else self.calls}")
        if self.min:
            parts.append(f"min={_size_spec(self.min)}")
        return ",".join(parts)


class Below(_Counted):
    """``below``: a hinted call is moved to a free range below its hint, the low-mmap answer.

    The new hint is the highest start, aligned as the hint is (its lowest set
    bit; ``align`` overrides), of a free range of the call's size that ends at
    or below the hint and lies above ``vm.mmap_min_addr``. Where none fits,
    the call is kept and a note says so.
    """

    def __init__(self, *, at: int = 1, calls: int | None = None, min: int = 0, align: int | None = None) -> None:
        super().__init__(at=at, calls=calls, min=min)
        self.align = None if align is None else _power_of_two("align", align)

    @property
    def name(self) -> str:
        return self._spec("below", *([f"align={_size_spec(self.align)}"] if self.align else []))

    def decide(self, call: Call, space: Space) -> Decision:
        if not self._take(call):
            return KEEP
        align = self.align or max(call.hint & -call.hint, PAGE_SIZE)
        at = space.free_below(call.hint, call.size, align)
        if at is None:
            self.note(f"call #{call.index}: no free {size_text(call.size)} below {call.hint:#x} "
                      f"aligned to {size_text(align)}; kept")
            return KEEP
        return move(at)


class Displace(_Counted):
    """``displace,by=SIZE``: a hinted call's hint moves by ``by`` bytes (a non-zero multiple of the page,
    negative for down), misaligning it relative to the program's own alignment if ``by`` is small.

    The kernel places the mapping at the new hint if that range is free, else
    where it would for a refused hint. A hint moved outside the program's
    address space is kept, with a note.
    """

    def __init__(self, *, by: int, at: int = 1, calls: int | None = None, min: int = 0) -> None:
        super().__init__(at=at, calls=calls, min=min)
        self.by = _size("by", by, low=None)
        if not self.by or self.by % PAGE_SIZE:
            raise AdversarySpecError(f"displace: by must be a non-zero multiple of the page ({PAGE_SIZE}), got {self.by:#x}")

    @property
    def name(self) -> str:
        return self._spec("displace", f"by={_size_spec(self.by)}")

    def decide(self, call: Call, space: Space) -> Decision:
        if not self._take(call):
            return KEEP
        to = call.hint + self.by
        if to < space.bottom or to + call.size > space.top:
            self.note(f"call #{call.index}: {call.hint:#x} moved by {self.by:#x} leaves the address space; kept")
            return KEEP
        return move(to)


class Enomem(_Counted):
    """``enomem``: the ``at``-th matching call (hinted or not) fails with ENOMEM, and the ``calls - 1``
    after it (default: that one only)."""

    _DEFAULT_CALLS = 1

    def __init__(self, *, at: int = 1, calls: int | None = 1, min: int = 0) -> None:
        super().__init__(at=at, calls=calls, min=min)

    @property
    def name(self) -> str:
        return self._spec("enomem")

    def _matches(self, call: Call) -> bool:
        return call.size >= self.min

    def decide(self, call: Call, space: Space) -> Decision:
        return FAIL if self._take(call) else KEEP


class Gap(Adversary):
    """``gap``: the two-step answer that breaks Go 1.8 on 386 (Go issue 20259).

    A *growth* is a hinted PROT_NONE call of at least ``min`` bytes (default
    16 MiB) whose hint is the end of an existing mapping: the program asks to
    extend a region contiguously. The ``at``-th growth (from 1) is moved up
    by its own length, leaving a hole where it asked to be; the next growth,
    hinted at the end of the moved one, is moved into that hole: below the
    program's previous end. Everything else is kept. A step that cannot be
    taken (no free room above, the hole no longer free or too small) is
    noted; the first step then waits for the next growth.
    """

    def __init__(self, *, min: int = 16 << 20, at: int = 1) -> None:
        self.min = _size("min", min, low=PAGE_SIZE)
        self.at = _positive("at", at)
        self._growths = 0
        self._hole: tuple[int, int] | None = None
        self._done = False

    @property
    def name(self) -> str:
        parts = ["gap"]
        if self.min != 16 << 20:
            parts.append(f"min={_size_spec(self.min)}")
        if self.at != 1:
            parts.append(f"at={self.at}")
        return ",".join(parts)

    def decide(self, call: Call, space: Space) -> Decision:
        if self._done or not (call.hinted and call.prot == PROT_NONE and call.size >= self.min):
            return KEEP
        if space.ending_at(call.hint) is None:
            return KEEP
        self._growths += 1
        if self._hole is None:
            if self._growths < self.at:
                return KEEP
            if not (space.is_free(call.hint, call.size) and space.is_free(call.hint + call.size, call.size)):
                self.note(f"call #{call.index}: growth at {call.hint:#x} has no free {size_text(2 * call.size)} "
                          "above it; waiting for the next growth")
                return KEEP
            self._hole = (call.hint, call.hint + call.size)
            return move(call.hint + call.size)
        self._done = True
        start, end = self._hole
        if call.size > end - start or not space.is_free(start, call.size):
            self.note(f"call #{call.index}: the hole at {start:#x} no longer holds a {size_text(call.size)} growth; kept")
            return KEEP
        return move(start)


class Scripted(Adversary):
    """``scripted,file=PATH``: the decisions of a saved process trace (``arena.tracer.record``), applied again.

    Calls are matched by shape (syscall, size, prot, flags) and order among
    calls of that shape: the trace's k-th adjustable call of a shape gives
    its decision to this run's k-th call of the same shape. A recorded move
    is applied as the same displacement from the current hint (the same
    address when the hint is the same: a program's addresses may shift from
    run to run). Mismatches are noted, never skipped silently: where the
    order of shapes first differs from the trace, and every recorded move or
    failure that this run never reached.
    """

    def __init__(self, trace: Outcome, file: str | None = None) -> None:
        if not isinstance(trace, Outcome):
            raise TypeError(f"Scripted needs an Outcome (a run, or arena.tracer.load(path)), not {type(trace).__name__}")
        self.file = file
        self._shapes: list[tuple[str, int, int, int]] = []
        self._decisions: dict[tuple[tuple[str, int, int, int], int], tuple[str, int, str]] = {}
        seen: dict[tuple[str, int, int, int], int] = {}
        for r in trace.calls:
            if not r.call.adjustable:
                continue
            shape = _shape(r.call)
            k = seen[shape] = seen.get(shape, 0) + 1
            self._shapes.append(shape)
            if r.decision == "move":
                assert r.moved_to is not None
                self._decisions[shape, k] = ("move", r.moved_to - r.call.hint, r.call.describe())
            elif r.decision == "fail":
                self._decisions[shape, k] = ("fail", 0, r.call.describe())
        self._seen: dict[tuple[str, int, int, int], int] = {}
        self._order = 0
        self._diverged = False
        self._applied: set[tuple[tuple[str, int, int, int], int]] = set()

    @property
    def name(self) -> str:
        return f"scripted,file={self.file}" if self.file else "scripted"

    def decide(self, call: Call, space: Space) -> Decision:
        shape = _shape(call)
        k = self._seen[shape] = self._seen.get(shape, 0) + 1
        i, self._order = self._order, self._order + 1
        if not self._diverged and i < len(self._shapes) and self._shapes[i] != shape:
            self._diverged = True
            self.note(f"call #{call.index}: the order of calls differs from the trace from its adjustable call "
                      f"#{i + 1} on (trace: {_shape_text(self._shapes[i])}; this run: {_shape_text(shape)})")
        found = self._decisions.get((shape, k))
        if found is None:
            return KEEP
        self._applied.add((shape, k))
        action, by, _ = found
        if action == "fail":
            return FAIL
        to = call.hint + by
        if to < space.bottom or to + call.size > space.top:
            self.note(f"call #{call.index}: the recorded move by {by:#x} from {call.hint:#x} leaves the address space; kept")
            return KEEP
        return move(to)

    def notes(self) -> list[str]:
        missed = [f"not replayed: the trace's {_ordinal(k)} {text} was {_PAST[action]}; this run made no such call"
                  for (shape, k), (action, _, text) in self._decisions.items() if (shape, k) not in self._applied]
        return super().notes() + missed


_PAST = {"move": "moved", "fail": "failed"}


def _shape(call: Call) -> tuple[str, int, int, int]:
    return (call.syscall, call.size, call.prot, call.flags)


def _shape_text(shape: tuple[str, int, int, int]) -> str:
    syscall, size, prot, flags = shape
    return f"{syscall} of {size_text(size)}, prot {prot:#x}, flags {flags:#x}"


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


# -- parameters -------------------------------------------------------------------


def _size_spec(n: int) -> str:
    """``n`` as a spec writes it (the largest unit that divides it)."""
    for unit, letter in ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if n and n % unit == 0:
            return f"{n // unit}{letter}"
    return str(n)


def _size(what: str, value: object, low: int | None) -> int:
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise AdversarySpecError(f"{what} must be an integer number of bytes, got {value!r}") from None
    if low is not None and n < low:
        raise AdversarySpecError(f"{what} must be at least {low:#x}, got {n:#x}")
    return n


def _positive(what: str, value: object) -> int:
    n = _size(what, value, low=None)
    if n < 1:
        raise AdversarySpecError(f"{what} must be a count from 1, got {n}")
    return n


def _power_of_two(what: str, value: object) -> int:
    n = _size(what, value, low=PAGE_SIZE)
    if n & (n - 1):
        raise AdversarySpecError(f"{what} must be a power of two, got {n:#x}")
    return n
