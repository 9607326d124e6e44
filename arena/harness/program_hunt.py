"""Hunting a real program: run it under generated plans of mmap rewrites, in parallel, and shrink the first failure.

``hunt_program(argv, ...)`` runs the program once under ``observe`` (it must
pass), draws plans from the calls it saw (``program_search``), and runs each
plan's scenario: one traced run of the program (``arena.tracer.run``), up to
``jobs`` at once, each judged by ``program_verdict``: passed, refused memory
(counted, never a counterexample) or failed. A failure is then:

- **flaky** when the plan, run ``reruns`` times more, does not end the same
  way every time: reported with its rate, and the search goes on;
- else shrunk (``program_search.simpler``: fewer rewrites, simpler answers)
  while it still fails the same way, its last run saved as a process trace,
  and that trace replayed ``reruns`` times (``arena.tracer.replay``): the
  **counterexample** if every replay repeats it, else flaky after all, and
  the search goes on.

The fatal line may differ from run to run: one heap corrupted the same way
fails where the runtime first looks (Go 1.8 says "heapBitsForSpan: base out
of range" or "addspecial on invalid pointer" for one plan, by timing); every
failure seen is kept (``Finding.seen``). Nothing is written but the trace
asked for: no database, no cache.
"""
from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import tracer
from ..tracer import Outcome
from ..tracer import arguments as tracer_arguments
from .program_plan import FAMILIES, Plan, PlanAdversary, applied
from .program_search import Observation, Search, simpler
from .program_verdict import REFUSALS, Finding, Verdict, judge

__all__ = ["ANSWERS", "REFUSALS", "Finding", "ProgramFailsAlone", "ProgramHuntResult", "ProgramProgress", "Verdict",
           "default_jobs", "hunt_program", "judge"]

# The kinds of answer a hunt tries, all unless told (``answers``).
ANSWERS = tuple(FAMILIES)
# A run's time limit, unless given: this many times the plain run's, and at least MIN_TIMEOUT seconds.
TIMEOUT_FACTOR, MIN_TIMEOUT = 5.0, 30.0
# The plain run's own limit, unless given: a program that takes longer is no hunt's subject.
PLAIN_TIMEOUT = 600.0
# Shrinking stops after this many runs, keeping the simplest failing plan so far.
MAX_SHRINK_RUNS = 200
# What each run keeps of the program's output (enough for its last words).
CAPTURE_LIMIT = 256 << 10


class ProgramFailsAlone(Exception):
    """The program fails with no rewrite at all: there is nothing to hunt. ``outcome`` is that run."""

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclasses.dataclass
class ProgramProgress:
    """How far a hunt is: ``phase`` (searching, confirming, shrinking, replaying), runs so far."""

    phase: str
    scenarios: int
    runs: int
    seconds: float
    refused: int
    flaky: int

    @property
    def rate(self) -> float:
        """Scenarios per second so far."""
        return self.scenarios / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class ProgramHuntResult:
    """What a hunt of a real program found (see ``hunt_program``)."""

    argv: list[str]
    executable: str
    bits: int
    seed: int
    shard: tuple[int, int]
    jobs: int
    timeout: float
    observation: Observation
    observed: Outcome
    scenarios: int = 0  # searched before the counterexample (or all, if none)
    runs: int = 0  # every traced run but the plain one: scenarios, reruns, shrinking, replays
    shrink_runs: int = 0
    seconds: float = 0.0
    search_seconds: float = 0.0
    shrink_seconds: float = 0.0
    stopped: str = "examples"  # found, examples, time, exhausted
    counterexample: Finding | None = None
    found_as: Plan | None = None  # the counterexample's plan before shrinking
    trace: str | None = None  # where its run was saved
    flaky: list[Finding] = dataclasses.field(default_factory=list)
    refused: list[Finding] = dataclasses.field(default_factory=list)  # the first of each signature
    refused_runs: int = 0
    program_seconds: float = 0.0  # the programs' own wall time, summed over every run
    busy_seconds: float = 0.0  # the runs' wall time as the hunt saw it (tracer, fork, judging), summed

    @property
    def rate(self) -> float:
        """Scenarios searched per second of search."""
        return self.scenarios / self.search_seconds if self.search_seconds else 0.0

    @property
    def outside_share(self) -> float:
        """The share of the hunt's run time spent outside the programs (tracer, search, judging)."""
        return 1 - self.program_seconds / self.busy_seconds if self.busy_seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        def finding(f: Finding | None) -> dict[str, Any] | None:
            if f is None:
                return None
            return {"plan": f.plan.as_json(), "plan_text": f.plan.describe(), "ended": f.outcome.describe(),
                    "fatal": f.outcome.fatal, "signature": f.signature, "scenario": f.index,
                    "failed": f.failed, "runs": f.runs, "seen": f.seen}

        return {
            "argv": self.argv, "executable": self.executable, "bits": self.bits, "seed": self.seed,
            "shard": f"{self.shard[0]}/{self.shard[1]}", "jobs": self.jobs, "timeout": self.timeout,
            "observed": self.observation.summary(), "scenarios": self.scenarios, "runs": self.runs,
            "shrink_runs": self.shrink_runs, "seconds": round(self.seconds, 3),
            "search_seconds": round(self.search_seconds, 3), "shrink_seconds": round(self.shrink_seconds, 3),
            "rate": round(self.rate, 3), "outside_share": round(self.outside_share, 4), "stopped": self.stopped,
            "found": self.counterexample is not None, "counterexample": finding(self.counterexample),
            "found_as": None if self.found_as is None else self.found_as.as_json(), "trace": self.trace,
            "flaky": [finding(f) for f in self.flaky], "refused": [finding(f) for f in self.refused],
            "refused_runs": self.refused_runs,
        }


def _parse_shard(shard: object) -> tuple[int, int]:
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise ValueError(f"shard must be I/N (this machine's part, from 1, of N), got {shard!r}")
        shard = (int(m.group(1)), int(m.group(2)))
    if not isinstance(shard, tuple) or len(shard) != 2:
        raise TypeError(f"shard must be 'I/N' or a pair (I, N), got {shard!r}")
    i = tracer_arguments.count("shard number", shard[0], 1, 1 << 20)
    n = tracer_arguments.count("shard count", shard[1], 1, 1 << 20)
    if i > n:
        raise ValueError(f"shard {i}/{n}: the part must be from 1 to {n}")
    return i, n


def default_jobs() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) or 1


class _Runs:
    """Runs plans (and replays) of one program, ``jobs`` at once, and keeps the hunt's accounts."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None, cwd: str | None, timeout: float,
                 jobs: int) -> None:
        self.argv, self.env, self.cwd, self.timeout = argv, env, cwd, timeout
        self.jobs = jobs
        self.pool = futures.ThreadPoolExecutor(jobs, thread_name_prefix="arena-hunt")
        self.runs = 0
        self.program_seconds = 0.0
        self.busy_seconds = 0.0
        self._lock = threading.Lock()

    def _account(self, t0: float, outcome: Outcome) -> Outcome:
        # Runs end in several threads at once.
        with self._lock:
            self.runs += 1
            self.program_seconds += outcome.wall_time
            self.busy_seconds += time.monotonic() - t0
        return outcome

    def _run(self, plan: Plan) -> Outcome:
        t0 = time.monotonic()
        outcome = tracer.run(self.argv, PlanAdversary(plan), env=self.env, cwd=self.cwd, timeout=self.timeout,
                             capture=True, capture_limit=CAPTURE_LIMIT)
        return self._account(t0, outcome)

    def _replay(self, trace: Outcome | str) -> tracer.Replay:
        t0 = time.monotonic()
        r = tracer.replay(trace, env=self.env, cwd=self.cwd, timeout=self.timeout, capture=True,
                          capture_limit=CAPTURE_LIMIT)
        self._account(t0, r.outcome)
        return r

    def submit(self, plan: Plan) -> futures.Future[Outcome]:
        return self.pool.submit(self._run, plan)

    def all(self, plans: Sequence[Plan]) -> list[Outcome]:
        return [f.result() for f in [self.submit(p) for p in plans]]

    def replays(self, trace: Outcome | str, times: int) -> list[tracer.Replay]:
        return [f.result() for f in [self.pool.submit(self._replay, trace) for _ in range(times)]]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def hunt_program(
    argv: Sequence[str | os.PathLike[str]],
    *,
    examples: int | None = None,
    seconds: float | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    shard: str | tuple[int, int] = (1, 1),
    timeout: float | None = None,
    reruns: int = 3,
    answers: Sequence[str] = ANSWERS,
    min_size: int = 0,
    refusals: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    save_trace: str | os.PathLike[str] | None = None,
    progress: Callable[[ProgramProgress], None] | None = None,
) -> ProgramHuntResult:
    """Search for a placement of the program's mmap answers that makes it fail; shrink and replay the first.

    ``examples``: at most this many scenarios (default 200 unless ``seconds``
    is given; then as many as fit); ``seconds``: stop searching after this
    long (a found failure is still shrunk). ``seed`` (default: random) and
    ``shard`` (``"I/N"``: this machine's part of a search split N ways) fix
    which scenarios run. ``jobs``: runs at once (default: the cores).
    ``timeout``: each run's limit in seconds (default: 5 times the plain
    run's, at least 30). ``reruns``: how many times a failure is run again
    to tell a repeatable one from a flaky one, and its trace replayed.
    ``answers``: the families of answers used (``moved``: below, above,
    into a hole, lowest, highest; ``misaligned``; ``refused``: ENOMEM).
    ``min_size``: only calls of at least this many bytes are rewritten.
    ``refusals``: more regular expressions for a line saying the program
    gave up for want of memory (see ``REFUSALS``). ``save_trace``: where the
    counterexample's run is saved (else the first flaky one's).

    Raises what ``arena.tracer.run`` raises for a program it cannot run,
    ``ProgramFailsAlone`` when the plain run fails, ``TypeError``/
    ``ValueError`` for a bad argument (a pattern that is not a regular
    expression too), ``OSError`` if the trace cannot be written.
    """
    args = tracer_arguments.argv(argv)
    limit = None if examples is None else tracer_arguments.count("examples", examples, 1, 1 << 40)
    budget = None if seconds is None else tracer_arguments.seconds("seconds", seconds, allow_zero=False)
    workers = default_jobs() if jobs is None else tracer_arguments.count("jobs", jobs, 1, 1024)
    part, parts = _parse_shard(shard)
    if parts > 1 and seed is None:
        raise ValueError(f"shard {part}/{parts}: give the seed, the same on every machine: a shard of a random search "
                         "splits nothing")
    seed = int.from_bytes(os.urandom(4), "big") if seed is None else tracer_arguments.count("seed", seed, 0, 1 << 64)
    run_limit = None if timeout is None else tracer_arguments.seconds("timeout", timeout, allow_zero=False)
    again = tracer_arguments.count("reruns", reruns, 1, 100)
    if isinstance(answers, str):
        answers = [a.strip() for a in answers.split(",")]
    families = frozenset(answers)
    if not families or not families <= set(FAMILIES):
        raise ValueError(f"answers must be some of {', '.join(FAMILIES)}, got {', '.join(map(str, answers)) or 'none'}")
    smallest = tracer_arguments.count("min_size", min_size, 0, 1 << 64)
    if isinstance(refusals, str):
        raise TypeError("refusals must be a list of regular expressions, not one string")
    patterns = []
    for p in (*REFUSALS, *refusals):
        try:
            patterns.append(re.compile(p, re.IGNORECASE))
        except (re.error, TypeError) as exc:
            raise ValueError(f"out-of-memory pattern {p!r} is not a regular expression ({exc})") from None
    where = tracer_arguments.cwd(cwd)
    path = None if save_trace is None else tracer_arguments.path("save_trace", save_trace)
    if limit is None and budget is None:
        limit = 200

    t0 = time.monotonic()
    observed = tracer.run(args, "observe", env=env, cwd=where, timeout=run_limit or PLAIN_TIMEOUT, capture=True,
                          capture_limit=CAPTURE_LIMIT)
    if observed.failed:
        raise ProgramFailsAlone(f"the program fails with no rewrite at all ({observed.describe()}): a hunt needs "
                                "a program that passes on its own", observed)
    per_run = run_limit or max(MIN_TIMEOUT, TIMEOUT_FACTOR * observed.wall_time)
    observation = Observation.of(observed, smallest)
    result = ProgramHuntResult(args, observed.executable, observed.bits, seed, (part, parts), workers, per_run,
                               observation, observed)
    runs = _Runs(args, env, where, per_run, workers)
    hunt = _Hunt(result, runs, patterns, again, families, progress, t0)
    search = Search(observation, seed, part, parts, families)
    deadline = None if budget is None else t0 + budget
    try:
        # A failure whose shrunk plan does not replay every time is flaky: the search goes on past it.
        while result.counterexample is None:
            started = time.monotonic()
            found = hunt.search(search, limit, deadline)
            result.search_seconds += time.monotonic() - started
            if found is None:
                break
            started = time.monotonic()
            shrunk = hunt.shrink(found)
            result.shrink_seconds += time.monotonic() - started
            hunt.replay(found.plan, shrunk, path)
        if result.counterexample is None and result.flaky and path is not None:
            tracer.save(result.flaky[0].outcome, path)
            result.trace = path
    finally:
        runs.close()
        result.seconds = time.monotonic() - t0
        result.runs, result.program_seconds, result.busy_seconds = runs.runs, runs.program_seconds, runs.busy_seconds
    return result


class _Hunt:
    """The steps of one hunt, sharing its runs and its result."""

    def __init__(self, result: ProgramHuntResult, runs: _Runs, patterns: list[re.Pattern[str]], reruns: int,
                 answers: frozenset[str], progress: Callable[[ProgramProgress], None] | None, t0: float) -> None:
        self.result, self.runs, self.patterns, self.reruns = result, runs, patterns, reruns
        self.answers = answers
        # Failures seen and not yet confirmed: a search resumed after a flaky one takes them first.
        self.failures: list[Finding] = []
        self.progress, self.t0, self.shown = progress, t0, t0

    def _tell(self, phase: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (force or now - self.shown >= 1.0):
            self.shown = now
            r = self.result
            self.progress(ProgramProgress(phase, r.scenarios, self.runs.runs, now - self.t0, r.refused_runs, len(r.flaky)))

    def _refused(self, plan: Plan, outcome: Outcome, verdict: Verdict, index: int) -> None:
        self.result.refused_runs += 1
        if all(f.signature != verdict.signature for f in self.result.refused):
            self.result.refused.append(Finding(plan, outcome, verdict, index))

    def search(self, search: Search, limit: int | None, deadline: float | None) -> Finding | None:
        """Run this shard's scenarios until one fails repeatably (returned), or the budget or the plans run out."""
        r = self.result
        jobs = self.runs.jobs
        pending: dict[futures.Future[Outcome], tuple[int, Plan]] = {}
        failures = self.failures
        submitted = r.scenarios
        while True:
            self._tell("searching")
            while not failures and len(pending) < jobs:
                if limit is not None and submitted >= limit:
                    r.stopped = "examples"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    r.stopped = "time"
                    break
                drawn = search.next()
                if drawn is None:
                    r.stopped = "exhausted"
                    break
                pending[self.runs.submit(drawn[1])] = drawn
                submitted += 1
            if not pending:
                if not failures:
                    return None
                # Every run under way has ended: the failure drawn first is the one confirmed first.
                failures.sort(key=lambda f: f.index)
                found = failures.pop(0)
                if self._confirm(found):
                    return found
                r.flaky.append(found)
                continue
            done, _ = futures.wait(pending, timeout=1.0, return_when=futures.FIRST_COMPLETED)
            for f in done:
                index, plan = pending.pop(f)
                outcome = f.result()
                r.scenarios += 1
                verdict = judge(outcome, self.patterns)
                if verdict.kind == "refused":
                    self._refused(plan, outcome, verdict, index)
                elif verdict.kind == "failed":
                    failures.append(Finding(plan, outcome, verdict, index))

    def _confirm(self, found: Finding) -> bool:
        """Run ``found``'s plan again ``reruns`` times: whether it failed the same way every time."""
        self._tell("confirming", force=True)
        again = self.runs.all([found.plan] * self.reruns)
        same = found.tally([judge(o, self.patterns) for o in again])
        found.failed, found.runs = 1 + same, 1 + self.reruns
        return same == self.reruns

    def shrink(self, found: Finding) -> Finding:
        """The simplest plan reached from ``found`` by ``simpler`` steps that still fails the same way."""
        observation = self.result.observation
        best = found
        tried = {best.plan.key()}
        # Rewrites that changed nothing in the failing run go first, without a run of their own.
        kept = [rw for rw, did in zip(best.plan.rewrites, applied(best.plan, best.outcome)) if did]
        first = [Plan(tuple(kept))] if len(kept) < len(best.plan) else []
        jobs = self.runs.jobs
        while self.result.shrink_runs < MAX_SHRINK_RUNS:
            candidates = first + [p for p in simpler(best.plan, observation, self.answers) if p.key() not in tried]
            first = []
            taken = None
            for start in range(0, len(candidates), jobs):
                batch = candidates[start:start + jobs][:MAX_SHRINK_RUNS - self.result.shrink_runs]
                if not batch:
                    break
                self._tell("shrinking", force=True)
                outcomes = self.runs.all(batch)
                self.result.shrink_runs += len(batch)
                for plan, outcome in zip(batch, outcomes):
                    tried.add(plan.key())
                    verdict = judge(outcome, self.patterns)
                    if verdict.kind == "refused":
                        self._refused(plan, outcome, verdict, -1)
                    if taken is None and verdict.kind == "failed" and verdict.ending == found.verdict.ending:
                        taken = Finding(plan, outcome, verdict, found.index)
                if taken is not None:
                    break
            if taken is None:
                break
            best = taken
        return best

    def replay(self, first: Plan, found: Finding, path: str | None) -> None:
        """Save ``found``'s run (to ``path``, if given) and replay it: repeated every time, it is the
        counterexample (``first``: its plan as found); else it is flaky, with its rate."""
        r = self.result
        if path is not None:
            tracer.save(found.outcome, path)
        self._tell("replaying", force=True)
        replays = self.runs.replays(path if path is not None else found.outcome, self.reruns)
        found.seen = {found.signature: 1}
        found.failed = found.tally([judge(rp.outcome, self.patterns) for rp in replays])
        found.runs = self.reruns
        if found.failed == found.runs:
            r.counterexample, r.found_as, r.stopped = found, first, "found"
            r.trace = path
        else:
            r.flaky.append(found)
