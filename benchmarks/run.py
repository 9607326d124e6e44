"""`make bench`: build the C limit, run every case, report.

    python benchmarks/run.py [--quick] [--json-dir benchmarks/results] [--rounds N] [--only TEXT]

A round runs the whole case list once (each C limit right before its Python
variants, and again inside each variant's worker, around every value: see
cases.py) and appends its runs to the same pyperf JSON; --rounds N spreads a
benchmark's values over N moments of the session. Progress goes to stderr, a
line per case with its median and median absolute deviation (the table's
statistic), the table to stdout; JSON, table and chart land in --json-dir:
  bench[-quick].json          the pyperf suite (python -m pyperf compare_to/stats work on it)
  bench[-quick]-pairs.jsonl   the C limit's times measured in each Python variant's worker
  bench[-quick]-summary.json  rows, ratios, scale curves, goals, machine
  bench[-quick]-table.md      the table
  bench[-quick].png           ratios to the C limit and the scale curve
  bench[-quick]-tracer.json   what tracing a real program costs (tracer_cost.py): per call, per run, a Go
                              program traced / untraced; its table is a section of the table
  bench[-quick]-program-hunt.json  a real-program hunt (program_hunt.py): scenarios/s with 1 job and 2,
                              the share outside the program; its table is the table's last section
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import cases  # noqa: E402
import climit  # noqa: E402
import program_hunt  # noqa: E402
import report  # noqa: E402
import tracer_cost  # noqa: E402

# pyperf settings per mode: worker processes, values per process, warm-ups,
# minimum time per value. Full: ~4 min on 2 cores; quick: ~45 s. Worker start-up
# dominates a case's time (pyperf also starts one to calibrate the loops). The
# ratios compare each value with the C limit run in the same worker, so more
# workers per case, not more rounds, is what steadies them.
MODES = {
    "full": {"rounds": 1, "pyperf": ["--processes", "2", "--values", "5", "--warmups", "1", "--min-time", "0.05"]},
    "quick": {"rounds": 1, "pyperf": ["--processes", "1", "--values", "2", "--warmups", "1", "--min-time", "0.02"]},
}


def run_round(number: int, rounds: int, quick: bool, only: str, settings: list[str], out: Path, pairs: Path,
              total: int, t0: float) -> None:
    cmd = [sys.executable, str(HERE / "cases.py"), "--quiet", *settings, "--pairs", str(pairs)]
    cmd += ["--quick"] if quick else []
    cmd += ["--only", only] if only else []
    cmd += ["--append", str(out)] if out.exists() else ["-o", str(out)]
    done = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent) as proc:
        for line in proc.stdout:
            line = line.strip()
            # pyperf's own line per case shows the mean; cases.py prints the median, as the table does.
            if not line or set(line) <= {"."} or ": Mean +- std dev:" in line:
                continue
            if ": median " in line:
                done += 1
                line = f"[round {number}/{rounds}] [{done:2d}/{total}] {line}"
            print(f"{time.monotonic() - t0:6.1f}s {line}", file=sys.stderr, flush=True)
    if proc.returncode:
        sys.exit(f"benchmarks/cases.py failed in round {number} (exit {proc.returncode})")


def tracer_section(quick: bool, out: Path, stem: str, t0: float) -> str:
    """Measure the tracer's cost (tracer_cost.measure), save it beside the suite, and add its table to the report."""
    print(f"{time.monotonic() - t0:6.1f}s tracing real programs (tracer_cost.py)", file=sys.stderr, flush=True)
    numbers = tracer_cost.measure(quick=quick)
    (out / f"{stem}-tracer.json").write_text(json.dumps(numbers, indent=1) + "\n")
    summary = out / f"{stem}-summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "tracer": numbers}, indent=1) + "\n")
    section = ("\n## Tracing a real program (benchmarks/tracer_cost.py)\n\n" + tracer_cost.table(numbers) + "\n")
    with open(out / f"{stem}-table.md", "a", encoding="utf-8") as f:
        f.write(section)
    return section


def program_hunt_section(quick: bool, out: Path, stem: str, t0: float) -> str:
    """Measure a real-program hunt with 1 job and 2 (program_hunt.measure), save it beside the suite, add its table."""
    print(f"{time.monotonic() - t0:6.1f}s hunting a real program, 1 job then 2 (program_hunt.py)", file=sys.stderr, flush=True)
    figures = program_hunt.measure(quick)
    (out / f"{stem}-program-hunt.json").write_text(json.dumps(figures, indent=1) + "\n")
    summary = out / f"{stem}-summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "program_hunt": figures}, indent=1) + "\n")
    section = "\n## Hunting a real program (benchmarks/program_hunt.py)\n\n" + program_hunt.table(figures) + "\n"
    with open(out / f"{stem}-table.md", "a", encoding="utf-8") as f:
        f.write(section)
    return section


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer cases, one round, one process per case (< 60 s)")
    p.add_argument("--json-dir", type=Path, default=HERE / "results")
    p.add_argument("--rounds", type=int, help="run the case list this many times (default 1)")
    p.add_argument("--only", default="", help="run only cases whose name contains this text")
    p.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    args = p.parse_args()
    mode = MODES["quick" if args.quick else "full"]
    rounds = args.rounds or mode["rounds"]
    stem = "bench-quick" if args.quick else "bench"
    t0 = time.monotonic()
    print("building the C limit (make -C benchmarks)", file=sys.stderr, flush=True)
    print("a line per case: its median ± median absolute deviation, the statistic of the table", file=sys.stderr, flush=True)
    climit.build()
    total = sum(args.only in case[0] for case in cases.cases(args.quick))
    args.json_dir.mkdir(parents=True, exist_ok=True)
    tmp, tmp_pairs = args.json_dir / f"{stem}.json.tmp", args.json_dir / f"{stem}-pairs.jsonl.tmp"
    tmp.unlink(missing_ok=True)
    tmp_pairs.unlink(missing_ok=True)
    for r in range(1, rounds + 1):
        run_round(r, rounds, args.quick, args.only, mode["pyperf"], tmp, tmp_pairs, total, t0)
    final = args.json_dir / f"{stem}.json"
    os.replace(tmp, final)
    # No paired case may have run (--only hunt): the pairs file is then empty.
    tmp_pairs.touch()
    os.replace(tmp_pairs, args.json_dir / f"{stem}-pairs.jsonl")
    text = report.report(final, args.json_dir, stem)
    if not args.only or args.only in "tracer":
        text += tracer_section(args.quick, args.json_dir, stem, t0)
    if not args.only or args.only in "program-hunt":
        text += program_hunt_section(args.quick, args.json_dir, stem, t0)
    print(f"{time.monotonic() - t0:6.1f}s done: {final}, {stem}-summary.json, {stem}-table.md, {stem}.png",
          file=sys.stderr, flush=True)
    print((args.json_dir / f"{stem}-summary.json").read_text() if args.json else text, end="")


if __name__ == "__main__":
    main()
