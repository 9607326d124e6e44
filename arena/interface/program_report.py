"""What ``arena hunt --program`` prints: the counterexample found in a real program (or why none), as ``arena hunt``
shows a rule's, with the refused-memory and flaky failures seen on the way."""
from __future__ import annotations

from ..harness.program_hunt import Finding, ProgramHuntResult, ProgramProgress
from ..harness.program_verdict import last_words
from ..words import plural

# How much of the program's stderr is shown, from its fatal line on.
LAST_WORDS = 8


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``."""
    s = round(seconds)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60} s"


def progress_line(p: ProgramProgress) -> str:
    counts = ((p.refused, f"{p.refused:,} refused memory"), (p.flaky, f"{p.flaky:,} flaky"))
    extra = "".join(f", {text}" for n, text in counts if n)
    return f"arena hunt: {p.phase}: {plural(p.scenarios, 'scenario')}, {plural(p.runs, 'run')} in all, {p.rate:.2f}/s{extra}"


def _last_words(f: Finding) -> list[str]:
    """The program's stderr from its fatal line on (else its last lines), at most ``LAST_WORDS`` lines."""
    text = (f.outcome.stderr or b"").decode("utf-8", "replace").splitlines()
    if not text:
        return []
    start = next((i for i, line in enumerate(text) if f.outcome.fatal and line.strip() == f.outcome.fatal), None)
    shown = text[start:start + LAST_WORDS] if start is not None else text[-LAST_WORDS:]
    head = "its stderr" + (" from the fatal line on:" if start is not None else ", last lines:")
    return [head] + [f"  {line}" for line in shown]


def _plan(f: Finding, indent: str = "  ") -> list[str]:
    return [indent + line for line in f.plan.describe()]


def _variety(f: Finding, indent: str = "") -> list[str]:
    """The failures its runs showed, when they differ (addresses and numbers shown as 0x_ and N)."""
    if len(f.seen) < 2:
        return []
    return [f"{indent}its runs failed {len(f.seen)} ways:"] + [f"{indent}  {n} x {text}" for text, n in f.seen.items()]


def _seen(result: ProgramHuntResult) -> list[str]:
    lines = []
    if result.refused:
        lines += ["", f"refused memory: {plural(result.refused_runs, 'run')} failed a call with ENOMEM and the program gave up "
                      "for want of memory, as it documents: not a placement bug, not a counterexample. First of each kind:"]
        for f in result.refused:
            lines += [f"  {f.outcome.describe()}", f"    it said: {last_words(f.outcome)}"] + _plan(f, "    ")
    if result.flaky:
        lines += ["", f"flaky: {plural(len(result.flaky), 'failure')} did not repeat on every rerun (not counterexamples):"]
        for f in result.flaky:
            lines += [f"  failed {f.failed} of {plural(f.runs, 'run')} ({f.rate:.0%}): {f.outcome.describe()}",
                      f"    it said: {last_words(f.outcome)}"] + _plan(f, "    ")
            lines += _variety(f, "    ")
    return lines


def hunt_text(result: ProgramHuntResult, time_budget: float | None) -> str:
    """The whole report, lines of at most a sentence each (the caller wraps nothing)."""
    part, parts = result.shard
    head = [f"program {result.executable} ({result.bits}-bit): {result.observation.summary()}",
            f"seed {result.seed} (repeat with --seed {result.seed}), shard {part}/{parts}, {plural(result.jobs, 'job')}, "
            f"{result.rate:.2f} scenarios/s, each run limited to {result.timeout:.0f} s; "
            f"{result.outside_share:.1%} of the runs' time outside the program"]
    ce = result.counterexample
    if ce is None:
        why = {"examples": f"for {plural(result.scenarios, 'scenario')}",
               "time": f"for {plural(result.scenarios, 'scenario')} (the --time {time_budget or 0:g} s ran out)",
               "exhausted": f"for all {plural(result.scenarios, 'scenario')} this search can draw"}[result.stopped]
        lines = [f"no counterexample: the program held {why} ({duration(result.seconds)})", *head]
        lines += _seen(result)
        if result.trace:
            lines += ["", f"the first flaky failure's run saved: {result.trace} (replay it with: arena replay {result.trace})"]
        return "\n".join(lines) + "\n"
    lines = [f"counterexample found after {plural(result.scenarios, 'scenario')} ({duration(result.search_seconds)}), "
             f"shrunk in {plural(result.shrink_runs, 'more run')} ({duration(result.shrink_seconds)}); "
             f"its trace replayed the failure {ce.failed} of {plural(ce.runs, 'time')}", *head, "",
             "minimal plan (each answer is real: the kernel placed the mapping there, or the call failed):"]
    lines += _plan(ce)
    if result.found_as is not None and result.found_as != ce.plan:
        lines += ["as found, before shrinking:"] + ["  " + line for line in result.found_as.describe()]
    lines += ["", f"the program {ce.outcome.describe()}"] + _variety(ce) + ["the calls rewritten:"]
    lines += [f"  {r.describe()}" for r in ce.outcome.calls if r.rewritten]
    lines += _last_words(ce)
    lines += _seen(result)
    if result.trace:
        lines += ["", f"trace saved: {result.trace} (replay it with: arena replay {result.trace})"]
    return "\n".join(lines) + "\n"
