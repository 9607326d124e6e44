"""A real-program hunt's scenario: a plan of rewrites (which mmap calls, what answer), and the adversary that plays it.

A ``Plan`` is a small data object: a tuple of ``Rewrite``s, each a selector
(the ``nth`` adjustable call of a ``Shape``: syscall, size, prot, flags,
hinted or not; or every such call from the ``nth`` on) and an action::

    below     a hinted call: the highest free range under its hint (aligned as the hint is)
    above     a hinted call: the lowest free range from its hint's end up, displaced by at
              least its own length: a hole is left where it asked to be
    hole      into a hole an earlier displacement of this run left, if it still fits
    low       the lowest free range of the space
    high      the highest free range of the space
    misalign  hinted: the hint moved by ``pages`` pages; unhinted: ``pages`` pages past an
              aligned free range (aligned to the call's size, at most 64 MiB)
    enomem    the call fails with ENOMEM

An action that finds no room keeps the call (a note says so). ``ACTIONS``
lists them simplest first: a shrunk plan uses the earliest that still fails.
Plans are JSON-ready (``as_json``/``from_json``), and ``PlanAdversary``
plays one in a traced run: it only moves hints or fails calls, never
anything else (see ``arena.tracer``).
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any, NamedTuple

from ..tracer import FAIL, KEEP, Adversary, Call, Decision, Outcome, Space, move
from ..words import size_text

PAGE = 4096
ACTIONS = ("below", "above", "hole", "low", "high", "misalign", "enomem")
# The answers by family, as a hunt may be limited to some (arena hunt --answers).
FAMILIES = {"moved": ("below", "above", "hole", "low", "high"), "misaligned": ("misalign",), "refused": ("enomem",)}
# Actions that take a hinted call upward and so leave its hinted range free: a hole for a later call.
UPWARD = ("above", "high")
# What a hole or a misaligned answer to an unhinted call is aligned to, at most.
_MAX_ALIGN = 64 << 20
_WORDS = {
    "below": "moved below its hint (the highest free range under it)",
    "above": "moved above its hint by at least its own length (a hole left where it asked)",
    "hole": "moved into the hole an earlier rewrite left",
    "low": "moved to the lowest free range of the address space",
    "high": "moved to the highest free range of the address space",
    "enomem": "failed with ENOMEM",
}


class PlanError(ValueError):
    """A plan (or its JSON) that is not one; the message names what is wrong."""


class Shape(NamedTuple):
    """What a selector matches: an adjustable call's syscall, size, prot, flags and whether it has a hint."""

    syscall: str
    size: int
    prot: int
    flags: int
    hinted: bool

    @classmethod
    def of(cls, call: Call) -> Shape:
        return cls(call.syscall, call.size, call.prot, call.flags, call.hinted)

    def __str__(self) -> str:
        prot = "PROT_NONE" if self.prot == 0 else f"prot {self.prot:#x}"
        return (f"{self.syscall} of {size_text(self.size)}, {prot}, flags {self.flags:#x}, "
                f"{'hinted' if self.hinted else 'no hint'}")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


@dataclasses.dataclass(frozen=True, order=True)
class Rewrite:
    """The ``nth`` adjustable call of ``shape`` (from 1; ``every``: that one and every later one of the shape),
    answered by ``action`` (one of ``ACTIONS``; ``pages``: misalign's page count, negative for down)."""

    shape: Shape
    nth: int
    action: str
    pages: int = 0
    every: bool = False

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise PlanError(f"action must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        if (self.action == "misalign") != (self.pages != 0):
            raise PlanError("pages is a non-zero page count exactly for misalign")
        if self.nth < 1:
            raise PlanError(f"nth counts calls from 1, got {self.nth}")
        if self.action in ("below", "above") and not self.shape.hinted:
            raise PlanError(f"{self.action} needs a hinted call: {self.shape} has no hint")
        if self.action == "misalign" and not self.shape.hinted and self.pages < 0:
            raise PlanError("misalign of a call with no hint goes up: pages must be positive")

    def describe(self) -> str:
        which = f"every {self.shape} from the {_ordinal(self.nth)}" if self.every else f"the {_ordinal(self.nth)} {self.shape}"
        if self.action == "misalign":
            n = abs(self.pages)
            how = (f"hint moved {'up' if self.pages > 0 else 'down'} {n} page{'s' * (n != 1)} (misaligned)"
                   if self.shape.hinted else f"placed {n} page{'s' * (n != 1)} past an aligned free range (misaligned)")
        else:
            how = _WORDS[self.action]
        return f"{which}: {how}"

    def spec(self) -> str:
        """Compact text: ``mmap2:256M:0:0x22:hinted#2=below`` (``#2+`` for every from the 2nd; ``misalign-3``)."""
        s = self.shape
        action = f"misalign{self.pages:+d}" if self.action == "misalign" else self.action
        # Whole KiB as 256M, 12K; any other length in hex (a spec has no spaces).
        whole = s.size and not s.size % 1024
        size = size_text(s.size).replace(" MiB", "M").replace(" KiB", "K").replace(" GiB", "G") if whole else f"{s.size:#x}"
        return (f"{s.syscall}:{size}:"
                f"{s.prot}:{s.flags:#x}:{'hinted' if s.hinted else 'unhinted'}#{self.nth}{'+' if self.every else ''}={action}")

    def as_json(self) -> dict[str, Any]:
        s = self.shape
        return {"syscall": s.syscall, "size": s.size, "prot": s.prot, "flags": s.flags, "hinted": s.hinted,
                "nth": self.nth, "every": self.every, "action": self.action, "pages": self.pages}


@dataclasses.dataclass(frozen=True)
class Plan:
    """The rewrites of one scenario, in the order of the calls they select (see the module's docstring)."""

    rewrites: tuple[Rewrite, ...] = ()

    def __len__(self) -> int:
        return len(self.rewrites)

    def key(self) -> str:
        """The plan's canonical text: equal plans have equal keys."""
        return " ".join(r.spec() for r in self.rewrites) or "(no rewrite)"

    def without(self, i: int) -> Plan:
        return Plan(self.rewrites[:i] + self.rewrites[i + 1:])

    def replaced(self, i: int, rewrite: Rewrite) -> Plan:
        return Plan(self.rewrites[:i] + (rewrite,) + self.rewrites[i + 1:])

    def describe(self) -> list[str]:
        return [f"{i + 1}. {r.describe()}" for i, r in enumerate(self.rewrites)] or ["(no rewrite)"]

    def as_json(self) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.rewrites]

    @classmethod
    def from_json(cls, data: object) -> Plan:
        """The plan ``as_json`` wrote; ``PlanError`` naming the first bad field."""
        if not isinstance(data, list):
            raise PlanError(f"a plan is a list of rewrites, got {type(data).__name__}")
        out = []
        for i, item in enumerate(data):
            if not isinstance(item, dict) or set(item) != set(_FIELDS):
                raise PlanError(f"rewrite {i}: an object with exactly {', '.join(_FIELDS)}")
            try:
                shape = Shape(str(item["syscall"]), _int(item["size"]), _int(item["prot"]), _int(item["flags"]),
                              _bool(item["hinted"]))
                out.append(Rewrite(shape, _int(item["nth"]), str(item["action"]), _int(item["pages"]), _bool(item["every"])))
            except (TypeError, PlanError) as exc:
                raise PlanError(f"rewrite {i}: {exc}") from None
        return cls(tuple(out))


_FIELDS = ("syscall", "size", "prot", "flags", "hinted", "nth", "every", "action", "pages")


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a bool")
    return operator.index(value)  # type: ignore[arg-type]


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def hint_alignment(call: Call) -> int:
    """What a hinted call's hint is aligned to (its lowest set bit), at least a page, at most the call's size
    rounded up to a power of two: the program's own alignment, as far as one call shows it."""
    cap = max(PAGE, 1 << max(call.size - 1, 0).bit_length())
    return max(PAGE, min(call.hint & -call.hint, cap))


def size_alignment(size: int) -> int:
    """The largest power of two not above ``size`` (at least two pages, at most 64 MiB): what an allocator
    that over-asks and trims would want a region of that size aligned to."""
    return max(2 * PAGE, min(1 << (max(size, 1).bit_length() - 1), _MAX_ALIGN))


def _select(by_shape: dict[Shape, list[Rewrite]], seen: dict[Shape, int], call: Call) -> Rewrite | None:
    """The rewrite that selects ``call`` (counting it among its shape's calls in ``seen``), or None."""
    shape = Shape.of(call)
    rewrites = by_shape.get(shape)
    if rewrites is None:
        return None
    n = seen[shape] = seen.get(shape, 0) + 1
    return next((r for r in rewrites if n == r.nth or (r.every and n > r.nth)), None)


def applied(plan: Plan, outcome: Outcome) -> list[bool]:
    """For each rewrite of ``plan``, whether it changed a call in ``outcome`` (a run of the plan): a rewrite
    whose call never came, or that found no room, changed nothing."""
    by_shape: dict[Shape, list[Rewrite]] = {}
    for r in plan.rewrites:
        by_shape.setdefault(r.shape, []).append(r)
    seen: dict[Shape, int] = {}
    changed: set[int] = set()
    for record in outcome.calls:
        if record.call.adjustable:
            chosen = _select(by_shape, seen, record.call)
            if chosen is not None and record.rewritten:
                changed.add(id(chosen))
    return [id(r) in changed for r in plan.rewrites]


class PlanAdversary(Adversary):
    """Plays a ``Plan`` in one traced run: counts each shape's adjustable calls and answers the selected ones."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._by_shape: dict[Shape, list[Rewrite]] = {}
        for r in plan.rewrites:
            self._by_shape.setdefault(r.shape, []).append(r)
        self._seen: dict[Shape, int] = {}
        # Ranges a hinted call asked for and was moved away from: free for a later "hole".
        self._holes: list[tuple[int, int]] = []

    @property
    def name(self) -> str:
        return f"hunt plan: {self.plan.key()}"

    def decide(self, call: Call, space: Space) -> Decision:
        r = _select(self._by_shape, self._seen, call)
        return KEEP if r is None else self._answer(r, call, space)

    def _answer(self, r: Rewrite, call: Call, space: Space) -> Decision:
        if r.action == "enomem":
            return FAIL
        at = self._where(r, call, space)
        if at is None or not space.bottom <= at <= space.top - call.size:
            self.note(f"call #{call.index} {call.describe()}: no room to answer {r.action}; kept")
            return KEEP
        if call.hinted and r.action in UPWARD and at >= call.hint + call.size:
            self._holes.append((call.hint, call.hint + call.size))
        return move(at)

    def _where(self, r: Rewrite, call: Call, space: Space) -> int | None:
        size = call.size
        align = hint_alignment(call) if call.hinted else PAGE
        if r.action == "below":
            return space.free_below(call.hint, size, align)
        if r.action == "above":
            return space.free_above(call.hint + size, size, align)
        if r.action == "low":
            return space.free_above(space.bottom, size, align)
        if r.action == "high":
            return space.free_below(space.top, size, align)
        if r.action == "hole":
            return next((lo for lo, hi in self._holes if hi - lo >= size and space.is_free(lo, size)), None)
        # misalign
        if call.hinted:
            return call.hint + r.pages * PAGE
        base = space.free_below(space.top, size + r.pages * PAGE, size_alignment(size))
        return None if base is None else base + r.pages * PAGE
