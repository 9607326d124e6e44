"""What a real-program hunt costs: scenarios per second on the Go test program with 1 job and with 2, and the share
of a scenario spent outside the program.

    python benchmarks/program_hunt.py [--quick] [--json PATH]

The program: arena/data/programs/grow.go built for 386 with Go 1.9 (a runtime
the hunt does not break, so every scenario runs it to its end; the system Go
where Go 1.9 is not built), 640 MiB live (128 MiB with --quick). The hunt:
moved and misaligned answers (refused ones end a Go program early, which
would flatter the rate), a fixed number of scenarios with 1 job, then with
2, in interleaved rounds, beside the untraced program run 1 and 2 at a time
(what the machine gives two runs at once just then: on a machine shared
with other work, the most 2 jobs can gain). Per scenario, with N jobs: N x
the search's seconds / scenarios.
"Outside the program" is the rest once the program's own wall time, as the
tracer measured it (from its start to its end, its stops included) is taken
away: forking the tracer and the program, reading the report, judging,
drawing plans. "Over an untraced run" also counts the tracer's stops: one
minus the untraced run's median time over the per-scenario time. Goals: 2
jobs at least 1.8 x one job; outside the program at most 10%. The machine's
load (os.getloadavg) is recorded beside them. ``measure()`` is the entry point
(benchmarks/run.py calls it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from arena.harness.program_hunt import hunt_program  # noqa: E402
from arena.tracer.toolchains import ToolchainMissing, build_program  # noqa: E402

SPEEDUP_GOAL, OUTSIDE_GOAL = 1.8, 0.10


def _program() -> tuple[str, str]:
    for name in ("go1.9", "system"):
        try:
            return name, str(build_program(name, "386"))
        except ToolchainMissing:
            continue
    raise SystemExit("no Go toolchain: make go-toolchains, or apt-get install golang-go")


def _plain(argv: list[str], at_once: int) -> float:
    """Runs per second of ``at_once`` untraced runs started together."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(at_once)]
    if any(p.wait() for p in procs):
        raise SystemExit(f"{argv[0]} failed on its own")
    return at_once / (time.perf_counter() - t0)


def measure(quick: bool = False) -> dict[str, Any]:
    """Run the hunt with 1 job and 2 on the Go test program, and the program alone 1 and 2 at a time, in
    interleaved rounds; the figures as a dict."""
    toolchain, program = _program()
    argv = [program, "128" if quick else "640"]
    rounds, scenarios = (1, 4) if quick else (2, 6)
    out: dict[str, Any] = {"program": f"grow.go, {toolchain}, 386, {argv[1]} MiB live", "rounds": rounds,
                           "load_before": [round(x, 2) for x in os.getloadavg()]}
    plain: dict[int, list[float]] = {1: [], 2: []}
    hunts: dict[int, list[Any]] = {1: [], 2: []}
    untraced = []
    # Interleaved, so that the machine's other work weighs on each the same.
    for r in range(rounds):
        for jobs in (1, 2):
            plain[jobs].append(_plain(argv, jobs))
            if jobs == 1:
                untraced.append(1 / plain[1][-1])
            hunts[jobs].append(hunt_program(argv, examples=scenarios, seed=1 + r, jobs=jobs, answers="moved,misaligned"))
    plain_s = statistics.median(untraced)
    for jobs in (1, 2):
        done = sum(h.scenarios for h in hunts[jobs])
        seconds = sum(h.search_seconds for h in hunts[jobs])
        runs = sum(h.runs for h in hunts[jobs])
        per = jobs * seconds / done
        program_s = sum(h.program_seconds for h in hunts[jobs]) / runs
        out[f"jobs{jobs}"] = {
            "scenarios": done, "found": any(h.counterexample for h in hunts[jobs]), "seconds": round(seconds, 2),
            "rate": round(done / seconds, 3), "per_scenario_s": round(per, 3), "program_s": round(program_s, 3),
            "outside_share": round(1 - program_s / per, 4), "over_untraced": round(1 - plain_s / per, 4),
            "plain_rate": round(statistics.mean(plain[jobs]), 3),
        }
    out["untraced_s"] = round(plain_s, 3)
    out["speedup"] = round(out["jobs2"]["rate"] / out["jobs1"]["rate"], 2)
    # What the machine gives two runs at once just now: the most the hunt's 2 jobs could get.
    out["machine_speedup"] = round(out["jobs2"]["plain_rate"] / out["jobs1"]["plain_rate"], 2)
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out["goals"] = {"speedup >= 1.8": out["speedup"] >= SPEEDUP_GOAL,
                    "outside <= 10%": max(out[f"jobs{j}"]["outside_share"] for j in (1, 2)) <= OUTSIDE_GOAL}
    return out


def table(m: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    rows = ["| jobs | scenarios | scenarios/s | s per scenario (x jobs) | program's own s | outside the program | "
            "over an untraced run | untraced runs/s, as many at once |",
            "|---|---|---|---|---|---|---|---|"]
    for jobs in (1, 2):
        j = m[f"jobs{jobs}"]
        rows.append(f"| {jobs} | {j['scenarios']} | {j['rate']:.3f} | {j['per_scenario_s']:.2f} | {j['program_s']:.2f} | "
                    f"{j['outside_share']:.1%} | {j['over_untraced']:.1%} | {j['plain_rate']:.3f} |")
    return (f"Real-program hunt: {m['program']} (untraced {m['untraced_s']:.2f} s); 2 jobs / 1 job: {m['speedup']:.2f} "
            f"(goal >= {SPEEDUP_GOAL}; the program alone, 2 at once / 1: {m['machine_speedup']:.2f}); "
            f"load {m['load_before']} before, {m['load_after']} after\n\n" + "\n".join(rows) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="128 MiB live, one round of 4 scenarios per job count (about a minute)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    m = measure(args.quick)
    if args.json:
        args.json.write_text(json.dumps(m, indent=1) + "\n")
    print(table(m), end="")


if __name__ == "__main__":
    main()
