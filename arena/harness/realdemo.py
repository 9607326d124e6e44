"""The real-program demo: Go's test program from each toolchain, under an adversary that moves its own heap reservations.

Each ``Runtime`` is one row: the test program (``arena/data/programs/grow.go``)
built by a toolchain for an architecture, run under the tracer with an
adversary chosen to move *that* runtime's heap reservations, and the model
fed the run's answers under the rule that describes the runtime. A row
reproduces when the program ends as the runtime is known to (Go 1.8 dies
with ``heapBitsForSpan: base out of range``; the others survive), did what
it is known to do with the answers (lowered its heap bound, released the
region, allocated in it, released misplaced heap arenas), the adversary
rewrote at least one of its calls (a survivor whose reservations were
never moved proves nothing), and the model agrees.

The old toolchains' programs are 386 builds: on amd64 Go 1.8 to 1.10 map
their heap without a reservation to move (docs/real-programs.md).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from .. import sysmem, tracer
from ..tracer import toolchains as chains
from ..words import plural
from .real import CURSOR, LOWERED, MISSED, RELEASED, Beside, beside

# A Go program's run takes 2-9 s here; a stuck one is stopped.
TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One row of the demo: ``toolchain`` (``arena.tracer.toolchains``) and ``arch`` build the program;
    ``adversary`` moves its heap reservations; ``rule`` is the model's name for the runtime; ``expect`` what
    the program is known to do with the answers (``arena.harness.real``'s words) and ``fatal`` the fatal line
    it dies with (None: it survives)."""

    name: str
    toolchain: str
    arch: str
    adversary: str
    rule: str
    expect: str
    fatal: str | None = None


RUNTIMES = (
    Runtime("Go 1.8", "go1.8", "386", "gap", "legacy", LOWERED, "heapBitsForSpan: base out of range"),
    Runtime("Go 1.8 + fix e5a5c03", "e5a5c03", "386", "gap", "fixed", RELEASED),
    Runtime("Go 1.9", "go1.9", "386", "gap", "go1.9", CURSOR),
    # Go 1.11+ heap arenas: each hinted heap-arena reservation moved below its hint (the "low mmap").
    Runtime("Debian's Go", "system", "386", "below,min=4M", "go1.11", MISSED),
    Runtime("Debian's Go", "system", "amd64", "below,min=64M", "go1.11", MISSED),
)


@dataclasses.dataclass
class Attempt:
    """One run of a row: the program's ``outcome``, the model ``beside`` it, and whether it ``reproduced`` (else ``why`` not)."""

    outcome: tracer.Outcome
    beside: Beside | None
    reproduced: bool
    why: str


@dataclasses.dataclass
class Row:
    """A runtime's row: what ``go version`` says, the ``program`` built, its ``attempts``, or why it is ``missing``."""

    runtime: Runtime
    version: str | None = None
    program: Path | None = None
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    missing: str | None = None

    @property
    def reproduced(self) -> int:
        return sum(a.reproduced for a in self.attempts)


def judge(rt: Runtime, outcome: tracer.Outcome, model: Beside | None) -> tuple[bool, str]:
    """Whether a run reproduced ``rt``'s known behaviour; if not, why not (in words)."""
    if outcome.rewritten == 0:
        return False, f"the adversary {rt.adversary} moved none of its calls"
    if rt.fatal is not None and not (outcome.fatal and rt.fatal in outcome.fatal):
        return False, (f"expected it to die with {rt.fatal!r}; it {outcome.ended()}"
                       + (f" ({outcome.fatal})" if outcome.fatal else ""))
    if rt.fatal is None and outcome.failed:
        return False, (f"expected it to survive; it {outcome.ended()}"
                       + (f" ({outcome.fatal or outcome.stopped})" if outcome.fatal or outcome.stopped else ""))
    if model is None:
        return False, "no Go heap reservations recognised in its calls"
    if model.real != rt.expect:
        return False, f"expected the program to have {rt.expect} the region; it {model.real_words}"
    run = model.run(rt.rule)
    if run is None or not run.agrees:
        return False, f"the model under {rt.rule} disagrees: {run.words if run else 'not run'}"
    return True, ""


def prepare(rt: Runtime) -> Row:
    """The row with its program built, or ``missing`` saying how to get what it needs."""
    row = Row(rt)
    if rt.arch == "amd64" and sysmem.NATIVE_BITS == 32:
        row.missing = "an amd64 program cannot be traced from a 32-bit Python"
        return row
    try:
        root = chains.toolchains().get(rt.toolchain)
        row.program = chains.build_program(rt.toolchain, rt.arch)
        if root is not None:
            # "go version go1.8-7d8bfdde45 linux/386": what lies between "go version" and the platform.
            words = chains.go_version(root).split()
            row.version = " ".join(words[2:-1]) or None
    except chains.ToolchainMissing as exc:
        row.missing = str(exc)
    except chains.BuildFailed as exc:
        row.missing = str(exc).splitlines()[0]
    return row


def attempt(rt: Runtime, program: Path, timeout: float = TIMEOUT) -> Attempt:
    """Run ``program`` once under ``rt``'s adversary (output captured) and put the model beside it."""
    outcome = tracer.run([str(program)], rt.adversary, timeout=timeout, capture=True)
    model = beside(outcome, (rt.rule,))
    ok, why = judge(rt, outcome, model)
    return Attempt(outcome, model, ok, why)


def demo(runs: int = 1, progress: Callable[[str], None] | None = None, runtimes: tuple[Runtime, ...] = RUNTIMES) -> list[Row]:
    """Every row, each run ``runs`` times; ``progress`` hears a line before each run."""
    rows = [prepare(rt) for rt in runtimes]
    ready = [r for r in rows if r.program is not None]
    for k in range(runs):
        for i, row in enumerate(ready):
            assert row.program is not None
            if progress is not None:
                of = f" (run {k + 1} of {runs})" if runs > 1 else ""
                progress(f"{row.runtime.name} {row.runtime.arch} under {row.runtime.adversary}{of}: "
                         f"{i + 1} of {plural(len(ready), 'program')}")
            row.attempts.append(attempt(row.runtime, row.program))
    return rows
