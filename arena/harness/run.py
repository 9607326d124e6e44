"""Driving an arena through a list of requests, and reading its decisions back per request.

Shared by the 20259 demo and trace replays: both run requests against an arena
over real memory, write a pattern into everything handed out, and report what
each request caused.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..managers import Arena, Bounds, GoThrow, HeapArenas, HeapState, Region
from ..managers.vocabulary import AnyEvent
from ..managers.vocabulary import per_request as per_request  # imported from here too ("as": re-exported)
from ..policy.rules import RuleFailed
from ..words import size_text as size_text  # imported from here too ("as": re-exported)
from .check import Violation, verify

PATTERN = b"live heap object"


def mark(i: int) -> bytes:
    """What the ``i``-th request's allocation holds at both ends: ``PATTERN`` with its number,
    so that two allocations sharing memory cannot both read back their own."""
    return PATTERN[:12] + i.to_bytes(4, "little")


@dataclasses.dataclass
class Replay:
    """One rule's run: the arena (still open; the caller closes it) and what each request returned.

    ``failed``: the ``RuleFailed`` that stopped the run (a user's rule raised,
    or answered neither ``None`` nor a ``str``), or ``None``. The requests
    after it were not made; the arena holds what happened up to it.
    """

    arena: Arena | HeapArenas
    requests: list[int]
    returned: list[int | None]
    failed: RuleFailed | None = None

    @property
    def lost(self) -> list[int]:
        """Allocations handed out that the arena no longer counts as heap."""
        return [p for p in self.returned if p is not None and not self.arena.contains(p)]

    def changed(self) -> list[int]:
        """Allocations whose first or last bytes no longer hold the mark written there."""
        bad = []
        for i, (p, n) in enumerate(zip(self.returned, self.requests)):
            if p is not None:
                m = mark(i)
                if _read(self.arena, p, len(m)) != m or _read(self.arena, p + n - len(m), len(m)) != m:
                    bad.append(p)
        return bad

    def intact(self) -> bool:
        """Whether every allocation still holds the marks written into it."""
        return not self.changed()


def _read(arena: Arena | HeapArenas, p: int, n: int) -> bytes:
    """``n`` bytes at ``p``, through a view of the arena."""
    with arena.view(p, n) as v:
        return bytes(v)


def _write(arena: Arena | HeapArenas, p: int, data: bytes) -> None:
    with arena.view(p, len(data)) as v:
        v[:] = data


def drive(arena: Arena | HeapArenas, requests: list[int]) -> Replay:
    """Run ``sys_alloc`` for each request, marking both ends of each allocation; closes the arena on error.

    A rule that fails stops the run, the arena open: ``Replay.failed`` says how.
    """
    replay = Replay(arena, [], [])
    try:
        for i, n in enumerate(requests):
            try:
                p = arena.sys_alloc(n)
            except GoThrow:
                p = None  # Go would stop here; the throw is an event, and verify reports it
            except RuleFailed as exc:
                # The arena gave the region back and recorded the refusal: what it
                # holds is sound, and shows the decisions that led to the failure.
                replay.requests.append(n)
                replay.returned.append(None)
                replay.failed = exc
                break
            replay.requests.append(n)
            replay.returned.append(p)
            if p is not None:
                m = mark(i)
                _write(arena, p, m)
                _write(arena, p + n - len(m), m)
    except BaseException:
        arena.close()
        raise
    return replay


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Everything shown of one run, taken while its arena was live (tables, JSON, pictures)."""

    rule: str
    layout: str
    address_bits: int
    requests: list[int]
    returned: list[int | None]
    events: Sequence[AnyEvent]
    regions: list[Region]
    allocations: list[tuple[int, int]]
    bounds: Bounds | HeapState
    lost: list[int]
    violations: list[Violation]
    intact: bool

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict; addresses are integers."""
        return {
            "rule": self.rule,
            "layout": self.layout,
            "requests": self.requests,
            "returned": self.returned,
            # Field by field: dataclasses.asdict deep-copies, seconds for a long trace's events.
            "events": [
                {"step": e.step, "request": e.request, "hint": e.hint, "size": e.size, "returned": e.returned,
                 "verdict": e.verdict, "reason": e.reason, "before": e.before._asdict(), "after": e.after._asdict()}
                for e in self.events
            ],
            "regions": [r._asdict() for r in self.regions],
            "bounds": self.bounds._asdict(),
            "lost": self.lost,
            "violations": [{"kind": v.kind, "detail": v.detail} for v in self.violations],
            "intact": self.intact,
        }


def observe(replay: Replay) -> Outcome:
    """Take an ``Outcome`` of a run whose arena is still open; a rule's failure is one of its violations."""
    a = replay.arena
    found = verify(a)
    if replay.failed is not None:
        found.append(Violation("rule-failed", str(replay.failed)))
    return Outcome(
        rule=a.rule,
        layout=a.layout.name,
        address_bits=a.layout.address_bits,
        requests=list(replay.requests),
        returned=list(replay.returned),
        events=a.events,
        regions=a.regions,
        allocations=a.allocations,
        bounds=a.state if isinstance(a, HeapArenas) else Bounds(a.arena_start, a.arena_used, a.arena_alloc, a.arena_end),
        lost=replay.lost,
        violations=found,
        intact=replay.intact(),
    )


def arena_part(events: Sequence[AnyEvent]) -> int:
    """Where the arena part of a linear arena's first reservation begins (its metadata lies below); 0 for heap arenas."""
    firsts = (e.after for e in events if e.step == "first" and e.verdict == "reserved")
    return next((b.arena_used for b in firsts if isinstance(b, Bounds)), 0)
