"""Where a real-program hunt looks: the calls a plain run made, the plans drawn from them, the simpler ones tried when shrinking.

``Observation.of(outcome)`` turns a run under ``observe`` into *slots*: each
adjustable call as (shape, nth of that shape), with the kind of call it is:
a *growth* (hinted at the end of a mapping the program already had: it
extends a region), another hinted call, an unhinted reservation (PROT_NONE,
at least 1 MiB) or another unhinted call. Runtimes and allocators care most
where their hinted reservations land, so the draw favours them.

``Search(observation, seed, shard, shards)`` yields this shard's plans:
scenario ``index`` of the whole search is drawn from a generator seeded
with ``(seed, index)`` only (Python's ``random`` seeded with text is the
same on every machine), and a plan belongs to the shard its text's hash
names, so shards never run the same plan and need not talk to each other.
A plan already drawn is skipped; after ``EXHAUSTED`` draws with nothing new
the search has seen every plan it can draw.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterator
from typing import NamedTuple

from ..tracer import Outcome
from .program_plan import ACTIONS, FAMILIES, UPWARD, Plan, Rewrite, Shape

# The kinds of slot, and how strongly the draw favours each (a kind, then a shape of it, then a call).
KINDS = {"growth": 8, "hinted": 4, "reservation": 2, "other": 1}
# How many rewrites a plan has: mostly two (the smallest that can leave a hole and use it).
SIZES = {1: 3, 2: 5, 3: 2}
# Each action's weight, for a hinted call and for one without a hint; "hole" only after an upward rewrite.
HINTED_ACTIONS = {"below": 3, "above": 3, "hole": 3, "misalign": 2, "low": 1, "high": 1, "enomem": 1}
UNHINTED_ACTIONS = {"low": 2, "high": 1, "hole": 2, "misalign": 3, "enomem": 1}
MISALIGN_PAGES = (1, 2, 16)
# A rewrite of a shape seen more than once applies to every call of it from the nth on, this often.
EVERY = 0.15
# Draws in a row with no new plan of this shard: the search has seen all it can draw.
EXHAUSTED = 20_000
_RESERVATION = 1 << 20
MAP_ANONYMOUS = 0x20


class Slot(NamedTuple):
    """One adjustable call of the observed run: its shape, which of that shape it was (from 1), its kind."""

    shape: Shape
    nth: int
    kind: str
    position: int  # among the observed run's adjustable calls, from 0


@dataclasses.dataclass(frozen=True)
class Observation:
    """The adjustable calls of a run under ``observe``, as slots, and how many calls it made in all."""

    slots: tuple[Slot, ...]
    calls: int

    @classmethod
    def of(cls, outcome: Outcome, min_size: int = 0) -> Observation:
        """The slots of ``outcome``: its adjustable anonymous calls (a file's mapping is the loader's or the
        program's own file, not a heap) of at least ``min_size`` bytes."""
        ends: set[int] = set()
        seen: dict[Shape, int] = {}
        slots: list[Slot] = []
        for r in outcome.calls:
            c = r.call
            if c.adjustable and c.flags & MAP_ANONYMOUS and c.size >= min_size:
                shape = Shape.of(c)
                n = seen[shape] = seen.get(shape, 0) + 1
                if c.hinted:
                    kind = "growth" if c.hint in ends else "hinted"
                else:
                    kind = "reservation" if c.prot == 0 and c.size >= _RESERVATION else "other"
                slots.append(Slot(shape, n, kind, len(slots)))
            if c.syscall.endswith("mmap") or c.syscall == "mmap2":
                if r.answer is not None and r.answer > 0:
                    ends.add(r.answer + c.size)
        return cls(tuple(slots), len(outcome.calls) + outcome.calls_dropped)

    def kinds(self) -> dict[str, list[Shape]]:
        """Each kind present, its shapes in the order first seen."""
        out: dict[str, list[Shape]] = {}
        for s in self.slots:
            shapes = out.setdefault(s.kind, [])
            if s.shape not in shapes:
                shapes.append(s.shape)
        return out

    def count(self, shape: Shape) -> int:
        return sum(s.shape == shape for s in self.slots)

    def first(self, shape: Shape, nth: int) -> int:
        """The observed position of the ``nth`` call of ``shape`` (past the end if the run made fewer)."""
        return next((s.position for s in self.slots if s.shape == shape and s.nth == nth), len(self.slots))

    def summary(self) -> str:
        kinds = self.kinds()
        parts = [f"{sum(s.kind == k for s in self.slots):,} {k}" for k in KINDS if k in kinds]
        return f"{len(self.slots):,} adjustable mmap calls of {self.calls:,} traced ({', '.join(parts) or 'none'})"


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    names = list(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


def draw(observation: Observation, seed: int, index: int, answers: frozenset[str] = frozenset(FAMILIES)) -> Plan:
    """Scenario ``index`` of the search seeded ``seed``: a plan of one to three rewrites of observed calls,
    answered with actions of the families ``answers`` (see ``FAMILIES``)."""
    allowed = {a for family in answers for a in FAMILIES[family]}
    rng = random.Random(f"arena-program-hunt:{seed}:{index}")
    kinds = observation.kinds()
    if not kinds:
        return Plan()
    size = min(int(_weighted(rng, {str(k): w for k, w in SIZES.items()})), len(observation.slots))
    chosen: dict[tuple[Shape, int], bool] = {}
    for _ in range(4 * size):
        if len(chosen) == size:
            break
        kind = _weighted(rng, {k: KINDS[k] for k in kinds})
        shape = rng.choice(kinds[kind])
        count = observation.count(shape)
        nth = rng.randint(1, count)
        if (shape, nth) not in chosen:
            chosen[shape, nth] = count > nth and rng.random() < EVERY
    rewrites: list[Rewrite] = []
    upward = False
    for (shape, nth), every in sorted(chosen.items(), key=lambda kv: (observation.first(*kv[0]), kv[0][1])):
        weights = {a: w for a, w in (HINTED_ACTIONS if shape.hinted else UNHINTED_ACTIONS).items()
                   if a in allowed and (a != "hole" or upward)}
        if not weights:
            continue
        action = _weighted(rng, weights)
        pages = 0
        if action == "misalign":
            pages = rng.choice(MISALIGN_PAGES) * (rng.choice((1, -1)) if shape.hinted else 1)
        rewrites.append(Rewrite(shape, nth, action, pages, every))
        upward = upward or (shape.hinted and action in UPWARD)
    return Plan(tuple(rewrites))


def owner(plan: Plan, shards: int) -> int:
    """The shard (from 1) that runs ``plan`` when a search is split ``shards`` ways."""
    digest = hashlib.sha256(plan.key().encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


class Search:
    """This shard's plans, in order: ``next()`` gives ``(index, plan)``, or ``None`` once nothing new can be drawn."""

    def __init__(self, observation: Observation, seed: int, shard: int = 1, shards: int = 1,
                 answers: frozenset[str] = frozenset(FAMILIES)) -> None:
        self.observation, self.seed, self.shard, self.shards = observation, seed, shard, shards
        self.answers = answers
        self.index = 0
        self.seen: set[str] = set()
        self.exhausted = False

    def next(self) -> tuple[int, Plan] | None:
        if self.exhausted:
            return None
        for _ in range(EXHAUSTED):
            i, self.index = self.index, self.index + 1
            plan = draw(self.observation, self.seed, i, self.answers)
            key = plan.key()
            if not plan.rewrites or key in self.seen or owner(plan, self.shards) != self.shard:
                continue
            self.seen.add(key)
            return i, plan
        self.exhausted = True
        return None


# -- shrinking ---------------------------------------------------------------------


def normal(plan: Plan, observation: Observation) -> Plan | None:
    """``plan`` with its rewrites in the order of the calls they select; ``None`` if two select the same call."""
    selectors = {(r.shape, r.nth) for r in plan.rewrites}
    if len(selectors) < len(plan):
        return None
    return Plan(tuple(sorted(plan.rewrites, key=lambda r: (observation.first(r.shape, r.nth), r.nth))))


def simpler(plan: Plan, observation: Observation, answers: frozenset[str] = frozenset(FAMILIES)) -> Iterator[Plan]:
    """Plans simpler than ``plan``, the simplest kinds of change first: fewer rewrites; then, rewrite by
    rewrite, one call instead of every, an earlier action of ``ACTIONS`` (of the families ``answers``),
    fewer pages, the first call of its shape."""
    allowed = {a for family in answers for a in FAMILIES[family]}
    for candidate in _simpler(plan, allowed):
        made = normal(candidate, observation)
        if made is not None:
            yield made


def _simpler(plan: Plan, allowed: set[str]) -> Iterator[Plan]:
    for i in range(len(plan)):
        yield plan.without(i)
    for i, r in enumerate(plan.rewrites):
        upward_before = any(p.shape.hinted and p.action in UPWARD for p in plan.rewrites[:i])
        if r.every:
            yield plan.replaced(i, dataclasses.replace(r, every=False))
        for action in ACTIONS[:ACTIONS.index(r.action)]:
            if action not in allowed or (action in ("below", "above") and not r.shape.hinted):
                continue
            if action == "hole" and not upward_before:
                continue
            yield plan.replaced(i, dataclasses.replace(r, action=action, pages=1 if action == "misalign" else 0))
        if r.action == "misalign":
            for pages in sorted({1, abs(r.pages) // 2} - {0}):
                if pages < abs(r.pages) or r.pages < 0:
                    yield plan.replaced(i, dataclasses.replace(r, pages=pages))
        if r.nth > 1:
            yield plan.replaced(i, dataclasses.replace(r, nth=1))
