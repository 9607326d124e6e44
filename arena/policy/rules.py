"""Placement rules: everything in which Go's versions of sysAlloc differ, as objects.

A growth reservation is hinted at ``arena_end``; when the kernel answers
anywhere else, a rule decides whether to keep the region. The arena does all
the rest the same way under every rule (the contiguous case, the ``max_mem``
bound, releasing a refused region, committing, the 32-bit fallback mapping),
so a rule holds only:

- ``refusal(bounds, p, p_size, layout)``: the reason to refuse the region
  ``[p, p + p_size)``, or ``None`` to take it. It sees copies of the bounds
  and the layout, never the arena, so it cannot change anything.
- ``separate_cursor``: whether allocation moves a cursor of its own,
  ``arena_alloc`` (Go 1.9), or ``arena_used`` itself (Go 1.8: taking a region
  then sets ``arena_used`` to it, which lowers it when the region is below).
- ``fallback_on_no_room``: when the growth reservation gets no room at all,
  try the small fallback mapping (Go 1.9) or return ``None`` (Go 1.8).
- ``fallback_raises_end``: whether a fallback mapping above ``arena_end``
  also raises ``arena_end`` to its end (Go 1.8, so that ``arena_used`` never
  passes ``arena_end``).

``Arena(rule=...)`` takes a built-in name (``RULES``), a ``Rule``, or any
object with those four parts; ``resolve("module:attr")`` loads a user's.
docs/rules.md shows how to write one and hunt for its counterexample.
"""
from __future__ import annotations

import abc
import importlib
from typing import NamedTuple

from .layout import Layout


class Bounds(NamedTuple):
    """A linear arena's bounds at one moment, Go's names: the heap is ``[arena_start, arena_used)``,
    allocation continues at ``arena_alloc``, the current reservation ends at ``arena_end``."""

    arena_start: int
    arena_used: int
    arena_alloc: int
    arena_end: int


class Rule(abc.ABC):
    """A placement rule; subclass it and define the four parts (see the module's docstring).

    ``name`` is how reports, JSON and traces name the rule. By default it is
    ``module:QualifiedName`` of the class, which ``resolve`` (and so
    ``arena replay``) can load again.
    """

    @property
    def name(self) -> str:
        """How reports, JSON and traces name the rule: ``module:QualifiedName`` unless a subclass sets it."""
        cls = type(self)
        return f"{cls.__module__}:{cls.__qualname__}"

    @property
    @abc.abstractmethod
    def separate_cursor(self) -> bool:
        """Allocation moves ``arena_alloc`` (Go 1.9), not ``arena_used`` itself (Go 1.8)."""

    @property
    @abc.abstractmethod
    def fallback_on_no_room(self) -> bool:
        """No room for the growth reservation: try the fallback mapping (Go 1.9), not ``None`` (Go 1.8)."""

    @property
    @abc.abstractmethod
    def fallback_raises_end(self) -> bool:
        """A fallback mapping above ``arena_end`` raises ``arena_end`` to its end (Go 1.8)."""

    @abc.abstractmethod
    def refusal(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        """Why the region ``[p, p + p_size)`` is refused, or ``None`` to take it.

        Only called for a region that is not at ``arena_end`` and ends within
        ``arena_start + max_mem``: the arena takes the first and refuses the
        second under every rule.
        """

    def __repr__(self) -> str:
        return f"<rule {self.name}>"


def _below_start(bounds: Bounds, p: int) -> str | None:
    return f"p {p:#x} is below arena_start {bounds.arena_start:#x}" if p < bounds.arena_start else None


class Legacy(Rule):
    """Go 1.8, before Go commit e5a5c03: any region at or above arena_start; the bug of Go issue 20259."""

    name = "legacy"
    separate_cursor = False
    fallback_on_no_room = False
    fallback_raises_end = True

    def refusal(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        return _below_start(bounds, p)


class Fixed(Legacy):
    """Go commit e5a5c03: only a region above arena_end, so arena_used can only rise."""

    name = "fixed"

    def refusal(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        if p <= bounds.arena_end:
            return f"p {p:#x} is not above arena_end {bounds.arena_end:#x}"
        return None


class Go19(Rule):
    """Go 1.9: a region at or above arena_start moves arena_alloc, if under the strand limit is left behind."""

    name = "go1.9"
    separate_cursor = True
    fallback_on_no_room = True
    fallback_raises_end = False

    def refusal(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        why, stranded = _below_start(bounds, p), bounds.arena_end - bounds.arena_alloc
        if why is None and stranded >= layout.strand_limit:
            why = f"it would strand {stranded:#x} bytes of the current block (limit {layout.strand_limit:#x})"
        return why


class Strict(Go19):
    """Only the exact hint, as jemalloc and tcmalloc treat a missed hint: release anything else and fall back."""

    name = "strict"

    def refusal(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        return f"p {p:#x} is not at the hint arena_end {bounds.arena_end:#x} (strict takes only the hint)"


BUILTIN: dict[str, Rule] = {r.name: r for r in (Fixed(), Legacy(), Go19(), Strict())}
RULES = tuple(BUILTIN)

_PARTS = ("separate_cursor", "fallback_on_no_room", "fallback_raises_end")


def resolve(rule: object) -> Rule:
    """The rule ``rule`` names: a built-in name, ``"module:attr"`` (a rule, or a class made with no
    arguments), or a rule object itself, checked.

    ``ValueError`` for a name that is not a rule or does not load, and for
    Go 1.9's cursor with Go 1.8's fallback (which would commit memory the
    arena does not own); ``TypeError`` for a rule missing a part (naming it)
    or with a part of the wrong type.
    """
    if isinstance(rule, str):
        if rule in BUILTIN:
            return BUILTIN[rule]
        rule = _load(rule)
    return check(rule)


def _load(spec: str) -> object:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, or module:attr of your own rule, got {spec!r}")
    try:
        found: object = importlib.import_module(module)
    except Exception as exc:  # the user's module failed to import, however it failed
        raise ValueError(f"rule {spec}: cannot import {module} ({type(exc).__name__}: {exc})") from exc
    try:
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise ValueError(f"rule {spec}: {module} has no {attr}") from None
    if isinstance(found, type):
        try:
            found = found()
        except TypeError as exc:
            # An abstract Rule names its missing part here.
            raise TypeError(f"rule {spec}: {exc}") from None
        except Exception as exc:
            raise ValueError(f"rule {spec}: {attr}() failed ({type(exc).__name__}: {exc})") from exc
    return found


def check(rule: object) -> Rule:
    """``rule`` itself if it has every part, else ``TypeError`` naming the first one missing or mistyped
    (``ValueError`` for a pair of parts that cannot go together)."""
    label = type(rule).__qualname__
    if not isinstance(rule, Rule) and not any(hasattr(rule, part) for part in (*_PARTS, "refusal")):
        raise TypeError(f"rule must be one of {', '.join(RULES)}, 'module:attr' or a Rule, not {label} ({rule!r})")
    for part in _PARTS:
        if not hasattr(rule, part):
            raise TypeError(f"rule {label} has no {part}: a bool (see arena.rules)")
        if not isinstance(getattr(rule, part), bool):
            raise TypeError(f"rule {label}: {part} must be a bool, got {getattr(rule, part)!r}")
    if not callable(getattr(rule, "refusal", None)):
        raise TypeError(f"rule {label} has no refusal(bounds, p, p_size, layout) method (see arena.rules)")
    if rule.separate_cursor and rule.fallback_raises_end:
        # With its own cursor the arena allocates from arena_alloc up to
        # arena_end: raising arena_end to a fallback mapping elsewhere would
        # let it commit the memory in between, which it does not own.
        raise ValueError(f"rule {label}: fallback_raises_end needs separate_cursor False (Go 1.8's pair)")
    name = name_of(rule)
    if not isinstance(name, str) or not name:
        raise TypeError(f"rule {label}: name must be a non-empty str, got {name!r}")
    return rule


def name_of(rule: Rule) -> str:
    """The name a report or trace gives ``rule`` (``module:QualifiedName`` if it has none)."""
    name = getattr(rule, "name", None)
    return name if name is not None else f"{type(rule).__module__}:{type(rule).__qualname__}"
