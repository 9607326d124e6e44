"""How a real-program hunt judges one run: passed, failed (and how it ended), or refused memory.

A run *fails* when the program exits non-zero, dies of a signal, prints a
runtime's fatal line, or times out (``Outcome.failed``). A failure is
**refused memory** when the plan failed a call with ENOMEM in that run and
the program said it gave up for want of memory (``REFUSALS``, plus the
caller's own patterns; its fatal line must be one of them when it has one),
however it then ended: the program's documented reaction to a refused
allocation, not a placement bug. A crash after ENOMEM that says nothing of
memory (a SIGSEGV from an unchecked MAP_FAILED) is a failure like any other.

Two failures are "the same" when they share an *ending* (the same exit
status, signal, or a timeout); the *signature* adds what the program said,
numbers blanked, to tell the ways apart in a report.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from ..tracer import Outcome
from .program_plan import Plan

# A program that gives up for want of memory says one of these (case ignored). Go's runtime throws
# "out of memory" (and "pageAlloc: out of memory", "out of memory allocating heap arena map", ...),
# "runtime: cannot allocate memory" (persistentalloc), "cannot reserve arena virtual address space" (Go
# 1.8's first reservation), "failed to reserve page summary memory" and "failed to allocate ..." (Go
# 1.19); strerror(ENOMEM) is "Cannot allocate memory", glibc's loader says "cannot allocate TLS data
# structures"; C++ throws std::bad_alloc; pthread_create answers EAGAIN ("Resource temporarily
# unavailable") when a thread's stack cannot be mapped.
REFUSALS = (r"out of memory", r"cannot allocate\b", r"cannot reserve\b", r"failed to (reserve|allocate)\b",
            r"std::bad_alloc", r"resource temporarily unavailable")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one run is judged: ``kind`` is passed, refused or failed; ``ending`` how a failure ended (what a
    repeat must share); ``signature`` that and what it said (see ``signature``)."""

    kind: str
    ending: str = ""
    signature: str = ""


def ending(outcome: Outcome) -> str:
    """How a failed run ended: ``exited with status 2``, ``killed by SIGSEGV``, ``timed out``, or why it was stopped."""
    if outcome.timed_out:
        return "timed out"
    if outcome.stopped and outcome.signal is not None:
        return f"stopped ({outcome.stopped})"
    return outcome.ended()


def last_words(outcome: Outcome) -> str | None:
    """What a failed run said: its fatal line, else the last line of its stderr, else of its stdout."""
    if outcome.fatal:
        return outcome.fatal
    for stream in (outcome.stderr, outcome.stdout):
        lines = [line.strip() for line in (stream or b"").decode("utf-8", "replace").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return None


def signature(outcome: Outcome) -> str:
    """How a run failed: how it ended and what it said (``last_words``), with addresses and numbers
    blanked: two runs of one bug share it."""
    said = last_words(outcome)
    text = ending(outcome) + (f": {said}" if said else "")
    return re.sub(r"\d+", "N", re.sub(r"0x[0-9a-fA-F]+", "0x_", text))


def judge(outcome: Outcome, refusals: Sequence[re.Pattern[str]]) -> Verdict:
    """``outcome`` passed, failed, or was refused memory (see the module's docstring)."""
    if not outcome.failed:
        return Verdict("passed")
    # However it then ended: a runtime may hang or abort after saying so (Go 1.8 hangs after "fatal error:
    # runtime: cannot allocate memory" when an early 256 KiB allocation is refused), still for want of memory.
    if any(r.decision == "fail" for r in outcome.calls):
        lines = [outcome.fatal] if outcome.fatal else _lines(outcome)
        if any(p.search(line) for p in refusals for line in lines):
            return Verdict("refused", ending(outcome), signature(outcome))
    return Verdict("failed", ending(outcome), signature(outcome))


def _lines(outcome: Outcome) -> list[str]:
    text = b"\n".join(x for x in (outcome.stdout, outcome.stderr) if x)
    return text.decode("utf-8", "replace").splitlines()


@dataclasses.dataclass
class Finding:
    """A failing plan, the run that showed it, how it ended, how often it failed that way again, and
    every failure seen in its runs (``seen``: signature -> runs)."""

    plan: Plan
    outcome: Outcome
    verdict: Verdict
    index: int  # the scenario's number in the search (-1: found while shrinking)
    failed: int = 1  # runs of it that ended this way ...
    runs: int = 1  # ... of this many
    seen: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.seen = self.seen or {self.verdict.signature: 1}

    @property
    def signature(self) -> str:
        return self.verdict.signature

    @property
    def rate(self) -> float:
        return self.failed / self.runs

    def tally(self, verdicts: Sequence[Verdict]) -> int:
        """Count ``verdicts`` (of more runs of this plan) into ``seen``; how many ended as this one did."""
        same = 0
        for v in verdicts:
            if v.kind == "failed":
                self.seen[v.signature] = self.seen.get(v.signature, 0) + 1
                same += v.ending == self.verdict.ending
        return same
