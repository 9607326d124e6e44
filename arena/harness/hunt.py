"""Hunting for a counterexample to a placement rule, with real memory.

A scenario is an arena's setup, a list of ``sys_alloc`` requests and the
kernel's answers to its reservations. An answer is a category relative to the
arena's bounds at the moment it is asked (below ``arena_start``, between
``arena_used`` and ``arena_end``, above ``arena_end``, ...), placed at a free
spot of that window in this process's real address space and really mapped
there; or the kernel's own choice, or no room. After the requests, the arena
must pass ``arena.check.verify`` and every allocation must read back the bytes
written into it.

Hypothesis (the optional ``hunt`` extra) draws scenarios and shrinks a
failing one to a minimal counterexample. A scenario is drawn as
one byte string, decoded here (``decode``): that keeps hypothesis's own cost
per scenario low, and every byte is one request or one answer, so deleting a
byte or lowering it is always a simpler scenario.

What is hunted is a ``Target``: how to make the manager under test over a
memory layer, and the windows its reservations can be answered in.
``arena_target(rule)`` is the linear arena under a rule, ``heap_target()``
Go 1.11's heap arenas (``HeapArenas``), and ``target_for(name)`` either by
its command-line name; another manager becomes a target with its own
``make``, ``setups``, ``categories`` and ``window``.
"""
from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from .. import sysmem
from ..managers import RELEASE, Arena, HeapArenas, ReservationFailed
from ..managers.vocabulary import binary_end
from ..policy import rules
from ..policy.layout import LAYOUT_32, Layout, MiB, check_layout
from ..spaces import NO_ROOM, AnswerTaken, ScriptedMemory
from ..spaces import Answer as ScriptedAnswer
from ..words import size_text
from . import jobs as parallel
from .check import Violation, verify
from .repeatable import same_search
from .run import Replay, drive

if TYPE_CHECKING:
    # hypothesis is an extra (hunt): imported where a hunt needs it (require_hypothesis).
    from hypothesis.strategies import SearchStrategy

# -- targets ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """A manager to hunt in: made over a memory layer, answered in windows of its own bounds.

    ``make(memory, layout, setup)`` returns an open manager over ``memory``
    (it has ``sys_alloc``, ``close``, and ``arena.check.verify`` checks it);
    ``setups(layout)`` lists the constructor arguments a scenario picks from,
    simplest first; ``window(manager, category, size)`` is ``(lo, hi)``, the
    range a region's start must lie in to fall in ``category``, one of
    ``categories`` (simplest first).
    """

    name: str
    make: Callable[[sysmem.MemoryLayer, Layout, Mapping[str, Any]], Any]
    setups: Callable[[Layout], Sequence[Mapping[str, Any]]]
    categories: tuple[str, ...]
    window: Callable[[Any, str, int], tuple[int, int]]


# Where a growth reservation of the linear arena can be answered, relative to its bounds.
ARENA_CATEGORIES = (
    "contiguous", "below-start", "start-used", "used-end", "straddle-end", "above-end", "beyond-max-mem",
)
# Every target's answers also include the kernel's own choice (simplest) and no room.
KERNEL, NO_ROOM_ANSWER = "kernel", "no-room"
WORDS = {
    KERNEL: "the kernel's own choice",
    "contiguous": "at the hint, arena_end",
    "below-start": "below arena_start",
    "start-used": "between arena_start and arena_used",
    "used-end": "between arena_used and arena_end",
    "straddle-end": "across arena_end",
    "above-end": "above arena_end",
    "beyond-max-mem": "past arena_start + max_mem",
    "at-hint": "exactly where the arena hint asks",
    "below-hint": "below the range the hint asks for",
    "above-hint": "above the range the hint asks for",
    "unaligned": "less than one heap arena above the hint (or the heap), not aligned",
    "below-heap": "right below the heap, ending where it starts",
    "above-heap": "right above the heap, starting where it ends",
    "over-last": "across the last allocation's heap arenas",
    "top": "near the top of the address space",
    "bottom": "near the bottom of the address space",
    NO_ROOM_ANSWER: "no room",
}


def arena_window(a: Arena, category: str, size: int) -> tuple[int, int]:
    """The range ``[lo, hi]`` a region's start must lie in to fall in ``category``."""
    start, used, end = a.arena_start, a.arena_used, a.arena_end
    top = start + a.layout.max_mem + 1  # the region must end at or below this
    return {
        "contiguous": (end, end),
        "below-start": (0, start - size),
        "start-used": (start, used - 1),
        "used-end": (used, end - 1),
        "straddle-end": (end - size + 1, end - 1),
        "above-end": (end + 1, top - size),
        "beyond-max-mem": (top - size + 1, 1 << 64),
    }[category]


def arena_setups(layout: Layout) -> list[dict[str, int | None]]:
    """``Arena(start=..., initial_size=...)`` choices, simplest first."""
    if layout.metadata_size:
        # Go's own first hint (None) comes last: it lies just above the program break, which
        # another process, replaying a saved trace, has elsewhere (see free_spot).
        starts = [0x40000000, 0x80000000, 0xC0000000, None] if layout.address_bits == 32 else [None]
        sizes = [0, 16 * MiB, 128 * MiB]
    else:
        # A first reservation without metadata cannot be empty.
        starts, sizes = [None], [16 * MiB, 128 * MiB]
    return [{"start": s, "initial_size": n} for s in starts for n in sizes]


def arena_target(rule: str | rules.Rule | rules.Parts = "fixed") -> Target:
    """The linear arena (``Arena``) under ``rule``: a built-in name, ``module:attr`` or a rule."""
    # Read once: every scenario's arena decides by the same values, the ones checked here.
    parts = rules.read(rule)
    return Target(
        name=parts.name,
        make=lambda memory, layout, setup: Arena(layout, parts, memory=memory, **setup),
        setups=arena_setups,
        categories=ARENA_CATEGORIES,
        window=arena_window,
    )


# Where a reservation of Go 1.11's heap arenas can be answered: relative to the range its
# hint asks for (when every hint has failed, to the heap itself), to the heap it holds,
# and to the ends of the space, where its uintptr checks (wraps, outside) bite.
HEAP_CATEGORIES = (
    "at-hint", "below-hint", "above-hint", "unaligned", "below-heap", "above-heap", "over-last", "top", "bottom",
)
_EMPTY = (1, 0)  # a window with no spot: the kernel answers


def heap_window(h: HeapArenas, category: str, size: int) -> tuple[int, int]:
    """The range ``[lo, hi]`` a region's start must lie in to fall in ``category``.

    Asked while ``h`` holds its lock (the kernel is being asked): reads only
    what needs no lock. "over-last" has a free spot only if the last
    allocation's memory is no longer held: never, unless the manager is broken.
    """
    state = h.events[-1].after
    held = [r for r in h.regions if r.role != "metadata"]  # the 32-bit metadata lies anywhere
    low = min((r.start for r in held), default=None)
    high = max((r.end for r in held), default=None)
    # What the reservation asks for: the hint's range; with no hint left, the heap's.
    asked = None if state.hint is None else (state.hint - size if state.down else state.hint)
    below, above = (asked, asked + size) if asked is not None else (low, high)
    near = asked if asked is not None else high  # where an unaligned answer goes: just above
    last = h.allocations[-1] if h.allocations else None
    page, align, limit = h.memory.page_size, h.layout.heap_arena_size, h.memory.limit
    assert align is not None  # Layout fills it in when made
    windows = {
        "at-hint": (asked, asked) if asked is not None else _EMPTY,
        "below-hint": (0, below - size) if below is not None else _EMPTY,
        "above-hint": (above, limit) if above is not None else _EMPTY,
        "unaligned": (near + page, near + align - page) if near is not None else _EMPTY,
        "below-heap": (low - size, low - size) if low is not None else _EMPTY,
        "above-heap": (high, high) if high is not None else _EMPTY,
        "over-last": (last[0] - size + page, last[0] + last[1] - page) if last else _EMPTY,
        "top": (limit - 2 * size, limit - size),
        "bottom": (0, size),
    }
    return windows[category]


def heap_setups(layout: Layout) -> list[dict[str, int | None]]:
    """``HeapArenas(start=..., initial_size=...)`` choices, simplest first."""
    if layout.first_hints:
        # One hint, far from the process's mappings, then Go's 128 (the first at 0x00c0<<32).
        return [{"start": 0x100000000000}, {"start": None}]
    # 32-bit: a pre-reservation hinted at start (none, or of initial_size; None: Go's 512, 256,
    # 128 MiB ladder), Go's own first hint last: it lies above the program break (see arena_setups).
    return [{"start": s, "initial_size": n}
            for s in (0x40000000, 0x80000000, 0xC0000000, None) for n in (0, 16 * MiB, 128 * MiB, None)]


def heap_target() -> Target:
    """Go 1.11's sparse heap arenas (``HeapArenas``), named ``go1.11`` as on the command line."""
    return Target(
        name=RELEASE,
        make=lambda memory, layout, setup: HeapArenas(layout, memory=memory, **setup),
        setups=heap_setups,
        categories=HEAP_CATEGORIES,
        window=heap_window,
    )


def target_for(name: str | rules.Rule | rules.Parts) -> Target:
    """The target a command-line name stands for: ``"go1.11"``, else the linear arena under that rule."""
    return heap_target() if name == RELEASE else arena_target(name)


# -- scenarios -------------------------------------------------------------------


class Answer(NamedTuple):
    """An answer to a reservation: a category, and where in its window (0 lowest, 1 highest)."""

    category: str
    fraction: float

    def __str__(self) -> str:
        if self.category in (KERNEL, NO_ROOM_ANSWER):
            return WORDS[self.category]
        where = {0.0: "its lowest free spot", 1.0: "its highest free spot"}.get(self.fraction,
                                                                                 f"{self.fraction:.0%} up its free spots")
        return f"{WORDS.get(self.category, self.category)} ({self.category}), {where}"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """The manager's setup, the ``sys_alloc`` sizes, and the answers to the reservations after the first."""

    setup: Mapping[str, Any]
    requests: tuple[int, ...]
    answers: tuple[Answer, ...]

    def as_json(self) -> dict[str, object]:
        """The scenario as a JSON-ready dict: setup, requests, and each answer's category and fraction."""
        return {"setup": dict(self.setup), "requests": list(self.requests),
                "answers": [{"category": a.category, "fraction": a.fraction} for a in self.answers]}

    def __str__(self) -> str:
        def value(key: str, v: object) -> str:
            if not isinstance(v, int) or not v:
                return str(v)
            return f"{v:#x}" if key == "start" else size_text(v)  # an address, else a size

        setup = ", ".join(f"{k}={value(k, v)}" for k, v in self.setup.items())
        lines = [f"setup: {setup}", "requests: " + ", ".join(f"sys_alloc({size_text(n)})" for n in self.requests)]
        lines += [f"answer {i + 1}: {a}" for i, a in enumerate(self.answers)] or ["answers: the kernel's own choice"]
        return "\n".join(lines)


# One byte per request or answer: requests are bytes below 0x80.
_ANSWER = 0x80
MAX_STEPS = 24


def decoder(layout: Layout, target: Target) -> Callable[[bytes], Scenario]:
    """``decode`` for one layout and target, its tables made once."""
    setups = list(target.setups(layout))
    categories = (KERNEL, *target.categories, NO_ROOM_ANSWER)
    per = _ANSWER // len(categories)
    page, eighth = layout.page_size, max(layout.growth_step // 32 // layout.page_size, 1) * layout.page_size
    top = layout.max_mem // page * page
    sizes = [min((b + 1) * page if b < 64 else (b - 63) * eighth, top) for b in range(_ANSWER)]
    answers = [Answer(categories[min(k // per, len(categories) - 1)], min(k % per, per - 1) / (per - 1))
               for k in range(256 - _ANSWER)]
    # Where in the window means nothing to the kernel's own choice or to no room.
    answers = [Answer(a.category, 0.0) if a.category in (KERNEL, NO_ROOM_ANSWER) else a for a in answers]

    def decode(blob: bytes) -> Scenario:
        setup = setups[blob[0] % len(setups)] if blob else setups[0]
        return Scenario(setup, tuple(sizes[b] for b in blob[1:] if b < _ANSWER),
                        tuple(answers[b - _ANSWER] for b in blob[1:] if b >= _ANSWER))

    return decode


def decode(blob: bytes, layout: Layout, target: Target) -> Scenario:
    """The scenario a byte string stands for; every byte string is one, and smaller bytes are simpler.

    Byte 0 picks the setup. Each later byte is a request if below 0x80
    (0-63: 1-64 arena pages; 64-127: 1-64 eighths of a growth step), else an
    answer: a category (the kernel's choice first, no room last) and a
    fraction of its window.
    """
    return decoder(layout, target)(blob)


def scenarios(layout: Layout = LAYOUT_32, target: Target | None = None) -> SearchStrategy[Scenario]:
    """The hypothesis strategy of scenarios for ``target`` (default: the arena under "fixed") on ``layout``."""
    require_hypothesis()
    from hypothesis import strategies as st

    target = target or arena_target()
    return st.binary(min_size=1, max_size=1 + MAX_STEPS).map(decoder(layout, target))


# -- running one ------------------------------------------------------------------


# What the program break may reach. Linux puts a 32-bit process's break anywhere
# in the 32 MiB after its executable (ASLR), and it grows from there.
_BREAK_REACH = 64 * MiB


def _break_area(memory: sysmem.Memory) -> list[sysmem.Mapping]:
    """Where this process's program break can grow, and another process's can be: no free spot for
    an answer, or a trace saved here would not replay there. Empty when the executable is not in the space."""
    end = binary_end()
    if end >= memory.limit:
        return []
    return [sysmem.Mapping(end, max(sysmem.program_break(), end) + _BREAK_REACH, "", "[break reach]")]


def free_spot(memory: sysmem.Memory, lo: int, hi: int, size: int, fraction: float) -> int | None:
    """A page-aligned start in ``[lo, hi]`` whose ``size`` bytes are free now (and out of the program
    break's reach), chosen by ``fraction``; else ``None``."""
    page = memory.page_size
    hi = min(hi, memory.limit - size)
    lo = max(lo, memory.lowest)
    if lo > hi:
        return None
    # Only mappings starting below hi + size can touch such a region: the read stops there.
    taken = sorted(sysmem.mappings(below=hi + size) + _break_area(memory))
    spans = []
    for g0, g1 in sysmem.free_gaps(taken, lo, hi + size):
        a, b = -(-g0 // page) * page, (g1 - size) // page * page
        if a <= b:
            spans.append((a, b))
    if not spans:
        return None
    total = sum(b - a + page for a, b in spans)
    pick = int(fraction * (total - page)) // page * page
    for a, b in spans:
        if pick <= b - a:
            return a + pick
        pick -= b - a + page
    return spans[-1][1]


def _reply(made: list[Any], target: Target, inner: sysmem.Memory, answer: Answer,
           log: list[Answer] | None) -> Callable[[int, int], ScriptedAnswer]:
    def reply(hint: int, size: int) -> ScriptedAnswer:
        p: ScriptedAnswer
        if answer.category == NO_ROOM_ANSWER:
            p = NO_ROOM
        # Until the manager exists (a 64-bit first reservation trying its hints), the kernel answers.
        elif answer.category == KERNEL or not made:
            p = None
        else:
            lo, hi = target.window(made[0], answer.category, size)
            p = free_spot(inner, lo, hi, size, answer.fraction)
        if log is not None:
            # A window with no free spot leaves the answer to the kernel.
            log.append(answer if p is not None or answer.category == NO_ROOM_ANSWER else Answer(KERNEL, 0.0))
        return p

    return reply


def play(scenario: Scenario, target: Target, layout: Layout, memory: sysmem.Memory | None = None,
         log: list[Answer] | None = None) -> Replay:
    """Run ``scenario`` with real memory; the caller closes ``replay.arena`` (the manager).

    ``log`` receives each answer as it was used: the kernel's choice where its window had no free spot.
    """
    inner = memory if memory is not None else sysmem.default(address_bits=layout.address_bits)
    made: list[Any] = []  # the manager, once made: the replies read its bounds
    # The first reservation is the kernel's; each later one takes the next answer, then the kernel's again.
    scripted = ScriptedMemory(inner, [None, *(_reply(made, target, inner, a, log) for a in scenario.answers)])
    made.append(target.make(scripted, layout, scenario.setup))
    return drive(made[0], list(scenario.requests))


def _as_played(scenario: Scenario, target: Target, layout: Layout, memory: sysmem.Memory) -> Scenario:
    """``scenario`` with its answers as they were used: answers never asked dropped, answers whose
    window had no free spot made the kernel's. It behaves the same; a counterexample reads simpler."""
    log: list[Answer] = []
    try:
        play(scenario, target, layout, memory, log).arena.close()
    except Exception:
        return scenario
    return dataclasses.replace(scenario, answers=tuple(log))


class Unplayable(Exception):
    """The address space, not the rule, stopped a scenario: no room for the first reservation,
    an answer's spot taken meanwhile, the kernel out of map entries."""


def failures(scenario: Scenario, target: Target, layout: Layout, memory: sysmem.Memory | None = None,
             *, read_maps: bool = True) -> list[Violation]:
    """What is wrong after ``scenario``: ``verify``'s violations, allocations whose bytes changed,
    an exception the manager raised, the rule's failure ("rule-failed"). ``Unplayable`` if the
    address space stopped it."""
    try:
        replay = play(scenario, target, layout, memory)
    except (ReservationFailed, OSError, AnswerTaken) as exc:
        raise Unplayable(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        return [Violation("raised", f"{type(exc).__name__}: {exc}")]
    with replay.arena:
        found = verify(replay.arena, read_maps=read_maps)
        found += [Violation("bytes-changed", f"allocation at {p:#x} does not read back what was written")
                  for p in replay.changed()]
    if replay.failed is not None:
        # A user's rule that raises (or answers neither None nor a str) on some scenario is a finding.
        found.append(Violation("rule-failed", str(replay.failed)))
    return found


# -- the hunt ---------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """How far a hunt is: examples run, and whether it is shrinking a counterexample."""

    examples: int
    seconds: float
    shrinking: bool

    @property
    def rate(self) -> float:
        """Scenarios per second so far."""
        return self.examples / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class HuntResult:
    """What a hunt found: ``counterexample`` (minimal) and its ``violations``, or ``None``."""

    target: str
    layout: Layout
    seed: int
    examples: int  # scenarios run before the first counterexample (or all, if none)
    shrink_steps: int  # scenarios run while shrinking
    skipped: int  # scenarios the address space stopped (Unplayable)
    seconds: float
    stopped: str  # "found", "examples" or "time" ("stopped": one of several jobs, stopped by another's find)
    counterexample: Scenario | None = None
    violations: list[Violation] = dataclasses.field(default_factory=list)
    jobs: int = 1  # processes the search ran in (seed: the finding one's, else the first's)

    @property
    def rate(self) -> float:
        """Scenarios per second, shrinking included."""
        return (self.examples + self.shrink_steps) / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, object]:
        """The result as a JSON-ready dict (what ``arena hunt --json`` prints)."""
        return {
            "target": self.target, "layout": self.layout.name, "seed": self.seed, "examples": self.examples,
            "shrink_steps": self.shrink_steps, "skipped": self.skipped, "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1), "stopped": self.stopped, "jobs": self.jobs, "found": self.counterexample is not None,
            "counterexample": None if self.counterexample is None else self.counterexample.as_json(),
            "violations": [{"kind": v.kind, "detail": v.detail} for v in self.violations],
        }


# Violations that cost a live allocation (the crash of Go issue 20259), not only a bound.
LOSSES = frozenset({"not-heap", "not-mapped", "bytes-changed", "overlap"})


class _Found(Exception):
    """A scenario failed: hypothesis shrinks it (one class raised on one line: one bug to hypothesis)."""

    def __init__(self, scenario: Scenario, violations: list[Violation]) -> None:
        super().__init__("; ".join(map(str, violations)))
        self.scenario, self.violations = scenario, violations


class _Counts(TypedDict):
    """A hunt's tallies: scenarios run, the run that first failed (0: none yet), those skipped as
    unplayable, and when progress was last shown (time.monotonic)."""

    run: int
    found_at: int
    skipped: int
    shown: float


class _OutOfTime(BaseException):
    """The time budget ran out before anything was found: not an Exception, so hypothesis lets it through."""


class _Stopped(BaseException):
    """Another job of the same hunt found a counterexample first (or the hunt was interrupted)."""


def require_hypothesis() -> None:
    """``ImportError`` saying what to install, unless hypothesis is there."""
    try:
        import hypothesis
        import hypothesis.strategies  # noqa: F401
    except ImportError:
        raise ImportError(f"hunting needs hypothesis: pip install '{_distribution()}[hunt]'") from None


def _distribution() -> str:
    """The name this package is installed under (what pip needs for the extra)."""
    from importlib.metadata import packages_distributions

    return (packages_distributions().get(__package__) or [__package__])[0]


def hunt(
    rule: str | rules.Rule | None = None,
    layout: Layout = LAYOUT_32,
    *,
    target: Target | None = None,
    examples: int = 1000,
    seconds: float | None = None,
    seed: int | None = None,
    read_maps: bool = True,
    progress: Callable[[Progress], None] | None = None,
    jobs: int = 1,
    tally: Callable[[int, bool], bool] | None = None,
) -> HuntResult:
    """Search for a scenario that breaks ``rule`` (default "fixed"; "go1.11": ``heap_target()``) or ``target``
    on ``layout``, with real memory.

    Stops at the first counterexample (then shrunk to a minimal one), after
    ``examples`` scenarios, or after ``seconds``. ``seed`` makes it repeatable;
    ``read_maps=False`` checks without reading /proc/self/maps (see
    ``verify``). ``progress`` is called about once a second. ``jobs``: that
    many processes (forked: see ``arena.harness.jobs``), each searching with
    a seed of its own (``seed``, ``seed + 2**32``, ...) for its share of
    ``examples``; the first counterexample found wins, and ``seed`` in the
    result is its job's (``jobs=1`` with it repeats that search). ``tally``
    is what a job reports through (``jobs.Tally``). ``ImportError`` without
    hypothesis; ``ValueError``/``TypeError`` for a bad rule, layout, target,
    budget or number of jobs (each argument is read once).
    """
    require_hypothesis()
    import hypothesis

    if target is not None and rule is not None:
        raise ValueError("give a rule or a target, not both")
    if target is not None and not isinstance(target, Target):
        raise TypeError(f"target must be a Target (arena_target(rule), heap_target() or one of your own), not {target!r}")
    layout = check_layout(layout)
    target = target or target_for("fixed" if rule is None else rule)
    # Each made a plain number as soon as its type is known: a subclass's own methods are never asked again.
    number = examples if isinstance(examples, int) and not isinstance(examples, bool) else 0
    if int.__index__(number) <= 0:
        raise ValueError(f"examples must be a positive int, got {examples!r}")
    examples = int.__index__(number)
    if seconds is not None:
        given = seconds
        seconds = float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else 0.0
        if not seconds > 0:
            raise ValueError(f"seconds must be a positive number, got {given!r}")
    seed = random.getrandbits(32) if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    seed = int.__index__(seed)
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise TypeError(f"jobs must be an int, got {jobs!r}")
    jobs = int.__index__(jobs)
    if jobs <= 0:
        raise ValueError(f"jobs must be positive, got {jobs}")
    if jobs > 1 and examples > 1:
        return _in_jobs(target, layout, min(jobs, examples), examples, seconds, seed, read_maps, progress)
    memory = sysmem.default(address_bits=layout.address_bits)
    t0 = time.monotonic()
    deadline = None if seconds is None else t0 + seconds
    count: _Counts = {"run": 0, "found_at": 0, "skipped": 0, "shown": t0}
    settings = hypothesis.settings(
        max_examples=examples, deadline=None, database=None, report_multiple_bugs=False,
        phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink], verbosity=hypothesis.Verbosity.quiet,
        suppress_health_check=list(hypothesis.HealthCheck),
    )

    def search(seed: int, losses_only: bool) -> _Found | None:
        """One hypothesis search: the minimal failure, or ``None``; ``_OutOfTime`` past the deadline."""

        def test(scenario: Scenario) -> None:
            count["run"] += 1
            if tally is not None and not tally(count["run"], bool(count["found_at"])):
                raise _Stopped
            now = time.monotonic()
            if progress is not None and now - count["shown"] >= 1.0:
                count["shown"] = now
                progress(Progress(count["run"], now - t0, bool(count["found_at"])))
            if deadline is not None and now > deadline and not count["found_at"]:
                raise _OutOfTime
            try:
                found = failures(scenario, target, layout, memory, read_maps=read_maps)
            except Unplayable:
                count["skipped"] += 1
                hypothesis.reject()
            if found and (not losses_only or any(v.kind in LOSSES for v in found)):
                count["found_at"] = count["found_at"] or count["run"]
                if tally is not None and not tally(count["run"], True):
                    raise _Stopped  # another job found one first: its counterexample is the hunt's
                raise _Found(scenario, found)

        try:
            with same_search():
                hypothesis.seed(seed)(settings(hypothesis.given(scenarios(layout, target))(test)))()
        except _Found as exc:
            return exc
        except hypothesis.errors.FlakyFailure as exc:
            # The minimal scenario did not fail again (the address space can change under a
            # scenario): the failure seen is still one.
            seen = [e for e in exc.exceptions if isinstance(e, _Found)]
            if not seen:
                raise
            return seen[0]
        return None

    result = HuntResult(target.name, layout, seed, 0, 0, 0, 0.0, "examples")
    found = None
    try:
        found = search(seed, losses_only=False)
        if found is not None and {v.kind for v in found.violations} == {"arena_used-decreased"}:
            # The smallest failure only lowered arena_used. A counterexample that loses live
            # memory shows what that costs: look for one within the same budget, else keep this.
            first_at, count["found_at"] = count["found_at"], 0
            try:
                found = search(seed + 1, losses_only=True) or found
            finally:
                count["found_at"] = count["found_at"] or first_at
    except _OutOfTime:
        result.stopped = "time"
    except _Stopped:
        result.stopped, found = "stopped", None
    finally:
        result.seconds = time.monotonic() - t0
        found_at = count["found_at"]
        result.examples = found_at or count["run"]
        result.shrink_steps = count["run"] - found_at if found_at else 0
        result.skipped = count["skipped"]
    if found is not None:
        result.stopped, result.violations = "found", found.violations
        result.counterexample = _as_played(found.scenario, target, layout, memory)
    return result


def _in_jobs(target: Target, layout: Layout, jobs: int, examples: int, seconds: float | None, seed: int,
             read_maps: bool, progress: Callable[[Progress], None] | None) -> HuntResult:
    """``hunt`` in ``jobs`` processes: job i searches its share of ``examples`` with seed ``seed + i * 2**32``."""
    seeds = [seed + (i << 32) for i in range(jobs)]
    shares = [examples // jobs + (i < examples % jobs) for i in range(jobs)]
    t0 = time.monotonic()

    def work(i: int, tally: Callable[[int, bool], bool]) -> HuntResult:
        return hunt(layout=layout, target=target, examples=shares[i], seconds=seconds, seed=seeds[i],
                    read_maps=read_maps, tally=tally)

    def show(done: int, found: bool) -> None:
        if progress is not None:
            progress(Progress(done, time.monotonic() - t0, found))

    results, won = parallel.run(work, jobs, show)
    # Scenarios run: every job's until the find (or all of them), the winner's shrinking apart.
    searched, skipped = sum(r.examples for r in results), sum(r.skipped for r in results)
    if won is not None:
        return dataclasses.replace(results[won], examples=searched, skipped=skipped, seconds=time.monotonic() - t0,
                                   jobs=jobs)
    stopped = "time" if any(r.stopped == "time" for r in results) else "examples"
    return HuntResult(target.name, layout, seed, searched, 0, skipped, time.monotonic() - t0, stopped, jobs=jobs)
