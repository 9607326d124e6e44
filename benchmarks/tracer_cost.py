"""What tracing a real program costs: per traced mmap call, per run, and a Go program's wall time traced / untraced.

    python benchmarks/tracer_cost.py [--quick] [--json PATH]

- per call: tests/programs/tracee/churn.c makes N hinted mmap + munmap pairs;
  (traced - untraced) time of N pairs, less the same for 0 pairs, divided by
  2N calls. Each traced call is stopped twice (the seccomp stop, and its exit
  to read the answer).
- per run: the traced - untraced time of a program making no call of its
  own (churn 0): forking the tracer process and the program, exec, the report.
  Of it, the separate tracer process (which keeps the tracer's waitpid from
  reaping the caller's other children) costs one fork of the caller and its
  exit: measured alone as ``tracer_process_ms``.
- Go: tests/programs/tracee/alloc.go (allocates and writes 300 MiB), built
  with the installed Go (CGO off) for amd64 and 386 where they run; the
  median wall time of ``tracer.run`` (from the caller, everything included)
  over that of ``subprocess.run``, runs interleaved. Goal: at most 1.10.
- the Go test program (arena/data/programs/grow.go, 640 MiB live, every byte
  checked, ~2 s), built with the installed Go for amd64 and 386: the same
  ratio for a longer run, where the fixed cost per run weighs less (not in
  --quick).

Untraced runs go through ``subprocess.run``, as a user would start them.
Each measure is taken twice: wall time, and CPU time (user + system of
every process the run made, from ``RUSAGE_CHILDREN``, plus this process's
own), which a busy machine disturbs far less. Prints a table and, with
--json, writes the numbers. ``measure()`` is the reusable entry point
(``make bench`` calls it).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from arena import tracer  # noqa: E402

SOURCES = HERE.parent / "tests" / "programs" / "tracee"
GOAL = 1.10
BITS = struct.calcsize("P") * 8


def _cpu() -> float:
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()``."""
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def _traced(argv: list[str], calls: list[int]) -> None:
    o = tracer.run(argv, capture=True)
    if o.failed:
        raise RuntimeError(f"{argv[0]} failed traced: {o.describe()}")
    calls.append(len(o.calls) + o.calls_dropped)


def _paired(argv: list[str], repeats: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]], int]:
    """Interleaved (wall, CPU) times of ``argv`` untraced and traced, and the calls one traced run made."""
    plain, traced, calls = [], [], [0]
    for _ in range(repeats):
        plain.append(_timed(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)))
        traced.append(_timed(lambda: _traced(argv, calls)))
    return plain, traced, calls[-1]


def _median(runs: list[tuple[float, float]], k: int) -> float:
    return statistics.median(r[k] for r in runs)


def _build_c(out: Path) -> Path | None:
    if shutil.which("gcc") is None:
        return None
    exe = out / "churn"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(SOURCES / "churn.c")], check=True)
    return exe


def _build_go(out: Path, goarch: str) -> Path | None:
    if shutil.which("go") is None or (goarch == "amd64" and BITS == 32):
        return None
    exe = out / f"alloc-{goarch}"
    env = {**os.environ, "CGO_ENABLED": "0", "GOARCH": goarch, "GO111MODULE": "off"}
    r = subprocess.run(["go", "build", "-o", str(exe), str(SOURCES / "alloc.go")], env=env, capture_output=True)
    return exe if r.returncode == 0 else None


def _fork_cost(repeats: int) -> float:
    """The median time to fork this process, have the child exit and reap it."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(quick: bool = False) -> dict[str, Any]:
    """Measure everything the module's docstring lists; the numbers as a dict (seconds, microseconds, ratios)."""
    repeats = 5 if quick else 15
    n = 2000 if quick else 10000
    out: dict[str, Any] = {"python_bits": BITS, "repeats": repeats,
                           "tracer_process_ms": round(_fork_cost(4 * repeats) * 1e3, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        churn = _build_c(Path(tmp))
        if churn is not None:
            p0, t0, _ = _paired([str(churn), "0"], repeats)
            pn, tn, calls = _paired([str(churn), str(n)], repeats)
            for k, kind in enumerate(("", "_cpu")):
                fixed = _median(t0, k) - _median(p0, k)
                per_call = (_median(tn, k) - _median(pn, k) - fixed) / (2 * n)
                out[f"per_run{kind}_ms"] = round(fixed * 1e3, 2)
                out[f"per_call{kind}_us"] = round(per_call * 1e6, 1)
            out["churn_calls"] = calls
        for goarch in ("amd64", "386"):
            go = _build_go(Path(tmp), goarch)
            if go is None:
                continue
            plain, traced, calls = _paired([str(go)], repeats)
            out[f"go_{goarch}"] = _ratios(plain, traced, calls)
            grow = None if quick else _build_grow(goarch)
            if grow is not None:
                out[f"grow_{goarch}"] = _ratios(*_paired([str(grow)], max(3, repeats // 3)))
    return out


def _ratios(plain: list[tuple[float, float]], traced: list[tuple[float, float]], calls: int) -> dict[str, Any]:
    return {
        "untraced_s": round(_median(plain, 0), 4), "traced_s": round(_median(traced, 0), 4),
        "ratio": round(_median(traced, 0) / _median(plain, 0), 3),
        "untraced_cpu_s": round(_median(plain, 1), 4), "traced_cpu_s": round(_median(traced, 1), 4),
        "cpu_ratio": round(_median(traced, 1) / _median(plain, 1), 3), "calls": calls, "goal": GOAL,
    }


def _build_grow(goarch: str) -> Path | None:
    """The Go test program built with the installed Go (arena.tracer.toolchains), None where it cannot be."""
    from arena.tracer import toolchains

    if goarch == "amd64" and BITS == 32:
        return None
    try:
        return toolchains.build_program("system", goarch)
    except (toolchains.ToolchainMissing, toolchains.BuildFailed):
        return None


def table(r: dict[str, Any]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    if "per_call_us" in r:
        lines.append(f"| cost per traced call (two stops): wall, CPU | {r['per_call_us']} us, {r['per_call_cpu_us']} us |")
        lines.append(f"| fixed cost per run: wall, CPU | {r['per_run_ms']} ms, {r['per_run_cpu_ms']} ms |")
    lines.append(f"| of which the separate tracer process (a fork of the caller) | {r['tracer_process_ms']} ms |")
    for key, what in (("go", "alloc.go, 300 MiB"), ("grow", "the Go test program, 640 MiB")):
        for goarch in ("amd64", "386"):
            g = r.get(f"{key}_{goarch}")
            if g:
                verdict = "meets" if g["ratio"] <= g["goal"] else "misses"
                lines.append(f"| Go ({goarch}, {what}, {g['calls']} calls): traced / untraced wall | {g['traced_s']} s / "
                             f"{g['untraced_s']} s = {g['ratio']} ({verdict} the goal {g['goal']}) |")
                lines.append(f"| Go ({goarch}, {what}): traced / untraced CPU | {g['traced_cpu_s']} s / "
                             f"{g['untraced_cpu_s']} s = {g['cpu_ratio']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls and repeats (~10 s)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    r = measure(quick=args.quick)
    print(table(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
