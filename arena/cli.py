"""The ``arena`` command line: the 20259 demo, trace replays, rule hunts, annotated maps, benchmarks.

Exit codes: 0 success, 1 a rule violation found, 2 usage (including a malformed
or unreplayable trace).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

import psutil

from . import __version__, demo, report, svg, sysmem, trace
from .layout import Layout
from .heaparenas import RELEASE
from .manager import RULES
from .managers import NAMES
from .maps import annotate, process_rows, process_text, rows_text
from .rules import resolve as resolve_rule
from .run import Outcome, Replay, observe, size_text
from .testing import EXAMPLE_MAPS, AnswerTaken, Crowd, example_maps

if TYPE_CHECKING:  # imported when a hunt runs: hypothesis is optional
    from . import hunt as hunting

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2
# A hunt bounded by --time only: more scenarios than any time allows.
UNBOUNDED = 10**9


class UsageError(Exception):
    """Bad input found after parsing: reported in one line, exit 2."""


def _rules(choice: str | None, default: str) -> tuple[str, ...]:
    choice = choice or default
    return NAMES if choice == "all" else (choice,)


def _live(rules: tuple[str, ...], start: Callable[[str], Replay]) -> Iterator[Replay]:
    """Each rule's run in turn, its arena open while the caller looks at it, closed after."""
    for rule in rules:
        r = start(rule)
        with r.arena:
            yield r


def _load(path: str) -> trace.Trace:
    try:
        return trace.load(path)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except trace.TraceError as exc:
        raise UsageError(f"{path}: {exc}") from None


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
    if path:
        t = _load(path)
        layout = layout or t.layout
        return Scenario(layout, _rules(args.rule, t.rule), _replaying(path, t, layout),
                        f"replay of {os.path.basename(path)}", t)
    layout = layout or trace.LAYOUTS["32"]

    def start(rule: str) -> Replay:
        try:
            return demo.replay_20259(rule, layout)
        except AnswerTaken as exc:
            raise UsageError(f"the 20259 scenario cannot run in this address space: {exc}") from None

    return Scenario(layout, _rules(args.rule, "all"), start, f"Go issue 20259, {layout.name} layout", None)


def _exit(outcomes: list[Outcome], expected_unsound: set[str]) -> int:
    bad = [o for o in outcomes if o.violations and o.rule not in expected_unsound]
    return EXIT_VIOLATION if bad else EXIT_OK


def _expected(args: argparse.Namespace, layout: Layout) -> set[str]:
    """The demo replays a known bug: legacy's violations on 32-bit are what it shows, not a failure."""
    return {"legacy"} if not getattr(args, "trace", None) and layout.address_bits == 32 else set()


def _picture(args: argparse.Namespace, outcomes: list[Outcome], title: str, note: str) -> None:
    if args.svg:
        Path(args.svg).write_text(svg.draw(outcomes, title, note), encoding="utf-8")
        if not args.json:
            print(f"\npicture of the address space: {args.svg}")


def cmd_demo(args: argparse.Namespace) -> int:
    layout, rules, start, title, _ = _scenario(args)
    if args.save_trace and len(rules) != 1:
        raise UsageError("--save-trace needs a single --rule")
    outcomes = []
    with _crowded(args, layout):
        for r in _live(rules, start):
            outcomes.append(observe(r))
            if args.save_trace:
                trace.save(r.arena, args.save_trace)
    head, tail = demo.explain(layout)
    code = _exit(outcomes, _expected(args, layout))
    if args.json:
        print(json.dumps({"command": "demo", "layout": layout.name, "rules": [o.as_json() for o in outcomes], "exit": code}))
    else:
        print(f"Go issue 20259 replayed with real memory: {layout.name} layout, {sysmem.default(layout.address_bits)!r}")
        print(head + "\n")
        print(report.side_by_side(outcomes))
        for o in outcomes:
            for v in o.violations:
                print(f"  {o.rule}: {v}")
        print("\n" + tail)
        if args.save_trace:
            print(f"\ntrace saved: {args.save_trace} (replay it with: arena replay {args.save_trace})")
    _picture(args, outcomes, title, head)
    return code


def cmd_replay(args: argparse.Namespace) -> int:
    layout, rules, start, title, t = _scenario(args)
    outcomes, diverged = [], []
    with _crowded(args, layout):
        for r in _live(rules, start):
            outcomes.append(observe(r))
            # Only a replay under the recorded rule and layout should repeat the recorded decisions.
            same = r.arena.rule == t.rule and layout == t.layout and t.recorded is not None
            diverged.append(trace.divergence(t, r.arena) if same else "not compared")
    code = _exit(outcomes, set())
    if args.json:
        rows = [{**o.as_json(), "diverged": d} for o, d in zip(outcomes, diverged)]
        print(json.dumps({"command": "replay", "trace": args.trace, "layout": layout.name, "rules": rows, "exit": code}))
    else:
        print(f"replaying {args.trace}: {len(t.requests)} requests, {len(t.answers)} answers, {layout.name} layout "
              f"(recorded: rule {t.rule}, {t.layout.name} layout)")
        for o, d in zip(outcomes, diverged):
            print(f"\n== {o.rule}\n{report.decisions(o)}")
            print("verify: sound" if not o.violations else f"verify: {len(o.violations)} violations")
            for v in o.violations:
                print(f"  {v}")
            if d != "not compared":
                print(f"differs from the recorded run: {d}" if d else "same decisions as the recorded run")
        if len(outcomes) > 1:
            print("\n" + report.side_by_side(outcomes))
    _picture(args, outcomes, title, f"{len(t.requests)} requests, {len(t.answers)} scripted answers")
    return code


def _process_maps(args: argparse.Namespace) -> int:
    """``maps --pid``: another process's mappings with resident bytes; no arena runs."""
    if args.trace or args.rule or args.layout:
        raise UsageError("--pid lists another process's mappings; it takes no --trace, --rule or --layout")
    try:
        rows = process_rows(args.pid)
    except psutil.NoSuchProcess:
        raise UsageError(f"no running process with pid {args.pid}") from None
    except psutil.AccessDenied:
        raise UsageError(f"pid {args.pid}: permission denied reading /proc/{args.pid}/smaps (run as its owner or root)") from None
    if args.json:
        print(json.dumps({"command": "maps", "pid": args.pid, "mappings": rows, "exit": EXIT_OK}))
    else:
        resident = sum(row["rss"] for row in rows)
        print(f"/proc/{args.pid}/smaps: {len(rows)} mappings, {resident >> 10} KiB resident")
        print(process_text(rows))
    return EXIT_OK


def cmd_maps(args: argparse.Namespace) -> int:
    if args.pid is not None:
        return _process_maps(args)
    layout, rules, start, title, _ = _scenario(args)
    outcomes, found = [], []
    for r in _live(rules, start):
        outcomes.append(observe(r))
        found.append((r.arena.rule, annotate(r.arena, sysmem.mappings())))
    code = _exit(outcomes, _expected(args, layout))
    if args.json:
        print(json.dumps({"command": "maps", "pid": os.getpid(), "layout": layout.name,
                          "rules": [{"rule": rule, "mappings": rows} for rule, rows in found], "exit": code}))
    else:
        print(f"/proc/{os.getpid()}/maps rows of the live arena ({title}), annotated with the arena's roles")
        for rule, rows in found:
            print(f"\n== {rule}\n{rows_text(rows)}")
    return code


# -- a real process's address space (--crowd) -------------------------------------


def _maps_text(path: str) -> str:
    """A maps dump's text: a file, or the name of one shipped with the package (``testing.EXAMPLE_MAPS``)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if path in EXAMPLE_MAPS:
            return example_maps(path)
        raise UsageError(f"{path}: no such file (or a shipped dump: {', '.join(EXAMPLE_MAPS)})") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


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
        why = {}
        for skipped in crowd.skipped:
            why[skipped.why] = why.get(skipped.why, 0) + 1
        left = "; ".join(f"{n} {text}" for text, n in why.items())
        print(f"arena {args.command}: crowd {path}: {len(crowd.blocks)} ranges occupied ({size_text(crowd.occupied)})"
              + (f"; not occupied: {left}" if left else ""), file=sys.stderr)
        yield


# -- arena hunt ------------------------------------------------------------------


def _one_rule(text: str) -> str:
    """A rule for --rule: a built-in name or module:attr (loaded now, so a bad one is a usage error)."""
    try:
        resolve_rule(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _rule_or_all(text: str) -> str:
    return text if text == "all" else _rule_or_release(text)


def _rule_or_release(text: str) -> str:
    return text if text == RELEASE else _one_rule(text)


def _positive(convert: Callable[[str], float], what: str) -> Callable[[str], float]:
    """An argparse type: a positive, finite number of ``what``."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive number of {what}, got {text!r}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _progress(p: hunting.Progress) -> None:
    what = "shrinking the counterexample" if p.shrinking else "searching"
    # On a terminal one line, rewritten; in a log one line a second.
    start, end = ("\r", "") if sys.stderr.isatty() else ("", "\n")
    print(f"{start}arena hunt: {what}: {p.examples:,} scenarios, {p.rate:,.0f}/s", end=end, file=sys.stderr, flush=True)


def _hunt_text(args: argparse.Namespace, result: hunting.HuntResult, outcomes: list[Outcome]) -> str:
    budget = f"{result.examples:,} scenarios" + (f" (the --time {args.time:g} s ran out)" if result.stopped == "time" else "")
    head = (f"rule {result.target} on the {result.layout.name} layout, seed {result.seed} (repeat with --seed {result.seed}), "
            f"{result.seconds:.1f} s, {result.rate:,.0f} scenarios/s")
    if result.counterexample is None:
        return f"no counterexample: the rule held for {budget}\n{head}"
    lines = [f"counterexample found after {result.examples:,} scenarios, shrunk in {result.shrink_steps:,} more", head, "",
             "minimal scenario (each answer is where the kernel's answer was placed, really mapped there):"]
    lines += ["  " + line for line in str(result.counterexample).splitlines()]
    if outcomes:
        lines += ["", report.side_by_side(outcomes)]
        lines += [f"  {o.rule}: {v}" for o in outcomes for v in o.violations]
        lines += ["", f"every decision under {outcomes[0].rule}:", report.decisions(outcomes[0])]
    else:
        lines += ["", "found (it did not fail again when replayed for display):"]
        lines += [f"  {v}" for v in result.violations]
    return "\n".join(lines)


def cmd_hunt(args: argparse.Namespace) -> int:
    from . import hunt as hunting

    layout = trace.LAYOUTS[args.layout]
    target = hunting.target_for(args.rule)
    if args.save_trace and not Path(args.save_trace).resolve().parent.is_dir():
        raise UsageError(f"--save-trace {args.save_trace}: no such directory")
    try:
        hunting.require_hypothesis()
        sysmem.default(address_bits=layout.address_bits)
    except (ImportError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    outcomes: list[Outcome] = []
    with _crowded(args, layout):
        # --time alone is the whole budget; neither: 1000 scenarios.
        examples = args.examples or (UNBOUNDED if args.time else 1000)
        result = hunting.hunt(layout=layout, target=target, examples=examples, seconds=args.time, seed=args.seed,
                              read_maps=not args.no_maps, progress=_progress)
        if sys.stderr.isatty():
            print(file=sys.stderr)
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
                    if args.save_trace and each is target:
                        trace.save(r.arena, args.save_trace)
        if outcomes and (outcomes[0].rule != result.target or not outcomes[0].violations):
            outcomes = []  # the hunted rule's replay must come first and show the failure
    code = EXIT_VIOLATION if result.counterexample is not None else EXIT_OK
    if args.json:
        print(json.dumps({"command": "hunt", **result.as_json(), "rules": [o.as_json() for o in outcomes], "exit": code}))
    else:
        print(_hunt_text(args, result, outcomes))
        if args.save_trace and outcomes:
            print(f"\ntrace saved: {args.save_trace} (replay it with: arena replay {args.save_trace})")
    if outcomes:
        _picture(args, outcomes, f"counterexample to rule {result.target}, {layout.name} layout",
                 f"minimal scenario found by arena hunt (seed {result.seed})")
    return code


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """A mistake on this command's line is one line on stderr and exit 2, unknown options included."""

    def error(message: str) -> None:
        parser.exit(EXIT_USAGE, f"{parser.prog}: {message} (see {parser.prog} --help)\n")

    known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extra = known(args, namespace)
        if extra:
            error(f"unrecognized arguments: {' '.join(extra)}")
        return namespace, extra

    parser.error, parser.parse_known_args = error, parse_known_args


def _bench_script() -> Path | None:
    # The benchmarks live beside the package in a checkout, else in the working directory.
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (root / "benchmarks" / "run.py").is_file():
            return root / "benchmarks" / "run.py"
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    script = _bench_script()
    if script is None:
        raise UsageError("no benchmarks/run.py here: run from a checkout of the project")
    flags = (["--quick"] if args.quick else []) + (["--json"] if args.json else [])
    return subprocess.run([sys.executable, str(script), *flags]).returncode


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arena", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="one JSON object on stdout, for machines")
    rules = argparse.ArgumentParser(add_help=False)
    rules.add_argument("--rule", type=_rule_or_all, metavar="RULE",
                       help=f"placement rule ({', '.join(RULES)}, or module:attr of your own), {RELEASE} "
                            "(Go 1.11's sparse heap arenas), or all side by side")
    rules.add_argument("--layout", choices=sorted(trace.LAYOUTS), help="address-space layout (bits)")
    picture = argparse.ArgumentParser(add_help=False)
    picture.add_argument("--svg", metavar="PATH", help="draw the address space to PATH")
    crowding = argparse.ArgumentParser(add_help=False)
    crowding.add_argument("--crowd", metavar="MAPS", help="run among placeholders for the mappings of a /proc/PID/maps "
                          f"dump (a file, or a shipped one: {', '.join(EXAMPLE_MAPS)})")

    d = commands.add_parser("demo", parents=[common, rules, picture, crowding], help="replay Go issue 20259 with real memory",
                            description="Replay Go issue 20259 with real memory; legacy's violations on 32-bit are the bug shown (exit 0).")
    d.add_argument("--save-trace", metavar="PATH", help="save the run as a replayable trace (needs one --rule)")
    d.set_defaults(run=cmd_demo)
    r = commands.add_parser("replay", parents=[common, rules, picture, crowding], help="replay a recorded trace (docs/trace-format.md)",
                            description="Replay a trace's kernel answers; exit 1 if verify finds a violation.")
    r.add_argument("trace", metavar="TRACE.json")
    r.set_defaults(run=cmd_replay)
    m = commands.add_parser("maps", parents=[common, rules], help="this process's mappings, annotated, for a live arena",
                            description="Run the 20259 demo (or --trace) and print the mappings its live arena holds; "
                                        "or, with --pid, another process's mappings.")
    m.add_argument("--trace", metavar="FILE", help="replay this trace instead of the 20259 scenario")
    m.add_argument("--pid", type=_pid, help="list process PID's mappings with the bytes of each resident in memory")
    m.set_defaults(run=cmd_maps)
    h = commands.add_parser("hunt", parents=[common, picture, crowding], help="search for a counterexample to a rule, with real memory",
                            description="Search for requests and kernel answers that break a placement rule (verify's "
                            "invariants, allocations reading back their bytes), with real mappings; the first one found "
                            "is shrunk to a minimal one. Exit 1 if found, 0 if none was within the budget, 2 for usage. "
                            "Needs hypothesis (the 'hunt' extra). Writing your own rule: docs/rules.md.")
    h.add_argument("--rule", type=_rule_or_release, default="fixed", metavar="RULE",
                   help=f"{', '.join(RULES)}, module:attr of your own rule, or {RELEASE} (Go 1.11's sparse heap arenas) "
                        "(default fixed)")
    h.add_argument("--layout", choices=sorted(trace.LAYOUTS), default="32", help="address-space layout (default 32)")
    h.add_argument("--examples", type=_positive(int, "scenarios"), metavar="N",
                   help="at most N scenarios (default 1000, or as many as --time allows)")
    h.add_argument("--time", type=_positive(float, "seconds"), metavar="SECONDS", help="stop searching after SECONDS")
    h.add_argument("--seed", type=_seed, help="repeat a hunt: the seed it printed")
    h.add_argument("--save-trace", metavar="PATH", help="save the counterexample as a trace (arena replay PATH exits 1)")
    h.add_argument("--no-maps", action="store_true", help="check against the arena's history only, without reading "
                   "/proc/self/maps (faster)")
    h.set_defaults(run=cmd_hunt)
    _one_line_errors(h)
    b = commands.add_parser("bench", parents=[common], help="run benchmarks/run.py")
    b.add_argument("--quick", action="store_true", help="a short run")
    b.set_defaults(run=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, sysmem.UnknownBackend, sysmem.ShimUnavailable) as exc:
        # A bad ARENA_BACKEND, or ARENA_BACKEND=cffi without the shim, is the
        # environment's mistake, reported like a bad argument.
        print(f"arena {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (``| head``) stopped early; the arena is already closed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
