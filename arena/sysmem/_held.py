"""Which ranges the memory layers reserved and still hold: what a leak check may blame on arena.

Off, the usual case, it costs a call nothing: no layer does any more work.
``track_reservations()`` turns it on while it lasts: every layer, those that
exist and those made meanwhile, then notes each ``reserve``, ``reserve_exact``
and ``release`` it answers, by holding a noting wrapper of each as an
instance attribute (removed again at the end). A manager made meanwhile keeps
the wrapper it read (``Arena`` reads ``memory.reserve`` once), which notes
nothing once tracking is off.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from bisect import bisect_right, insort
from collections.abc import Callable, Iterator

_OPS = ("reserve", "reserve_exact", "release")
_layers: weakref.WeakSet[object] = weakref.WeakSet()  # every memory layer made, while it lives
_active: list[Held] = []
_lock = threading.Lock()


class Held:
    """The ranges reserved through a memory layer and not released since ``track_reservations()`` began."""

    def __init__(self) -> None:
        self._spans: list[tuple[int, int]] = []  # sorted, disjoint

    @property
    def spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` of each range held, lowest first."""
        with _lock:
            return list(self._spans)

    def overlaps(self, start: int, end: int) -> bool:
        """Whether any held range meets ``[start, end)``."""
        with _lock:
            i = bisect_right(self._spans, (end, end)) - 1
            return i >= 0 and self._spans[i][1] > start

    def _cut(self, start: int, end: int) -> None:
        spans = self._spans
        i = max(bisect_right(spans, (start, start)) - 1, 0)
        j, pieces = i, []
        while j < len(spans) and spans[j][0] < end:
            a, b = spans[j]
            pieces += [(a, b)] if b <= start else [p for p in ((a, start), (end, b)) if p[0] < p[1]]
            j += 1
        spans[i:j] = pieces


def _noted(layer: object, op: str) -> Callable[[int, int], int | None] | None:
    call: Callable[[int, int], int | None] = getattr(layer, op)  # reserve, reserve_exact or release
    if getattr(call, "_unnoted", None) is not None:
        return None  # noting already

    @functools.wraps(call)
    def noted(addr: int, size: int) -> int | None:
        result = call(addr, size)
        with _lock:
            for held in _active:
                if op == "release":
                    held._cut(addr, addr + size)
                elif result is not None:
                    held._cut(result, result + size)
                    insort(held._spans, (result, result + size))
        return result

    # What _unnote puts back, and the mark of a noting wrapper: an attribute of
    # the function itself, which the type checker does not know functions have.
    noted._unnoted = call  # type: ignore[attr-defined]
    return noted


def _note(layer: object) -> None:
    for op in _OPS:
        noted = _noted(layer, op)
        if noted is not None:
            setattr(layer, op, noted)


def _unnote(layer: object) -> None:
    for op in _OPS:
        call = vars(layer).get(op)
        inner = getattr(call, "_unnoted", None)
        if inner is None:
            continue
        if getattr(inner, "__func__", None) is getattr(type(layer), op, None):
            del vars(layer)[op]  # it was the class's own method
        else:
            setattr(layer, op, inner)  # an instance's own function (CffiMemory, a confined layer)


def register(layer: object) -> None:
    """Called by each memory layer when it is made: noted at once if tracking is on."""
    with _lock:
        _layers.add(layer)
        if _active:
            _note(layer)


@contextlib.contextmanager
def track_reservations() -> Iterator[Held]:
    """While inside, note what every memory layer reserves and releases; yields the ``Held`` ranges.

    Only reservations made through ``arena.sysmem`` layers (and so through
    ``Arena``, ``HeapArenas``, ``ScriptedMemory`` and ``Crowd``) count, not
    other mappings of the process. Costs nothing when no tracking is on.
    """
    held = Held()
    with _lock:
        if not _active:
            for layer in list(_layers):
                _note(layer)
        _active.append(held)
    try:
        yield held
    finally:
        with _lock:
            _active.remove(held)
            if not _active:
                for layer in list(_layers):
                    _unnote(layer)
