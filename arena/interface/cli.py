"""The arena command line: the Go issue 20259 demo, trace replays, rule hunts, annotated maps, benchmarks.

A mistake of the user's (an argument, a file, a path, the environment, their
own rule failing) is one line on stderr and exit 2, never a traceback
(``--traceback`` shows a failing rule's). What a command prints is
written at its end, so that a reader that stops early (``| head``) cannot
change its exit code.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, NoReturn, TextIO, TypeVar

from .. import __version__, sysmem
from ..harness import trace
from ..harness.check import Violation, verify
from ..harness.run import Outcome, Replay, observe
from ..managers import NAMES, RELEASE, Arena, HeapArenas, ReservationFailed
from ..policy.layout import Layout
from ..policy.rules import RULES, RuleFailed
from ..policy.rules import read as read_rule
from ..spaces import EXAMPLE_MAPS, AnswerTaken, Crowd, example_maps
from ..words import plural, size_text
from . import demo, maps, report
from .maps import annotate, process_rows, process_text, rows_text

if TYPE_CHECKING:  # imported when a hunt runs: hypothesis is optional
    from ..harness import hunt as hunting

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Where --help sends a reader: documentation installed with the package (the
# modules' own), since the docs/ folder is in the source distribution only.
TRACE_DOC, RULES_DOC = "python3 -m pydoc arena.harness.trace", "python3 -m pydoc arena.policy.rules"
T = TypeVar("T")
# A hunt bounded by --time only: more scenarios than any time allows.
UNBOUNDED = 10**9
# The most a hunt may be asked for: a number past these is a typo, not a budget
# (a rule's hunt runs hundreds of scenarios a second, a program's a few).
MAX_EXAMPLES, MAX_SECONDS = 1_000_000, 7 * 24 * 3600
# A /proc/PID/maps dump of vm.max_map_count's 65,530 lines is ~10 MB: larger is not one.
MAX_MAPS_BYTES = 64 << 20
# Where the terminal's width is unknown (output to a pipe or a file).
DEFAULT_WIDTH = 100
# A real program's replay without --timeout stops after this many times the recorded run, and at least
# REPLAY_FLOOR seconds: a replay that no longer ends as recorded may not end at all.
REPLAY_FACTOR, REPLAY_FLOOR = 10, 60.0

DESCRIPTION = """\
arena reserves real address space the way Go's runtime did (mmap with address
hints) and replays Go issue 20259: a reservation the kernel placed below the
heap lowered arena_used, and live memory stopped being heap. Every command
maps real memory in this process and checks the result against the kernel's
own record of it (/proc/self/maps)."""

EPILOG = f"""\
examples:
  arena demo                       Go issue 20259, every rule side by side
  arena demo --rule legacy --save-trace t.json --svg t.svg
  arena replay t.json --rule all   a saved trace under every rule
  arena hunt --rule legacy         search for a counterexample to a rule
  arena hunt --program -- ./prog   the mmap answers that break a real program
  arena maps --pid 1234            another process's mappings
  arena run --adversary gap -- ./prog arg
                                   a real program, mmap answers made adversarial
  arena demo --real                Go 1.8, its fix, Go 1.9, Debian's Go: real

exit codes: {EXIT_OK} success, {EXIT_VIOLATION} a rule violation found, {EXIT_USAGE} usage (a bad argument,
a malformed or unreplayable trace, an output path that cannot be written, a
program that cannot be run or traced, your own rule failing: it raised, or
returned neither None nor a str; arena hunt reports that as a counterexample,
exit {EXIT_VIOLATION}); for run, and the replay of a real program's trace,
{EXIT_VIOLATION} means the program failed

environment: ARENA_BACKEND=cffi or ctypes chooses the memory backend
(default: the compiled shim if it was built, else ctypes); COLUMNS is the
width the tables fit (default: the terminal's, else {DEFAULT_WIDTH}).

{{prog}} {__version__}; each command's options: arena COMMAND --help"""


class UsageError(Exception):
    """Bad input found after parsing: reported in one line, exit 2."""


def _note(text: str, end: str = "\n") -> None:
    """A line on stderr; a reader that went away (``2>&1 | head``) must not stop the command or change its verdict."""
    try:
        print(text, end=end, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):
        pass


def _width() -> int:
    """The terminal's width (or COLUMNS), else ``DEFAULT_WIDTH``."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def _paragraphs(text: str, width: int, indent: str = "") -> str:
    """Each line of ``text`` wrapped to ``width``, continued lines indented two more."""
    return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent + "  ",
                                    break_on_hyphens=False) or line for line in text.splitlines())


def _check_writable(path: str | None, option: str) -> None:
    """Refuse now, not after the whole run, an output path that cannot be written."""
    if not path:
        return
    target = Path(path)
    try:
        if target.is_dir():
            raise UsageError(f"{option} {path}: is a directory: give a file name")
        if target.exists() and not target.is_file():
            ok = os.access(target, os.W_OK)  # /dev/stdout, say: opening it to check could block
        else:
            existed = target.exists()
            with open(target, "a", encoding="utf-8"):
                ok = True
            if not existed:
                target.unlink()
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}: give a path in a writable directory") from None
    if not ok:
        raise UsageError(f"{option} {path}: permission denied: give a path in a writable directory")


def _write_file(path: str, option: str, write: Callable[[], object]) -> None:
    """Run ``write``; a path that became unwritable since it was checked is a usage error too."""
    try:
        write()
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}: give a path in a writable directory") from None


def _rules(choice: str | None, default: str) -> tuple[str, ...]:
    choice = choice or default
    return NAMES if choice == "all" else (choice,)


def _live(rules: tuple[str, ...], start: Callable[[str], Replay]) -> Iterator[Replay]:
    """Each rule's run in turn, its arena open while the caller looks at it, closed after.

    A user's rule that failed stops the command: ``RuleFailed``, one line and exit 2 (``main``).
    """
    for rule in rules:
        r = start(rule)
        with r.arena:
            if r.failed is not None:
                raise r.failed
            yield r


def _shown(path: str) -> str:
    """A path as a message shows it: quoted if it is empty or has spaces at its ends."""
    return path if path and path.strip() == path else repr(path)


def _load(path: str) -> trace.Trace:
    try:
        return trace.load(path)
    except OSError as exc:
        raise UsageError(f"{_shown(path)}: {exc.strerror}") from None
    except trace.TraceError as exc:
        # "(file)" is the path of an error of the whole file: the file's own name says it here.
        raise UsageError(f"{_shown(path)}: {str(exc).removeprefix('(file): ')}") from None


class Scenario(NamedTuple):
    """What demo, replay and maps run."""

    layout: Layout
    rules: tuple[str, ...]
    start: Callable[[str], Replay]  # one rule's run, its arena open
    title: str
    trace: trace.Trace | None


def _replaying(path: str, t: trace.Trace, layout: Layout) -> Callable[[str], Replay]:
    """One rule's replay of ``t``; a trace this process cannot replay is a usage error."""

    def start(rule: str) -> Replay:
        try:
            return trace.replay(t, rule, layout)
        except (trace.TraceError, trace.ReplayError) as exc:
            raise UsageError(f"{path}: {exc}") from None

    return start


def _scenario(args: argparse.Namespace) -> Scenario:
    layout = trace.LAYOUTS[args.layout] if args.layout else None
    path = getattr(args, "trace", None)
    if path is not None:
        t = _load(path)
        layout = layout or t.layout
        return Scenario(layout, _rules(args.rule, t.rule), _replaying(path, t, layout),
                        f"replay of {os.path.basename(path)}", t)
    layout = layout or trace.LAYOUTS["32"]

    def start(rule: str) -> Replay:
        try:
            return demo.replay_20259(rule, layout)
        except (AnswerTaken, ReservationFailed) as exc:
            raise UsageError(f"the 20259 scenario cannot run in this address space: {exc}") from None

    return Scenario(layout, _rules(args.rule, "all"), start, f"Go issue 20259, {layout.name} layout", None)


def _exit(verdicts: Iterable[tuple[str, list[Violation]]], expected_unsound: set[str]) -> int:
    """``EXIT_VIOLATION`` if a rule not ``expected_unsound`` has violations (``verdicts``: each rule's)."""
    bad = [rule for rule, violations in verdicts if violations and rule not in expected_unsound]
    return EXIT_VIOLATION if bad else EXIT_OK


def _expected(args: argparse.Namespace, layout: Layout) -> set[str]:
    """The demo replays a known bug: legacy's violations on 32-bit are what it shows, not a failure."""
    return {"legacy"} if getattr(args, "trace", None) is None and layout.address_bits == 32 else set()


def _picture(args: argparse.Namespace, outcomes: list[Outcome], title: str, note: str) -> str:
    """Draw ``--svg``; what to tell the reader about it."""
    if not args.svg:
        return ""
    # Imported here: its XML escaping brings in urllib.request, http.client and email (10 ms of each start).
    from . import svg

    picture = svg.draw(outcomes, title, note)
    _write_file(args.svg, "--svg", lambda: Path(args.svg).write_text(picture, encoding="utf-8"))
    return "" if args.json else f"\npicture of the address space: {args.svg}\n"


def _save(arena: Arena | HeapArenas, path: str) -> None:
    _write_file(path, "--save-trace", lambda: trace.save(arena, path))


def _outputs(args: argparse.Namespace) -> None:
    """Check the output paths before anything runs."""
    _check_writable(getattr(args, "svg", None), "--svg")
    _check_writable(getattr(args, "save_trace", None), "--save-trace")


def _findings(outcomes: list[Outcome], width: int) -> list[str]:
    return [_paragraphs(f"{o.rule}: {v}", width, "  ") for o in outcomes for v in o.violations]


# The commands of real programs import arena.interface.programs where they run: with the tracer, it is a
# third of what a command would import at its start, and the model's commands never need it.
def _programs(start: Callable[[], T]) -> T:
    """A real-program command (``arena.interface.programs``); what cannot start is a usage error."""
    from . import programs

    try:
        return start()
    except programs.Refused as exc:
        raise UsageError(str(exc)) from None


def _only(args: argparse.Namespace, what: str, options: dict[str, str]) -> None:
    """Refuse ``options`` (attribute: option) that were given but mean nothing for ``what``."""
    given = [option for name, option in options.items() if getattr(args, name, None) not in (None, False)]
    if given:
        raise UsageError(f"{', '.join(given)}: not used with {what}")


def cmd_demo_real(args: argparse.Namespace) -> tuple[int, str]:
    from . import programs

    _only(args, "--real (real programs)", {"rule": "--rule", "layout": "--layout", "svg": "--svg", "crowd": "--crowd",
                                            "save_trace": "--save-trace"})
    return _programs(lambda: programs.demo(runs=args.runs or 1, as_json=args.json, width=_width(),
                                           progress=lambda line: _note(f"arena demo --real: {line}")))


def cmd_run(args: argparse.Namespace) -> tuple[int, str]:
    from . import programs

    _outputs(args)
    return _programs(lambda: programs.run(args.program, args.adversary, timeout=args.timeout, save=args.save_trace,
                                          as_json=args.json, every=args.all_calls, width=_width()))


def cmd_demo(args: argparse.Namespace) -> tuple[int, str]:
    if args.real:
        return cmd_demo_real(args)
    if args.runs is not None:
        raise UsageError("--runs: not used without --real")
    layout, rules, start, title, _ = _scenario(args)
    if args.save_trace and len(rules) != 1:
        raise UsageError("--save-trace needs a single --rule: add --rule legacy, say")
    _outputs(args)
    outcomes = []
    with _crowded(args, layout):
        for r in _live(rules, start):
            outcomes.append(observe(r))
            if args.save_trace:
                _save(r.arena, args.save_trace)
    head, tail = demo.explain(layout, rules)
    code = _exit([(o.rule, o.violations) for o in outcomes], _expected(args, layout))
    if args.json:
        out = json.dumps({"command": "demo", "layout": layout.name, "rules": [o.as_json() for o in outcomes],
                          "exit": code}) + "\n"
    else:
        width = _width()
        lines = [_paragraphs(f"Go issue 20259 replayed with real memory: {layout.name} layout, "
                             f"{sysmem.default(layout.address_bits)!r}", width),
                 _paragraphs(head, width), "", report.side_by_side(outcomes, width), "",
                 _paragraphs(report.legend(outcomes), width)]
        findings = _findings(outcomes, width)
        lines += [""] + findings if findings else []
        lines += ["", _paragraphs(tail, width)] if tail else []
        if args.save_trace:
            lines += ["", f"trace saved: {args.save_trace} (replay it with: arena replay {args.save_trace})"]
        out = "\n".join(lines) + "\n"
    return code, out + _picture(args, outcomes, title, head)


def cmd_replay(args: argparse.Namespace) -> tuple[int, str]:
    from . import programs

    recorded = _programs(lambda: programs.process_trace(args.trace))
    if recorded is not None:
        _only(args, "a real program's trace", {"layout": "--layout", "svg": "--svg", "crowd": "--crowd"})
        chosen = None if args.rule in (None, "all") else (args.rule,)
        limit = args.timeout if args.timeout is not None else max(REPLAY_FLOOR, REPLAY_FACTOR * recorded.wall_time)
        return _programs(lambda: programs.replay(args.trace, recorded, rules=chosen, timeout=limit,
                                                 as_json=args.json, every=args.all_calls, width=_width()))
    _only(args, "the model's trace", {"timeout": "--timeout", "all_calls": "--all-calls"})
    _outputs(args)
    layout, rules, start, title, t = _scenario(args)
    assert t is not None  # a replay's scenario has its trace
    outcomes, diverged = [], []
    with _crowded(args, layout):
        for r in _live(rules, start):
            outcomes.append(observe(r))
            # Only a replay under the recorded rule and layout should repeat the recorded decisions.
            same = r.arena.rule == t.rule and layout == t.layout and t.recorded is not None
            diverged.append(trace.divergence(t, r.arena) if same else "not compared")
    code = _exit([(o.rule, o.violations) for o in outcomes], set())
    steps = f"{plural(len(t.requests), 'request')}, {plural(len(t.answers), 'answer')}"
    if args.json:
        rows = [{**o.as_json(), "diverged": d} for o, d in zip(outcomes, diverged)]
        out = json.dumps({"command": "replay", "trace": args.trace, "layout": layout.name, "rules": rows, "exit": code}) + "\n"
    else:
        width = _width()
        lines = [_paragraphs(f"replaying {args.trace}: {steps}, {layout.name} layout (recorded: rule {t.rule}, "
                             f"{t.layout.name} layout)", width)]
        for o, d in zip(outcomes, diverged):
            lines += ["", f"== {o.rule}", report.decisions(o, width)]
            lines.append("verify: no violation" if not o.violations else f"verify: {plural(len(o.violations), 'violation')}")
            lines += [_paragraphs(f"{v}", width, "  ") for v in o.violations]
            if d != "not compared":
                lines.append(f"differs from the recorded run: {d}" if d else "same decisions as the recorded run")
        if len(outcomes) > 1:
            lines += ["", report.side_by_side(outcomes, width), "", _paragraphs(report.legend(outcomes), width)]
        out = "\n".join(lines) + "\n"
    return code, out + _picture(args, outcomes, title, steps)


def _process_maps(args: argparse.Namespace) -> tuple[int, str]:
    """``maps --pid``: another process's mappings with resident bytes; no arena runs."""
    if (args.trace, args.rule, args.layout) != (None, None, None):
        raise UsageError("--pid lists another process's mappings; it takes no --trace, --rule or --layout")
    try:  # optional (the maps extra): it needs a compiler where it has no wheel, as on i686
        import psutil
    except ImportError:
        raise UsageError("arena maps --pid needs psutil, which is not installed: pip install 'mmap-arena[maps]'") from None
    try:
        rows = process_rows(args.pid)
    except psutil.NoSuchProcess:
        raise UsageError(f"no running process with pid {args.pid}") from None
    except psutil.AccessDenied:
        raise UsageError(maps.denied(args.pid, maps.access(args.pid))) from None
    if args.json:
        return EXIT_OK, json.dumps({"command": "maps", "pid": args.pid, "mappings": rows, "exit": EXIT_OK}) + "\n"
    resident, width = sum(row["rss"] for row in rows), _width()
    return EXIT_OK, (_paragraphs(f"/proc/{args.pid}/smaps: {plural(len(rows), 'mapping')}, {resident >> 10} KiB resident",
                                 width) + f"\n{process_text(rows, width)}\n")


def cmd_maps(args: argparse.Namespace) -> tuple[int, str]:
    if args.pid is not None:
        return _process_maps(args)
    layout, rules, start, title, _ = _scenario(args)
    verdicts, found = [], []
    for r in _live(rules, start):
        # The verdict alone: a map shows none of the rest of observe's outcome, which reads every allocation back.
        verdicts.append((r.arena.rule, verify(r.arena)))
        found.append((r.arena.rule, annotate(r.arena, sysmem.mappings())))
    code = _exit(verdicts, _expected(args, layout))
    if args.json:
        return code, json.dumps({"command": "maps", "pid": os.getpid(), "layout": layout.name,
                                 "rules": [{"rule": rule, "mappings": rows} for rule, rows in found], "exit": code}) + "\n"
    width = _width()
    lines = [_paragraphs(f"/proc/{os.getpid()}/maps rows of the live arena ({title}), annotated with the arena's roles",
                         width)]
    for rule, rows in found:
        lines += ["", f"== {rule}", rows_text(rows, width)]
    return code, "\n".join(lines) + "\n"


# -- a real process's address space (--crowd) -------------------------------------


def _maps_text(path: str) -> str:
    """A maps dump's text: a file, or the name of one shipped with the package (``testing.EXAMPLE_MAPS``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MAPS_BYTES + 1)
    except FileNotFoundError:
        if path in EXAMPLE_MAPS:
            return example_maps(path)
        raise UsageError(f"--crowd {path}: no such file (or a shipped dump: {', '.join(EXAMPLE_MAPS)})") from None
    except OSError as exc:
        raise UsageError(f"--crowd {path}: {exc.strerror}") from None
    if len(raw) > MAX_MAPS_BYTES:
        raise UsageError(f"--crowd {path}: larger than {MAX_MAPS_BYTES >> 20} MiB: not a /proc/PID/maps dump "
                         "(save one with: cat /proc/PID/maps > FILE)")
    return raw.decode("utf-8", errors="replace")


@contextlib.contextmanager
def _crowded(args: argparse.Namespace, layout: Layout) -> Iterator[None]:
    """With ``--crowd FILE``, the command runs among placeholders for that dump's mappings (see Crowd.from_maps)."""
    path = getattr(args, "crowd", None)
    if not path:
        yield
        return
    try:
        crowd = Crowd.from_maps(_maps_text(path), sysmem.default(address_bits=layout.address_bits))
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    with crowd:
        why: dict[str, int] = {}
        for skipped in crowd.skipped:
            why[skipped.why] = why.get(skipped.why, 0) + 1
        left = "; ".join(f"{n} {text}" for text, n in why.items())
        _note(f"arena {args.command}: crowd {path}: {plural(len(crowd.blocks), 'range')} occupied "
              f"({size_text(crowd.occupied)})" + (f"; not occupied: {left}" if left else ""))
        yield


# -- arena hunt ------------------------------------------------------------------


def _one_rule(text: str) -> str:
    """A rule for --rule: a built-in name or module:attr (loaded now, so a bad one is a usage error)."""
    try:
        read_rule(text)
    except (TypeError, ValueError, RuleFailed) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _rule_or_all(text: str) -> str:
    """A rule for demo, replay and maps, which also run all of them side by side."""
    if text == "all":
        return text
    if ":" not in text and text not in NAMES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(NAMES)}, all, or module:attr of your own rule "
                                         f"({RULES_DOC}), got {text!r}")
    return _rule_or_release(text)


def _rule_or_release(text: str) -> str:
    """A rule, or go1.11: Go 1.11's sparse heap arenas."""
    return text if text == RELEASE else _one_rule(text)


def _positive(convert: Callable[[str], float], what: str, most: float = float("inf")) -> Callable[[str], float]:
    """An argparse type: a positive, finite number of ``what``, at most ``most``."""
    bound = "" if most == float("inf") else f" up to {most:,}"

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = 0
        if not (0 < value < float("inf") and value <= most):
            raise argparse.ArgumentTypeError(f"expected a positive number of {what}{bound}, got {text!r}")
        return value

    return parse


# The most processes --jobs starts: each is a whole hunt of its own (an interpreter, hypothesis, its mappings).
MAX_JOBS = 256


def _jobs(text: str) -> int:
    """--jobs: a number of processes, 1 to MAX_JOBS."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"expected a number of processes from 1 to {MAX_JOBS}, got {text!r}")
    return value


def _path(text: str) -> str:
    """An argparse type: a path, never empty (an empty one would name no file and write nothing)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path: give a file name")
    return text


def _seed(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _progress() -> tuple[Callable[[hunting.Progress], None], Callable[[], None]]:
    """A rule hunt's progress on stderr (``interface.progress``): what to call with it, and at the end."""
    from .progress import Progress

    shown = Progress(width=_width())

    def show(p: hunting.Progress) -> None:
        what = "shrinking the counterexample" if p.shrinking else "searching"
        shown.show(what, f"arena hunt: {what}: {plural(p.examples, 'scenario')}, {p.rate:,.0f}/s")

    return show, shown.done


def _hunt_text(args: argparse.Namespace, result: hunting.HuntResult, outcomes: list[Outcome]) -> str:
    # A scenario the address space stopped (the kernel's own mappings where it places) was drawn but not played:
    # the rule held for the others.
    budget = plural(result.examples - result.skipped, "scenario")
    if result.skipped:
        budget += f"; {result.skipped:,} more could not be played in this process's address space"
    if result.stopped == "time":
        budget += f" (the --time {args.time:g} s ran out)"
    # A counterexample's seed is its own process's: --seed alone repeats that search. Without one, each
    # process had a seed of its own, derived from the first: the same --jobs repeats them all.
    again = f"--seed {result.seed}" + (f" --jobs {result.jobs}" if result.jobs > 1 and result.counterexample is None else "")
    processes = f" in {result.jobs} processes" if result.jobs > 1 else ""
    head = (f"rule {result.target} on the {result.layout.name} layout, seed {result.seed} (repeat with {again}), "
            f"{result.seconds:.1f} s{processes}, {result.rate:,.0f} scenarios/s")
    width = _width()
    if result.counterexample is None:
        return _paragraphs(f"no counterexample: the rule held for {budget}\n{head}", width)
    lines = [_paragraphs(f"counterexample found after {plural(result.examples, 'scenario')}, shrunk in "
                         f"{result.shrink_steps:,} more\n{head}", width), ""]
    # A rule that raised (or answered neither None nor a str) is the finding itself: say so first.
    lines += [_paragraphs(v.detail, width) + "\n" for v in result.violations if v.kind == "rule-failed"][:1]
    lines += [_paragraphs("minimal scenario (each answer is where the kernel's answer was placed, really mapped there):",
                          width)]
    lines += [_paragraphs(str(result.counterexample), width, "  ")]
    if outcomes:
        lines += ["", report.side_by_side(outcomes, width), "", _paragraphs(report.legend(outcomes), width), ""]
        lines += _findings(outcomes, width)
        lines += ["", f"every decision under {outcomes[0].rule}:", report.decisions(outcomes[0], width)]
    else:
        lines += ["", "found (it did not fail again when replayed for display):"]
        lines += [_paragraphs(f"{v}", width, "  ") for v in result.violations]
    return "\n".join(lines)


def _program_options(args: argparse.Namespace) -> list[str]:
    """The options given that only a hunt of a real program takes."""
    given = [("--shard", args.shard), ("--timeout", args.timeout), ("--answers", args.answers),
             ("--min-size", args.min_size), ("--out-of-memory", args.out_of_memory)]
    return [name for name, value in given if value is not None]


def _program_hunt(args: argparse.Namespace) -> tuple[int, str]:
    """``hunt --program -- PROG ARGS``: search the program's mmap answers for a placement that breaks it."""
    from .. import tracer
    from ..harness import program_hunt
    from . import program_report

    if not args.argv:
        raise UsageError("--program needs the program to run after --: arena hunt --program -- PROG ARGS")
    rule_only = [name for name, value in (("--rule", args.rule), ("--layout", args.layout), ("--crowd", args.crowd),
                                          ("--svg", args.svg), ("--no-maps", args.no_maps or None)) if value is not None]
    if rule_only:
        raise UsageError(f"{', '.join(rule_only)} belong{'s' * (len(rule_only) == 1)} to a rule's hunt, not to --program")
    _check_writable(args.save_trace, "--save-trace")
    min_size = 0
    if args.min_size is not None:
        try:
            min_size = tracer.parse_size(args.min_size)
        except tracer.AdversarySpecError as exc:
            raise UsageError(f"--min-size: {exc}") from None

    from .progress import Progress

    shown = Progress(width=_width())

    def tell(p: program_hunt.ProgramProgress) -> None:
        shown.show(p.phase, program_report.progress_line(p))

    try:
        result = program_hunt.hunt_program(
            args.argv, examples=args.examples, seconds=args.time, seed=args.seed, jobs=args.jobs,
            shard=args.shard or (1, 1), timeout=args.timeout, answers=args.answers or program_hunt.ANSWERS,
            min_size=min_size, refusals=args.out_of_memory or (), save_trace=args.save_trace, progress=tell)
    except (program_hunt.ProgramFailsAlone, tracer.ProgramError, tracer.PtraceRefused, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--save-trace {args.save_trace}: {exc.strerror}: give a path in a writable directory") from None
    finally:
        shown.done()
    code = EXIT_VIOLATION if result.counterexample is not None else EXIT_OK
    if args.json:
        return code, json.dumps({"command": "hunt", "program": True, **result.as_json(), "exit": code}) + "\n"
    return code, report.within(program_report.hunt_text(result, args.time), _width())


def cmd_hunt(args: argparse.Namespace) -> tuple[int, str]:
    from ..harness import hunt as hunting

    if args.program:
        return _program_hunt(args)
    if args.argv:
        raise UsageError(f"a program to run ({' '.join(args.argv)}) is hunted with --program: arena hunt --program -- PROG ARGS")
    if _program_options(args):
        raise UsageError(f"{', '.join(_program_options(args))}: only with --program (a hunt of a real program)")
    layout = trace.LAYOUTS[args.layout or "32"]
    target = hunting.target_for(args.rule or "fixed")
    _outputs(args)
    try:
        hunting.require_hypothesis()
        sysmem.default(address_bits=layout.address_bits)
    except (ImportError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    outcomes: list[Outcome] = []
    failed: RuleFailed | None = None
    with _crowded(args, layout):
        # --time alone is the whole budget; neither: 1000 scenarios.
        examples = args.examples or (UNBOUNDED if args.time else 1000)
        show, done = _progress()
        result = hunting.hunt(layout=layout, target=target, examples=examples, seconds=args.time, seed=args.seed,
                              read_maps=not args.no_maps, progress=show, jobs=args.jobs or 1)
        done()
        if result.counterexample is not None:
            # A linear arena's is shown beside Go's fix, e5a5c03, given the same answers (each relative
            # to its own arena's bounds); heap arenas' answers mean nothing to a linear arena.
            beside = [] if result.target in ("fixed", RELEASE) else [hunting.arena_target("fixed")]
            for each in [target, *beside]:
                try:
                    r = hunting.play(result.counterexample, each, layout)
                except (AnswerTaken, OSError):
                    continue  # the address space changed under the replay: shown without it
                with r.arena:
                    outcomes.append(observe(r))
                    if each is target:
                        failed = r.failed
                    # Only a replay that fails again is the counterexample's trace (see below).
                    if args.save_trace and each is target and outcomes[-1].violations:
                        _save(r.arena, args.save_trace)
        if outcomes and (outcomes[0].rule != result.target or not outcomes[0].violations):
            outcomes = []  # the hunted rule's replay must come first and show the failure
    if failed is not None and args.traceback:
        _note("".join(traceback.format_exception(failed)).rstrip("\n"))
    code = EXIT_VIOLATION if result.counterexample is not None else EXIT_OK
    if args.json:
        out = json.dumps({"command": "hunt", **result.as_json(), "rules": [o.as_json() for o in outcomes], "exit": code}) + "\n"
    else:
        out = _hunt_text(args, result, outcomes) + "\n"
        if args.save_trace and outcomes:
            out += f"\ntrace saved: {args.save_trace} (replay it with: arena replay {args.save_trace})\n"
        unwritten = [f"{option} {path}" for option, path in (("--save-trace", args.save_trace), ("--svg", args.svg)) if path]
        if result.counterexample is not None and not outcomes and unwritten:
            # A trace or picture of a replay that did not fail would show no counterexample at all.
            out += _paragraphs(f"\nnot written: {', '.join(unwritten)}: the counterexample did not fail again when "
                               "replayed (the address space changed between the two runs; in a 32-bit process the "
                               "kernel's own mappings can); run the hunt again", _width()) + "\n"
    if outcomes:
        out += _picture(args, outcomes, f"counterexample to rule {result.target}, {layout.name} layout",
                        f"minimal scenario found by arena hunt (seed {result.seed})")
    return code, out


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """A mistake on this command's line is one line on stderr and exit 2, unknown options included."""

    given: list[str] = []

    def error(message: str) -> NoReturn:
        options = [arg for arg in given if arg.startswith("-") and arg != "--"]
        if message == "the following arguments are required: COMMAND" and options:
            # argparse stops at the missing command before it looks at the rest: an option given
            # without a command (arena --bogus) is the mistake to name.
            message = f"unrecognized arguments: {' '.join(options)}"
        _note(f"{parser.prog}: {message} (see {parser.prog} --help)")
        parser.exit(EXIT_USAGE)

    known = parser.parse_known_args

    def parse_known_args(args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        given[:] = sys.argv[1:] if args is None else args
        parsed, extra = known(args, namespace)
        if extra:
            error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra

    # This parser's own methods shadow argparse's (deliberately: what the type checker calls assigning to a
    # method; argparse's parse_known_args is overloaded on the namespace's type, this one is not).
    parser.error, parser.parse_known_args = error, parse_known_args  # type: ignore[method-assign, assignment]


def _bench_script() -> Path | None:
    # The benchmarks live beside the package in a checkout, else in the working directory.
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "benchmarks" / "run.py").is_file():
            return root / "benchmarks" / "run.py"
    return None


def cmd_bench(args: argparse.Namespace) -> tuple[int, str]:
    script = _bench_script()
    if script is None:
        raise UsageError("the benchmarks are not installed with the package: they run from a source checkout "
                         "of mmap-arena (there: make bench, or arena bench)")
    try:
        import pyperf  # noqa: F401
    except ImportError:
        raise UsageError("the benchmarks need pyperf: pip install 'mmap-arena[bench]', or make bench in the checkout") from None
    flags = (["--quick"] if args.quick else []) + (["--json"] if args.json else [])
    import subprocess

    return subprocess.run([sys.executable, str(script), *flags]).returncode, ""


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return int(text)


def _rule_options(default: str) -> argparse.ArgumentParser:
    """--rule and --layout, each saying its default for this command."""
    rules = argparse.ArgumentParser(add_help=False)
    rules.add_argument("--rule", type=_rule_or_all, metavar="RULE",
                       help=f"a placement rule: {', '.join(RULES)}, or module:attr of your own rule ({RULES_DOC}); "
                            f"{RELEASE} (Go 1.11's sparse heap arenas); or all, side by side (default: {default})")
    layouts = " or ".join(sorted(trace.LAYOUTS))
    rules.add_argument("--layout", choices=sorted(trace.LAYOUTS),
                       help=f"the address-space layout, {layouts} bits (default: "
                            + ("32, where Go issue 20259 happened)" if default == "all" else "the trace's own)"))
    return rules


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arena", description=DESCRIPTION, epilog=EPILOG.format(prog="arena"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")
    picture = argparse.ArgumentParser(add_help=False)
    picture.add_argument("--svg", type=_path, metavar="PATH", help="also draw the address space as an SVG picture to PATH")
    debugging = argparse.ArgumentParser(add_help=False)
    debugging.add_argument("--traceback", action="store_true",
                           help="when your own rule fails, show the whole traceback (default: one line naming the rule, "
                                "the method and the exception)")
    crowding = argparse.ArgumentParser(add_help=False)
    crowding.add_argument("--crowd", type=_path, metavar="MAPS",
                          help="run among placeholders for the mappings of a /proc/PID/maps "
                          f"dump: a file, or a shipped one ({', '.join(EXAMPLE_MAPS)}) (default: none)")

    d = commands.add_parser("demo", parents=[common, _rule_options("all"), picture, crowding, debugging],
                            help="replay Go issue 20259 with real memory, under every rule",
                            description="Replay Go issue 20259 with real memory, under each rule side by side. On 32-bit, "
                                        "legacy's violations are the bug being shown: the demo still exits 0.")
    d.add_argument("--save-trace", type=_path, metavar="PATH", help="save the run as a replayable trace (needs a single --rule)")
    d.add_argument("--real", action="store_true",
                   help="instead: the Go test program built by each Go toolchain here (Go 1.8, its fix, Go 1.9, Debian's "
                        "Go), run under an adversary that moves its own heap reservations, the model beside it")
    d.add_argument("--runs", type=_positive(int, "runs"), metavar="N",
                   help="with --real: run each program N times and count the runs that reproduced (default: 1)")
    d.set_defaults(run=cmd_demo)
    r = commands.add_parser("replay", parents=[common, _rule_options("the trace's own rule"), picture, crowding, debugging],
                            help=f"replay a saved trace (its format: {TRACE_DOC})",
                            description="Replay a trace's kernel answers with real memory and check the result; "
                                        f"exit 1 if a rule is violated. A trace holds at most {trace.MAX_STEPS:,} requests.")
    r.add_argument("trace", type=_path, metavar="TRACE.json", help="a trace saved by arena demo, arena hunt or Arena.save_trace; "
                   "or a real program's, saved by arena run --save-trace: the program runs again under the recorded "
                   "decisions (exit 0 if it succeeds, 1 if it fails, as arena run), says whether its end repeats, and "
                   "shows the model given the same kernel answers")
    r.add_argument("--timeout", type=_positive(float, "seconds"), metavar="SECONDS",
                   help=f"a real program's trace: stop the program after SECONDS (default: {REPLAY_FACTOR} "
                        f"times the recorded run, at least {REPLAY_FLOOR:g} s)")
    r.add_argument("--all-calls", action="store_true", help="a real program's trace: list every call, not only those that matter")
    r.set_defaults(run=cmd_replay)
    m = commands.add_parser("maps", parents=[common, _rule_options("all"), debugging],
                            help="the mappings of a live arena, annotated; or another process's",
                            description="Run the 20259 demo (or --trace) and print the mappings its live arena holds, "
                                        "annotated with their roles; or, with --pid, another process's mappings.")
    m.add_argument("--trace", type=_path, metavar="FILE", help="replay this trace instead of the 20259 scenario (default: none)")
    m.add_argument("--pid", type=_pid, help="list process PID's mappings with the bytes of each resident in memory "
                   "(needs psutil: the 'maps' extra)")
    m.set_defaults(run=cmd_maps)
    h = commands.add_parser("hunt", parents=[common, picture, crowding, debugging],
                            help="search for a counterexample to a rule, or for the mmap answers that break a real "
                                 "program, with real memory",
                            description="Search for requests and kernel answers that break a placement rule (verify's "
                            "invariants, allocations reading back their bytes), with real mappings; the first one found "
                            "is shrunk to a minimal one. Exit 1 if found, 0 if none was within the budget, 2 for usage. "
                            f"Needs hypothesis (the 'hunt' extra). Writing your own rule: {RULES_DOC}. "
                            "With --program -- PROG ARGS: run a real program again and again, each time with some of its "
                            "mmap calls answered elsewhere (below or above the address it asked for, into a hole, "
                            "misaligned by whole pages) or refused, until it fails (a non-zero exit, a signal, a "
                            "runtime's fatal line, a timeout); shrink that to the fewest, simplest rewrites and save "
                            "the run as a trace that arena replay repeats (python3 -m pydoc arena.harness.program_hunt).")
    h.add_argument("--rule", type=_rule_or_release, metavar="RULE",
                   help=f"{', '.join(RULES)}, module:attr of your own rule, or {RELEASE} (Go 1.11's sparse heap arenas) "
                        "(default: fixed)")
    h.add_argument("--layout", choices=sorted(trace.LAYOUTS), help="the address-space layout (default: 32)")
    h.add_argument("--examples", type=_positive(int, "scenarios", MAX_EXAMPLES), metavar="N",
                   help=f"at most N scenarios, N up to {MAX_EXAMPLES:,} (default: 1000, or 200 with --program; or as "
                        "many as --time allows)")
    h.add_argument("--time", type=_positive(float, "seconds", MAX_SECONDS), metavar="SECONDS",
                   help=f"stop searching after SECONDS, up to {MAX_SECONDS:,} (a week) (default: no limit)")
    h.add_argument("--seed", type=_seed, help="repeat a hunt: the seed it printed (default: a random one)")
    h.add_argument("--save-trace", type=_path, metavar="PATH",
                   help="save the counterexample as a trace (arena replay PATH exits 1)")
    h.add_argument("--no-maps", action="store_true", help="check against the arena's history only, without reading "
                   "/proc/self/maps (faster)")
    h.add_argument("--program", action="store_true", help="hunt a real program, given after --, instead of a rule")
    h.add_argument("--jobs", type=_jobs, metavar="N",
                   help="run N processes at once: a rule's hunt in N processes, each with a seed of its own, the first "
                        "counterexample found winning and the others stopping (default: 1); with --program, N runs "
                        "of the program at once (default: the number of cores)")
    h.add_argument("--shard", metavar="I/N", help="with --program and --seed: run part I (from 1) of a search split N "
                   "ways, e.g. over N machines given the same --seed; no two parts run the same scenario (default: 1/1)")
    h.add_argument("--timeout", type=_positive(float, "seconds"), metavar="SECONDS",
                   help="with --program: a run taking longer counts as failed (default: 5 times the program's "
                        "plain run, at least 30 s)")
    h.add_argument("--answers", metavar="KINDS", help="with --program: the kinds of answer to try, comma-separated: "
                   "moved, misaligned, refused (ENOMEM) (default: all three)")
    h.add_argument("--min-size", metavar="SIZE", help="with --program: leave calls smaller than SIZE alone, e.g. 64K "
                   "to spare the dynamic loader's own small mappings (default: 0)")
    h.add_argument("--out-of-memory", action="append", metavar="PATTERN",
                   help="with --program: a regular expression for a line your program prints when it gives up for want "
                        "of memory, besides the known ones (Go's out of memory, strerror(ENOMEM), ...); a failure after "
                        "a refused call that prints one is reported as refused memory, not as a counterexample "
                        "(repeatable)")
    h.add_argument("argv", nargs="*", metavar="PROG ARGS", help="with --program, after --: the program and its arguments")
    h.set_defaults(run=cmd_hunt)
    u = commands.add_parser("run", parents=[common], usage="arena run [-h] [--json] [--adversary NAME] [--timeout SECONDS]\n"
                            "                 [--save-trace PATH] [--all-calls] -- PROGRAM [ARG ...]",
                            help="run a real program with its mmap answers made adversarial",
                            description="Run PROGRAM under ptrace with the kernel's answers to its mmap calls decided by an "
                            "adversary: a hint moved (the kernel still places the mapping, for real) or a call failed "
                            "with ENOMEM; MAP_FIXED calls are never changed. Its output passes through; then the calls "
                            "that matter and the verdict. Exit 0 if the program succeeded, 1 if it failed (a non-zero "
                            "exit, a signal, a fatal error line, a timeout), 2 if it could not be run or traced "
                            "(python3 -m pydoc arena.tracer).")
    u.add_argument("--adversary", default="observe", metavar="NAME",
                   help="observe, below, gap, displace,by=SIZE, enomem, scripted,file=TRACE, or module:attr of your "
                        "own; parameters as name,key=value (python3 -m pydoc arena.tracer.spec) (default: observe, which "
                        "changes nothing)")
    u.add_argument("--timeout", type=_positive(float, "seconds"), metavar="SECONDS",
                   help="then SIGTERM to every process of the program, SIGKILL 2 s later (default: none)")
    u.add_argument("--save-trace", type=_path, metavar="PATH",
                   help="save the run as a process trace (arena replay PATH runs it again)")
    u.add_argument("--all-calls", action="store_true", help="list every call, not only those that matter")
    u.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARG ...]", help="the program and its arguments")
    u.set_defaults(run=cmd_run)
    b = commands.add_parser("bench", parents=[common], help="run the benchmarks (from a source checkout)",
                            description="Run benchmarks/run.py: the OS layer, arena growth and allocation against a C "
                                        "reference, in this process. The benchmarks are not installed with the package: "
                                        "run this from a source checkout (make bench there does the same).")
    b.add_argument("--quick", action="store_true", help="a short run, about a minute (default: the full run, about 5 minutes)")
    b.set_defaults(run=cmd_bench)
    for each in (parser, d, r, m, h, u, b):
        _one_line_errors(each)
    return parser


def _warning_line(command: str, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the command line: ``arena COMMAND: warning: MESSAGE``."""
    _note(f"arena {command}: warning: {str(message).removeprefix('arena: ')}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    0 success, 1 a rule violation found, 2 usage: a mistake of the user's,
    told in one line on stderr.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        run: Callable[[argparse.Namespace], tuple[int, str]] = args.run  # the command's cmd_* (set_defaults)
        with warnings.catch_warnings():
            # A warning (the ctypes backend's, where the shim was not built) is
            # one line naming the command, as an error is, not Python's two
            # lines with a file and a line of arena's own source.
            warnings.showwarning = functools.partial(_warning_line, args.command)
            code, out = run(args)
    except (UsageError, sysmem.UnknownBackend, sysmem.ShimUnavailable) as exc:
        # A bad ARENA_BACKEND, or ARENA_BACKEND=cffi without the shim, is the
        # environment's mistake, reported like a bad argument.
        _note(f"arena {args.command}: {exc}")
        return EXIT_USAGE
    except RuleFailed as exc:
        # The user's rule failed, not a rule violation: exit 1 would read as
        # "violation found". One line; --traceback shows where it failed.
        _note(f"arena {args.command}: {exc}" + ("" if getattr(args, "traceback", False) else " (--traceback shows where)"))
        if getattr(args, "traceback", False):
            _note("".join(traceback.format_exception(exc)).rstrip("\n"))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _note(f"\narena {args.command}: interrupted")
        return EXIT_INTERRUPTED
    try:
        sys.stdout.write(out)
        # A reader gone away shows here, not at exit, where Python would report it.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (``| head``) stopped early: what was decided stands. Later
        # writes (the interpreter's own flush at exit) go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
