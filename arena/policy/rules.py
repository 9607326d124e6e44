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
An arena reads its rule once (``read``): the values it checks are the values
it keeps (``Parts``), so a part that changes later changes nothing. A rule
that fails (raises, or returns anything but ``None`` or a ``str``) is a
``RuleFailed`` naming the rule, the part and the error.
docs/rules.md shows how to write one and hunt for its counterexample.
"""
from __future__ import annotations

import abc
import copy
import importlib
import os
import sys
from collections.abc import Callable
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

    ``name`` is how reports, JSON and traces name the rule. It is the class's
    own ``module:QualifiedName``, which ``resolve`` (and so ``arena replay``)
    can load again, unless the class sets ``name`` itself: a subclass of a
    built-in rule is not that built-in.
    """

    name: str

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class that sets name itself is named otherwise: an inherited
        # name would make a trace replay the parent instead (docs/rules.md).
        if "name" not in cls.__dict__:
            cls.name = _default_name(cls)

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
    """Go 1.9: a region at or above arena_start moves arena_alloc, if under the strand limit is left behind
    (the rest of the current block, never used again: "stranded")."""

    name = "go1.9"
    separate_cursor = True
    fallback_on_no_room = True
    fallback_raises_end = False

    def refusal(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        why, stranded = _below_start(bounds, p), bounds.arena_end - bounds.arena_alloc
        if why is None and stranded >= layout.strand_limit:
            why = (f"it would leave {stranded:#x} bytes of the current block unused for good (stranded; "
                   f"go1.9 leaves under {layout.strand_limit:#x})")
        return why


class Strict(Go19):
    """Only the exact hint, as jemalloc and tcmalloc treat a missed hint: release anything else and fall back."""

    name = "strict"

    def refusal(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        return f"p {p:#x} is not at the hint arena_end {bounds.arena_end:#x} (strict takes only the hint)"


BUILTIN: dict[str, Rule] = {r.name: r for r in (Fixed(), Legacy(), Go19(), Strict())}
RULES = tuple(BUILTIN)

_PARTS = ("separate_cursor", "fallback_on_no_room", "fallback_raises_end")
_MISSING = object()


class RuleFailed(Exception):
    """A user's rule failed: ``rule`` (its name) raised ``error`` in ``part`` ("refusal()", a part
    read), or ``refusal`` returned something that is neither ``None`` nor a ``str`` (``error`` None).

    The message is one line naming all three; the rule's own exception is the ``__cause__``.
    """

    def __init__(self, rule: str, part: str, message: str, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.rule, self.part, self.error = rule, part, error

    @classmethod
    def raised(cls, rule: str, part: str, error: BaseException) -> RuleFailed:
        """``rule`` raised ``error`` in ``part``."""
        text = _shown(error, str)
        return cls(rule, part, f"rule {rule} raised {type(error).__name__} in {part}" + (f": {text}" if text else ""), error)


def _shown(value: object, show: Callable[[object], str] = repr) -> str:
    """``value`` as one short line of a message, whatever its ``__repr__`` or ``__str__`` does."""
    try:
        text = show(value)
        text = text if type(text) is str else repr(text)
    except BaseException:  # noqa: B036  (a user's __repr__ failing, even with SystemExit, is only shown)
        text = f"<{type(value).__name__} object>"
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


class Parts(NamedTuple):
    """A rule read once and checked (``read``): what an arena keeps of it and decides by.

    ``rule`` is the object read; ``refusal`` its bound method. ``refuse``
    asks it about a region.
    """

    rule: object
    name: str
    refusal: Callable[[Bounds, int, int, Layout], object]
    separate_cursor: bool
    fallback_on_no_room: bool
    fallback_raises_end: bool

    def refuse(self, bounds: Bounds, p: int, p_size: int, layout: Layout) -> str | None:
        """The rule's reason to refuse ``[p, p + p_size)``, or ``None`` to take it.

        The rule is handed a copy of ``layout``, so it cannot change the
        caller's. ``RuleFailed`` if it raises (``KeyboardInterrupt`` passes
        as it is) or returns anything but ``None`` or a ``str``.
        """
        try:
            why = self.refusal(bounds, p, p_size, copy.copy(layout))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036  (SystemExit from a user's rule is its failure, not an exit)
            raise RuleFailed.raised(self.name, "refusal()", exc) from exc
        if why is None:
            return None
        if isinstance(why, str):
            return str.__str__(why)  # a plain str: a subclass's methods run no further
        raise RuleFailed(self.name, "refusal()", f"rule {self.name}: refusal() returned {_shown(why)}; "
                         "it must return None (take the region) or a str (why not)")


def read(rule: object) -> Parts:
    """``rule`` read once into checked ``Parts``: a built-in name, ``"module:attr"`` (a rule, or a
    rule class made with no arguments), a rule object, or ``Parts`` (returned as they are).

    Each part is read once, and the values read are the values checked and
    kept. ``ValueError`` for a name that is not a rule or does not load, and
    for Go 1.9's cursor with Go 1.8's fallback (which would commit memory the
    arena does not own); ``TypeError`` for a rule missing a part (naming it)
    or with a part of the wrong type; ``RuleFailed`` if reading a part raises.
    """
    if isinstance(rule, Parts):
        return rule
    if isinstance(rule, str):
        if rule in _BUILTIN_PARTS:
            return _BUILTIN_PARTS[rule]
        rule = _load(rule)
    return _read(rule)


def resolve(rule: object) -> Rule:
    """The rule object ``rule`` names, checked (see ``read``, which raises the same)."""
    return read(rule).rule  # type: ignore[return-value]  # a rule by its parts, if not by class


def check(rule: object) -> Rule:
    """``rule`` itself if it has every part, else ``TypeError`` naming the first one missing or mistyped
    (``ValueError`` for a pair of parts that cannot go together; ``RuleFailed`` if reading one raises)."""
    return _read(rule).rule  # type: ignore[return-value]


def name_of(rule: object) -> str:
    """The name a report or trace gives ``rule``: its own ``name`` if its class (or it) sets one,
    else ``module:QualifiedName`` of its class."""
    if isinstance(rule, Parts):
        return rule.name
    return rule.name if _sets_name(rule) else _default_name(type(rule))  # type: ignore[attr-defined]


def _default_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _sets_name(rule: object) -> bool:
    """Whether ``rule``'s own class, or ``rule`` itself, sets ``name`` (an inherited one does not count)."""
    if "name" in type(rule).__dict__:
        return True
    try:
        own = object.__getattribute__(rule, "__dict__")
    except AttributeError:
        return False
    return isinstance(own, dict) and "name" in own


def _get(rule: object, part: str, label: str) -> object:
    """One read of ``part``; ``_MISSING`` if there is none."""
    try:
        return getattr(rule, part)
    except AttributeError:
        return _MISSING
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036  (see Parts.refuse)
        raise RuleFailed.raised(label, part, exc) from exc


def _read(rule: object) -> Parts:
    label = _default_name(type(rule))
    # Every part read exactly once, before any is checked: what is checked is what is kept.
    name = _get(rule, "name", label) if _sets_name(rule) else label
    values = {part: _get(rule, part, label) for part in (*_PARTS, "refusal")}
    short = type(rule).__qualname__
    if not isinstance(rule, Rule) and all(v is _MISSING for v in values.values()):
        raise TypeError(f"rule must be one of {', '.join(RULES)}, 'module:attr' or a Rule, not {short} ({_shown(rule)})")
    for part in _PARTS:
        if values[part] is _MISSING:
            raise TypeError(f"rule {short} has no {part}: a bool (see arena.rules)")
        if not isinstance(values[part], bool):
            raise TypeError(f"rule {short}: {part} must be a bool, got {_shown(values[part])}")
    refusal = values["refusal"]
    if not callable(refusal):
        raise TypeError(f"rule {short} has no refusal(bounds, p, p_size, layout) method (see arena.rules)")
    separate, on_no_room, raises_end = (values[part] is True for part in _PARTS)
    if separate and raises_end:
        # With its own cursor the arena allocates from arena_alloc up to
        # arena_end: raising arena_end to a fallback mapping elsewhere would
        # let it commit the memory in between, which it does not own.
        raise ValueError(f"rule {short}: fallback_raises_end needs separate_cursor False (Go 1.8's pair)")
    if not isinstance(name, str) or type(name) is not str or not name:
        raise TypeError(f"rule {short}: name must be a non-empty str, got {_shown(name)}")
    return Parts(rule, name, refusal, separate, on_no_room, raises_end)


_BUILTIN_PARTS = {name: _read(rule) for name, rule in BUILTIN.items()}


def _load(spec: str) -> object:
    """The rule ``module:attr`` names, imported as ``python -m`` does: the current directory first."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, or module:attr of your own rule, got {spec!r}")
    try:
        found: object = _import(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036  (the user's module failed to import, however it failed: SystemExit too)
        raise ValueError(f"rule {spec}: cannot import {module} ({type(exc).__name__}: {_shown(exc, str)})") from exc
    try:
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise ValueError(f"rule {spec}: {module} has no {attr}") from None
    if isinstance(found, type):
        # Only a rule class is made: any other class (arena:Arena, say) would run
        # arbitrary code, reservations and all, before being refused.
        if not issubclass(found, Rule) and not all(hasattr(found, part) for part in (*_PARTS, "refusal")):
            raise ValueError(f"rule {spec}: {attr} is not a rule: a subclass of arena.Rule, or a class with "
                             f"{', '.join(_PARTS)} and refusal()")
        try:
            found = found()
        except TypeError as exc:
            # An abstract Rule names its missing part here.
            raise TypeError(f"rule {spec}: {exc}") from None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036
            raise ValueError(f"rule {spec}: {attr}() failed ({type(exc).__name__}: {_shown(exc, str)})") from exc
    return found


def _import(module: str) -> object:
    """``importlib.import_module(module)`` with the current directory first on ``sys.path`` while it
    imports, as ``python -m`` and uvicorn have it: ``--rule mine:X`` works beside ``mine.py``."""
    try:
        here = os.getcwd()
    except OSError:
        return importlib.import_module(module)  # no current directory (removed): nothing to put first
    if sys.path[:1] in ([""], [here]):
        return importlib.import_module(module)
    sys.path.insert(0, here)
    try:
        return importlib.import_module(module)
    finally:
        if sys.path[:1] == [here]:
            del sys.path[0]
        elif here in sys.path:
            sys.path.remove(here)
