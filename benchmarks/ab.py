"""`make bench-ab BASE=<rev>`: the benchmark cases of <rev> and of the working tree, interleaved, compared.

    python benchmarks/ab.py [BASE] [--quick] [--strict] [--min-speed PCT] [--only TEXT] [--json-dir DIR]

<rev> is checked out (git archive) and installed into a venv of its own under
.bench-ab/ beside the working tree's .venv, kept for the next run. Each side
runs its OWN benchmarks/cases.py with its own package, so a base from before a
module moved still runs; a case is compared when both sides have its name.
Per case the two sides alternate, base then new then new then base (one
pyperf master per side and turn, workers as in `make bench`, the C limit run
in each worker around every value), with the loop count calibrated once and
then fixed for both.

Per case the table shows new ÷ base, each side's spread, and a verdict from
pyperf's compare_to statistics (a Student t-test at 95 %, and --min-speed as
the noise band): faster, within noise, or SLOWER. Where the case's worker also
timed the C limit, the ratio compared is each value's time ÷ C's in the same
worker ("vs C"), which cancels a slow moment of the machine; the C rows and
the hunt compare raw times. The exit status is 0 whatever the verdicts; with
--strict it is 1 if a case is SLOWER. Without BASE: the newest tag reachable
from HEAD, else the commit in benchmarks/last-release.

Results in --json-dir: ab[-quick]-base.json and -new.json (pyperf suites:
`python -m pyperf compare_to` works on them), -base-pairs.jsonl and
-new-pairs.jsonl (the C limit's times beside each value), -table.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pyperf

# compare_to's own statistics (pyperf compare_to --min-speed): not a second implementation.
from pyperf._compare import CompareData, CompareResult

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LAST_RELEASE = HERE / "last-release"
CACHE = ROOT / ".bench-ab"

# rounds: base/new turns per case (ABBA order); pyperf: each turn's settings;
# min_speed: the noise band, in percent. Here a whole worker process can run a
# fifth slower than the next, and the t-test takes a worker's values as
# independent, so it is surer than it should be: the band is wide, and more
# workers (full) make a false difference rarer. Quick: 6 values from 2 workers
# per side (~1 min for 18 cases on 2 cores); full: 12 values from 6.
MODES = {
    "full": {"rounds": 3, "min_speed": 10.0,
             "pyperf": ["--processes", "2", "--values", "2", "--warmups", "1", "--min-time", "0.05"]},
    "quick": {"rounds": 2, "min_speed": 15.0,
              "pyperf": ["--processes", "1", "--values", "3", "--warmups", "1", "--min-time", "0.02"]},
}
# Quick mode: the library's hot paths, one size each, both layouts, and the C
# limit as the noise's witness (the same C code on both sides).
QUICK_CASES = ("os/{bits}/64KiB/", "growth/{bits}/256MiB/", "alloc/{bits}/8KiB/")
QUICK_VARIANTS = ("C", "cffi", "ctypes", "arena-cffi", "arena-ctypes")


def log(t0: float, text: str) -> None:
    print(f"{time.monotonic() - t0:6.1f}s {text}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def default_base() -> str:
    """The newest tag reachable from HEAD; without one, the commit benchmarks/last-release names."""
    try:
        return git("describe", "--tags", "--abbrev=0", "HEAD")
    except subprocess.CalledProcessError:
        lines = [ln.split("#")[0].strip() for ln in LAST_RELEASE.read_text().splitlines()]
        return next(ln for ln in lines if ln)


def resolve(rev: str) -> str:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        sys.exit(f"bench-ab: {rev!r} is not a commit of this clone (a shallow clone lacks old ones: git fetch --unshallow)")


class Side(NamedTuple):
    label: str
    python: str
    benchmarks: Path  # the side's benchmarks/ folder: its cases.py and C limit


def build_base(sha: str, t0: float) -> Side:
    """``sha``'s tree under .bench-ab/<sha>/src with its own venv, made once (a stamp marks it complete)."""
    home = CACHE / sha[:12]
    src, venv, stamp = home / "src", home / "venv", home / "complete"
    python = venv / "bin" / "python"
    if not stamp.exists():
        log(t0, f"building the base {sha[:12]} into {home.relative_to(ROOT)} (once)")
        shutil.rmtree(home, ignore_errors=True)
        src.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # The package and the same pyperf as this side's; not its bench extra (the chart's matplotlib is not needed).
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(src), f"pyperf=={pyperf.__version__}"],
                       check=True, stdout=sys.stderr)
        stamp.touch()
    subprocess.run(["make", "-s", "-C", str(src / "benchmarks")], check=True, stdout=sys.stderr)
    return Side("base", str(python), src / "benchmarks")


def case_names(side: Side, quick: bool) -> list[str]:
    """The side's case list, as its cases.cases(quick) yields it."""
    code = (f"import sys; sys.path.insert(0, {str(side.benchmarks)!r}); import cases; "
            f"print('\\n'.join(c[0] for c in cases.cases({quick})))")
    out = subprocess.run([side.python, "-c", code], capture_output=True, text=True, cwd=side.benchmarks.parent)
    if out.returncode:
        sys.exit(f"bench-ab: the {side.label} side's benchmarks/cases.py cannot list its cases:\n{out.stderr}")
    return out.stdout.split()


def chosen(base: list[str], new: list[str], quick: bool, only: str) -> list[str]:
    """The cases both sides have, in the new side's order; in quick mode the hot paths only."""
    have = set(base)
    common = [n for n in new if n in have and only in n]
    if quick:
        stems = [s.format(bits=b) for s in QUICK_CASES for b in (32, 64)]
        common = [n for n in common if any(n.startswith(s) for s in stems) and n.rsplit("/", 1)[1] in QUICK_VARIANTS]
    return common


class Files(NamedTuple):
    suite: Path
    pairs: Path


def turn(side: Side, name: str, files: Files, settings: list[str], loops: int | None) -> None:
    """One pyperf master of ``side`` for case ``name``, appending to the side's suite and pairs."""
    # cases.py selects by substring: a name inside another (view/64/8KiB/arena) runs both; the other is ignored.
    cmd = [side.python, str(side.benchmarks / "cases.py"), "--quiet", *settings, "--pairs", str(files.pairs),
           "--only", name, *(["--loops", str(loops)] if loops else []),
           *(["--append", str(files.suite)] if files.suite.exists() else ["-o", str(files.suite)])]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=side.benchmarks.parent)
    if out.returncode:
        sys.exit(f"bench-ab: {side.label} failed on {name} (exit {out.returncode}):\n{out.stdout}{out.stderr}")


def loops_of(suite: Path, name: str) -> int:
    return pyperf.BenchmarkSuite.load(str(suite)).get_benchmark(name).get_metadata()["loops"]


def relative_to_c(pairs: Path) -> dict[str, pyperf.Benchmark]:
    """Per case, a benchmark whose values are each value's time ÷ the C limit's in the same worker (warm-ups left out)."""
    values = defaultdict(list)
    for line in pairs.read_text().splitlines() if pairs.exists() else ():
        record = json.loads(line)
        values[record["name"]] += [x / c for _, c, x in record["pairs"][record["warmups"]:]]
    return {name: pyperf.Benchmark([pyperf.Run(v, metadata={"name": name}, collect_metadata=False)])
            for name, v in values.items() if v}


def spread(bench: pyperf.Benchmark) -> str:
    return f"±{bench.stdev() / bench.mean():.0%}" if bench.get_nvalue() > 1 else "-"


def compare(names: list[str], base: Files, new: Files, min_speed: float) -> tuple[list[dict], list[str]]:
    """A row per case: the ratio compared, each side's spread, the verdict."""
    raw = [{b.get_name(): b for b in pyperf.BenchmarkSuite.load(str(f.suite)).get_benchmarks()} for f in (base, new)]
    vs_c = [relative_to_c(f.pairs) for f in (base, new)]
    rows, slower = [], []
    for name in names:
        paired = name in vs_c[0] and name in vs_c[1]
        b, n = (vs_c[0][name], vs_c[1][name]) if paired else (raw[0][name], raw[1][name])
        result = CompareResult(CompareData("base", b), CompareData("new", n), min_speed)
        ratio = result.norm_mean
        verdict = "within noise" if not result.significant else "SLOWER" if ratio > 1 else "faster"
        if name.endswith("/C") and verdict != "within noise":
            # The same C code on both sides: a difference is the machine's, and says how far to trust the rest.
            verdict = f"noise ({verdict.lower()})"
        if verdict == "SLOWER":
            slower.append(name)
        rows.append({"case": name, "measure": "vs C" if paired else "raw", "ratio": ratio,
                     "raw": raw[1][name].mean() / raw[0][name].mean(), "spread_new": spread(n), "spread_base": spread(b),
                     "values": f"{n.get_nvalue()}/{b.get_nvalue()}", "verdict": verdict})
    return rows, slower


def table(rows: list[dict], base_label: str, min_speed: float) -> str:
    lines = [f"new (working tree) ÷ base ({base_label}): time per operation, so above 1 is slower. "
             f"Noise band: {min_speed:g} % (pyperf compare_to --min-speed), and a t-test at 95 %.",
             "measure: vs C = each value's time ÷ the C limit's in the same worker; raw = the times themselves. "
             "A C row runs the same code on both sides: a difference there is the machine's (noise).", "",
             "| case | measure | new ÷ base | raw new ÷ base | spread new / base | values new / base | verdict |",
             "|---|---|---:|---:|---|---|---|"]
    for r in rows:
        verdict = f"**{r['verdict']}**" if r["verdict"] == "SLOWER" else r["verdict"]
        lines.append(f"| {r['case']} | {r['measure']} | {r['ratio']:.3f} | {r['raw']:.3f} | "
                     f"{r['spread_new']} / {r['spread_base']} | {r['values']} | {verdict} |")
    return "\n".join(lines) + "\n"


def footer(rows: list[dict], slower: list[str]) -> str:
    """The cases SLOWER than the noise band allows, and whether the C limit itself moved."""
    moved = [r["case"] for r in rows if r["verdict"].startswith("noise")]
    text = (f"\nSLOWER than the noise band allows: {', '.join(slower)}\n" if slower
            else "\nNo case slower than the noise band allows.\n")
    if moved:
        text += (f"The C limit, the same code on both sides, moved beyond the band in {', '.join(moved)}: "
                 "the machine was noisier than the band; run again before trusting a verdict.\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", nargs="?", help="the commit, tag or branch to compare with (default: see above)")
    p.add_argument("--quick", action="store_true", help="the hot paths only, fewer values (CI; about 2 minutes)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a case is slower than the noise band allows")
    p.add_argument("--min-speed", type=float, help="the noise band in percent (default: 15 quick, 10 full)")
    p.add_argument("--only", default="", help="only cases whose name contains this text")
    p.add_argument("--json-dir", type=Path, default=HERE / "results")
    args = p.parse_args()
    mode = MODES["quick" if args.quick else "full"]
    min_speed = mode["min_speed"] if args.min_speed is None else args.min_speed
    t0 = time.monotonic()
    label = args.base or default_base()
    sha = resolve(label)
    base = build_base(sha, t0)
    subprocess.run(["make", "-s", "-C", str(HERE)], check=True, stdout=sys.stderr)
    new = Side("new", sys.executable, HERE)
    names = chosen(case_names(base, args.quick), case_names(new, args.quick), args.quick, args.only)
    if not names:
        sys.exit("bench-ab: the two sides share no case" + (f" containing {args.only!r}" if args.only else ""))
    stem = "ab-quick" if args.quick else "ab"
    args.json_dir.mkdir(parents=True, exist_ok=True)
    files = {s.label: Files(args.json_dir / f"{stem}-{s.label}.json", args.json_dir / f"{stem}-{s.label}-pairs.jsonl")
             for s in (base, new)}
    for f in files.values():
        f.suite.unlink(missing_ok=True)
        f.pairs.unlink(missing_ok=True)
    log(t0, f"{len(names)} cases, base {label} ({sha[:12]}) against the working tree, {mode['rounds']} rounds each")
    for i, name in enumerate(names, 1):
        loops = None
        for r in range(mode["rounds"]):
            # new first in the first round: it calibrates the loops both sides then run.
            for side in ((new, base) if r % 2 == 0 else (base, new)):
                turn(side, name, files[side.label], mode["pyperf"], loops)
                loops = loops or loops_of(files[side.label].suite, name)
        log(t0, f"[{i:2d}/{len(names)}] {name}")
    rows, slower = compare(names, files["base"], files["new"], min_speed)
    text = table(rows, f"{label}, {sha[:12]}", min_speed) + footer(rows, slower)
    (args.json_dir / f"{stem}-table.md").write_text(text)
    log(t0, f"done: {args.json_dir / stem}-table.md")
    print(text, end="")
    sys.exit(1 if slower and args.strict else 0)


if __name__ == "__main__":
    main()
