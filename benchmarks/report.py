"""From a pyperf suite to what people read: the table, the summary JSON and the chart.

    python benchmarks/report.py benchmarks/results/bench.json [--out-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

# The goals: reported, never asserted.
GOALS = {
    "os": ("OS layer, cffi: share of the C limit", 0.80, ">="),
    "growth": ("arena growth (fixed rule), cffi: share of the C limit", 0.60, ">="),
    "cffi/ctypes": ("cffi backend / ctypes backend speed", 1.30, ">="),
    "scale": ("cost per op at the top level / at 100 regions", 1.25, "<="),
    # Not one of the goals: the same growth with the kernel's own share
    # divided out, which the C limit at the same level (in the same worker)
    # measures. It separates what our code adds from what the kernel's mapping
    # tree costs.
    "scale/C": ("(also) the same, each level relative to the C limit at that level", 1.25, "<="),
    "view": ("a view of an allocation: ns per view", 1000, "<="),
    "history": ("sys_alloc with history off / with history on (speed, each against the C limit)", 1.0, ">="),
    "hunt": ("arena hunt on the 32-bit layout: scenarios/s", 1000, ">="),
    # Issue 24's, each on the process's own layout (the 64-bit one natively, the 32-bit one in i386).
    "os/24": ("OS layer pairs, cffi, own layout: share of the C limit", 0.78, ">="),
    "growth/24": ("arena growth, cffi, own layout: share of the C limit", 0.50, ">="),
    "heap/24": ("heap arenas' growth (go1.11), cffi, own layout: share of the C limit", 0.45, ">="),
    "hunt/jobs": ("arena hunt --jobs 2 / --jobs 1: scenarios/s", 1.8, ">="),
}
VARIANTS = ("C", "floor", "shim", "cffi", "ctypes", "mmap", "arena-cffi", "arena-ctypes", "go1.11-cffi", "go1.11-ctypes",
            "history-on", "history-off", "arena", "arena-history-off")
GROUPS = ("os", "growth", "alloc", "history", "view")
# What a group's ratios divide by: the C limit, except for views, where C has
# no counterpart and the floor is memoryview of a ctypes array.
REFERENCE = {"view": "floor"}


def load(path: Path) -> dict:
    """``{(group, layout, case, variant): (median seconds, MAD)}``, the machine, and when the suite ran, from a pyperf suite."""
    import pyperf  # only here: the rest of the report reads plain data, and the tests import it without the bench extra

    suite = pyperf.BenchmarkSuite.load(str(path))
    times, meta, dates = {}, {}, []
    for bench in suite.get_benchmarks():
        group, layout, case, variant = bench.get_name().split("/")
        # Median of the repeats, with its median absolute deviation: robust to a noisy neighbour.
        times[group, int(layout), case, variant] = (bench.median(), bench.median_abs_dev() if bench.get_nvalue() > 1 else 0.0)
        meta = meta or bench.get_metadata()
        dates += [d for d in bench.get_dates() or () if d]
    when = (min(dates).isoformat(timespec="seconds"), max(dates).isoformat(timespec="seconds")) if dates else (None, None)
    return {"times": times, "meta": meta, "dates": when}


class Paired(NamedTuple):
    """What a Python variant's worker measured, value by value: the C limit's time beside its own."""

    ratio: float  # the median of the values' C / variant ratios ("ratio to C")
    low: float  # the lowest of those ratios
    high: float  # the highest
    c_ns: float  # the median C time per op in those workers


def load_pairs(path: Path) -> dict[str, Paired]:
    """``{name: Paired}`` from the times measured in the same worker; warm-ups are left out."""
    values = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            values[record["name"]] += [(c / loops, x / loops) for loops, c, x in record["pairs"][record["warmups"]:]]
    out = {}
    for name, v in values.items():
        ratios = [c / x for c, x in v]
        out[name] = Paired(statistics.median(ratios), min(ratios), max(ratios), statistics.median(c for c, _ in v) * 1e9)
    return out


def machine(meta: dict) -> dict:
    try:
        max_map_count = int(Path("/proc/sys/vm/max_map_count").read_text())
    except OSError:
        max_map_count = None
    return {
        "cpu": meta.get("cpu_model_name", platform.processor()),
        "cpus": meta.get("cpu_count", os.cpu_count()),
        "platform": meta.get("platform", platform.platform()),
        "python": meta.get("python_version", platform.python_version()),
        "pointer_bits": meta.get("arena_native_bits"),
        "vm.max_map_count": max_map_count,
    }


def provenance(data: dict) -> dict:
    """When the suite ran, and which arena: version and git commit (``+dirty``: files differed from it)."""
    meta = data["meta"]
    start, end = data["dates"]
    return {"started": start, "finished": end, "arena_version": meta.get("arena_version"),
            "arena_commit": meta.get("arena_commit")}


def rows(times: dict, paired: dict[str, Paired]) -> list[dict]:
    """One row per variant of the os, growth and alloc cases, with its ratios.

    ``ratio_to_c`` divides the C limit's time run in the same worker
    (``c_ns_same_worker``) by the variant's, value by value (``paired``);
    ``ratio_to_c_row`` divides the C row's ``ns_per_op`` by this row's.
    """
    out = []
    cases = sorted({k[:3] for k in times if k[0] in GROUPS}, key=lambda k: (GROUPS.index(k[0]), k[1], _bytes(k[2])))
    for group, layout, case in cases:
        reference = REFERENCE.get(group, "C")
        c = times.get((group, layout, case, reference))
        for variant in VARIANTS:
            t = times.get((group, layout, case, variant))
            if t is None:
                continue
            row = {"group": group, "layout": layout, "case": case, "variant": variant,
                   "ns_per_op": t[0] * 1e9, "mad_ns": t[1] * 1e9, "ops_per_s": 1 / t[0]}
            row["ratio_to_c_row"] = c[0] / t[0] if c else None
            pair = paired.get(f"{group}/{layout}/{case}/{variant}")
            row["c_ns_same_worker"] = row["ns_per_op"] if variant == reference else pair.c_ns if pair else None
            row["ratio_to_c"] = 1.0 if variant == reference else pair.ratio if pair else row["ratio_to_c_row"]
            row["ratio_to_c_range"] = [pair.low, pair.high] if pair and variant != reference else None
            out.append(row)
    # cffi over ctypes: the ratio of their ratios to C, so the C limit's drift cancels too.
    by_key = _by_key(out)
    for (group, layout, case, variant), row in by_key.items():
        twin = by_key.get((group, layout, case, {"cffi": "ctypes", "arena-cffi": "arena-ctypes", "go1.11-cffi": "go1.11-ctypes"}.get(variant)))
        row["cffi_over_ctypes"] = row["ratio_to_c"] / twin["ratio_to_c"] if twin else None
    return out


def scale(times: dict, paired: dict[str, Paired]) -> tuple[dict, dict]:
    """``{"layout/variant": {level: ns per op}}`` for the scale cases, and the
    same series' ratios to the C limit measured in their workers."""
    series, ratios = defaultdict(dict), defaultdict(dict)
    for (group, layout, case, variant), t in times.items():
        if group == "scale":
            series[f"{layout}/{variant}"][int(case)] = t[0] * 1e9
            r = paired.get(f"scale/{layout}/{case}/{variant}")
            if r is not None:
                ratios[f"{layout}/{variant}"][int(case)] = r.ratio
    order = lambda d: {k: dict(sorted(v.items())) for k, v in sorted(d.items())}  # noqa: E731
    return order(series), order(ratios)


def _by_key(table: list[dict]) -> dict:
    return {(r["group"], r["layout"], r["case"], r["variant"]): r for r in table}


def hunt_rows(times: dict) -> list[dict]:
    """Scenarios per second of ``arena hunt``, per layout, with and without verify's maps read."""
    return [{"layout": layout, "rule": case, "variant": variant, "scenarios_per_s": 1 / t[0],
             "us_per_scenario": t[0] * 1e6, "mad_us": t[1] * 1e6}
            for (group, layout, case, variant), t in sorted(times.items()) if group == "hunt"]


def goals(table: list[dict], curves: dict, ratios: dict, hunts: list[dict]) -> list[dict]:
    out = []

    def add(key, what, value):
        label, goal, op = GOALS[key]
        met = value >= goal if op == ">=" else value <= goal
        # How far from the goal, as a share of it: positive = headroom, negative = missed by.
        margin = (value / goal - 1) if op == ">=" else (goal / value - 1)
        out.append({"goal": label, "case": what, "target": f"{op} {goal}", "measured": round(value, 3),
                    "met": met, "margin": f"{margin:+.0%}"})

    own = max((r["layout"] for r in table), default=None)  # the widest layout measured is the process's own
    for r in table:
        where = f"{r['group']}/{r['layout']}/{r['case']}"
        if r["group"] == "os" and r["variant"] == "cffi":
            add("os", where, r["ratio_to_c"])
            if r["layout"] == own:
                add("os/24", where, r["ratio_to_c"])
        if r["layout"] == own and r["group"] == "growth" and r["variant"] in ("arena-cffi", "go1.11-cffi"):
            add("growth/24" if r["variant"] == "arena-cffi" else "heap/24", where, r["ratio_to_c"])
        if r["group"] == "growth" and r["variant"] == "arena-cffi":
            add("growth", where, r["ratio_to_c"])
        if r["group"] == "os" and r["cffi_over_ctypes"] is not None:
            add("cffi/ctypes", f"{where}/{r['variant']}", r["cffi_over_ctypes"])
        if r["group"] == "view" and r["variant"] != "floor":
            add("view", f"{where}/{r['variant']}", r["ns_per_op"])
    # Off over on, each measured against the C limit in its own worker: the drift cancels.
    by_key = _by_key(table)
    for (group, layout, case, variant), r in by_key.items():
        on = by_key.get((group, layout, case, "history-on"))
        if variant == "history-off" and on and r["ratio_to_c"] and on["ratio_to_c"]:
            add("history", f"{group}/{layout}/{case}", r["ratio_to_c"] / on["ratio_to_c"])
    for name, curve in curves.items():
        if len(curve) > 1 and not name.endswith("/C"):
            lo, hi = min(curve), max(curve)
            add("scale", f"scale/{name} {hi} vs {lo}", curve[hi] / curve[lo])
            flat = growth_over_c(ratios.get(name, {}), lo, hi)
            if flat is not None:
                add("scale/C", f"scale/{name} {hi} vs {lo}", flat)
    for h in hunts:
        if h["layout"] == 32 and h["variant"] == "maps":
            add("hunt", f"hunt/32/{h['rule']}/maps", h["scenarios_per_s"])
            two = [j for j in hunts if (j["layout"], j["rule"], j["variant"]) == (32, h["rule"], "maps-2-jobs")]
            if two:
                add("hunt/jobs", f"hunt/32/{h['rule']}/maps-2-jobs vs maps", two[0]["scenarios_per_s"] / h["scenarios_per_s"])
    return out


def growth_over_c(ratios: dict, lo: int, hi: int) -> float | None:
    """``(cost / C) at hi`` over ``(cost / C) at lo``, from a series' ratios to C, if both were measured."""
    if lo not in ratios or hi not in ratios:
        return None
    return ratios[lo] / ratios[hi]


def _bytes(case: str) -> int:
    return int(case[:-3]) << (20 if case.endswith("MiB") else 10)


def _ratio(x):
    return "" if x is None else f"{x:.2f}"


def _ns(x):
    return "" if x is None else f"{x:,.0f}"


def table_text(table: list[dict], curves: dict, ratios: dict, checks: list[dict], where: dict, hunts: list[dict],
               run: dict | None = None) -> str:
    run = run or {}
    lines = [f"Machine: {where['cpu']}, {where['cpus']} CPUs, {where['platform']}, Python {where['python']}, "
             f"{where['pointer_bits']}-bit process, vm.max_map_count={where['vm.max_map_count']}",
             f"Run: {run.get('started') or 'date unknown'} to {run.get('finished') or '?'}, arena "
             f"{run.get('arena_version') or '(version not recorded)'}, commit {run.get('arena_commit') or '(not recorded)'}", "",
             "Every time is the median of the values, ± their median absolute deviation, in ns per operation; "
             "higher ratios are faster. How each ratio column divides:",
             "",
             "- ratio to C = C's time ÷ this variant's, value by value: each Python variant's worker also runs the "
             "C limit, as many loops, around each of its values, so both times of a value see the same machine at "
             "the same moment. The column shows the median of the values' ratios and, in brackets, the lowest and "
             "the highest. \"C, same worker\" is the median of C's times there: it can differ from the C row's own "
             "ns/op, measured by its own workers at another moment, and \"C, same worker\" ÷ ns/op (a ratio of two "
             "medians) comes close to the median ratio, exactly only when the values agree.",
             "- C row ÷ this row = the C row's ns/op ÷ this row's ns/op (different workers, different moments).",
             "- cffi ÷ ctypes = this row's ratio to C ÷ the ctypes row's ratio to C.",
             "- In the view rows the reference is the floor (memoryview of a ctypes array at the address), not C.", ""]
    lines.append("| layout | case | variant | ops/s | ns/op (median ± MAD) | C, same worker (ns/op) | ratio to C | "
                 "C row ÷ this row | cffi ÷ ctypes |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in table:
        spread = " ({:.2f}–{:.2f})".format(*r["ratio_to_c_range"]) if r["ratio_to_c_range"] else ""
        lines.append(f"| {r['layout']}-bit | {r['group']} {r['case']} | {r['variant']} | {r['ops_per_s']:,.0f} | "
                     f"{r['ns_per_op']:,.0f} ± {r['mad_ns']:,.0f} | {_ns(r['c_ns_same_worker'])} | {_ratio(r['ratio_to_c'])}{spread} | "
                     f"{_ratio(r['ratio_to_c_row'])} | {_ratio(r['cffi_over_ctypes'])} |")
    if curves:
        levels = sorted({lv for c in curves.values() for lv in c})
        lines += ["", "Scale: ns per operation with N live regions (32: 32-bit layout, 64: 64-bit)", ""]
        lines.append("| series | " + " | ".join(f"{lv:,}" for lv in levels) + " | top/100 | top/100, relative to C |")
        lines.append("|---|" + "---:|" * (len(levels) + 2))
        for name, c in curves.items():
            cells = [f"{c[lv]:,.0f}" if lv in c else "" for lv in levels]
            flat = growth_over_c(ratios.get(name, {}), min(c), max(c))
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {c[max(c)] / c[min(c)]:.2f} | {_ratio(flat)} |")
    if hunts:
        lines += ["", "Hunt: scenarios per second of `arena hunt` (hypothesis included), rule fixed; maps: verify "
                  "reads /proc/self/maps, no-maps: it checks the arena's history only; maps-2-jobs: maps, with "
                  "--jobs 2 (two processes, their start and end included)", "",
                  "| layout | rule | variant | scenarios/s | µs/scenario (median ± MAD) |", "|---|---|---|---:|---:|"]
        lines += [f"| {h['layout']}-bit | {h['rule']} | {h['variant']} | {h['scenarios_per_s']:,.0f} | "
                  f"{h['us_per_scenario']:,.0f} ± {h['mad_us']:,.0f} |" for h in hunts]
    lines += ["", "| goal | case | target | measured | met | margin |", "|---|---|---|---:|---|---:|"]
    for g in checks:
        lines.append(f"| {g['goal']} | {g['case']} | {g['target']} | {g['measured']} | {'yes' if g['met'] else '**NO**'} | {g['margin']} |")
    return "\n".join(lines) + "\n"


# What each variant in the chart is, for its legend.
VARIANT_WORDS = {
    "shim": "shim: the compiled shim from a bare loop (no layer)",
    "cffi": "cffi: OS layer, compiled backend",
    "ctypes": "ctypes: OS layer, ctypes backend",
    "mmap": "mmap: Python's mmap module",
    "arena-cffi": "arena-cffi: Arena over the compiled backend",
    "arena-ctypes": "arena-ctypes: Arena over ctypes",
    "go1.11-cffi": "go1.11-cffi: HeapArenas over the compiled backend",
    "go1.11-ctypes": "go1.11-ctypes: HeapArenas over ctypes",
    "history-on": "history-on: sys_alloc keeping every decision",
    "history-off": "history-off: sys_alloc keeping none",
    "arena": "arena: Arena.view",
    "arena-history-off": "arena-history-off: Arena.view, no history",
}


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def chart(table: list[dict], curves: dict, ratios: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    bars = [r for r in table if r["ratio_to_c"] is not None and r["variant"] not in ("C", *REFERENCE.values())]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, max(5, 0.28 * len(bars) + 2.5)),
                                   gridspec_kw={"width_ratios": [3, 2]})
    colors = {"shim": "tab:purple", "cffi": "tab:blue", "ctypes": "tab:orange", "mmap": "tab:gray",
              "arena-cffi": "tab:green", "arena-ctypes": "tab:red", "go1.11-cffi": "darkgreen", "go1.11-ctypes": "darkred",
              "history-on": "tab:olive", "history-off": "tab:cyan",
              "arena": "tab:brown", "arena-history-off": "tab:pink"}
    labels = [f"{r['group']} {r['layout']}-bit {r['case']} {r['variant']}" for r in bars]
    y = range(len(bars))
    ax1.barh(y, [r["ratio_to_c"] for r in bars], color=[colors[r["variant"]] for r in bars])
    # The absolute times beside each bar: the variant's, and the reference's in the same worker.
    reference = {r["group"]: REFERENCE.get(r["group"], "C") for r in bars}
    for i, r in enumerate(bars):
        same = f" vs {reference[r['group']]} {_us(r['c_ns_same_worker'])}" if r.get("c_ns_same_worker") else ""
        ax1.text(r["ratio_to_c"] + 0.01, i, f"{_us(r['ns_per_op'])}{same}", va="center", fontsize=6)
    ax1.set_yticks(list(y), labels, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlim(0, max(1.25, max((r["ratio_to_c"] for r in bars), default=1) + 0.3))
    ax1.axvline(1.0, color="black", lw=1)
    goal_os = ax1.axvline(GOALS["os"][1], color="tab:blue", ls="--", lw=1, label=f"goal: OS layer cffi {GOALS['os'][1]}")
    goal_growth = ax1.axvline(GOALS["growth"][1], color="tab:green", ls=":", lw=1,
                              label=f"goal: arena growth {GOALS['growth'][1]}")
    shown = [v for v in VARIANT_WORDS if any(r["variant"] == v for r in bars)]
    handles = [Patch(color=colors[v], label=VARIANT_WORDS[v]) for v in shown] + [goal_os, goal_growth]
    ax1.legend(handles=handles, fontsize=7, loc="lower right", title="variant (bar colour)", title_fontsize=7)
    ax1.set_xlabel("ratio to C: C's time ÷ the variant's, both measured in the variant's worker (1.0 = as fast as C); "
                   "beside each bar: its median time per operation, and C's in the same worker", fontsize=8)
    ax1.set_title("speed relative to the C limit (longer is faster)")
    # The raw curves compare workers of different levels (see the table); each
    # level divided by the C limit beside it is what the code controls.
    for name, r in ratios.items():
        raw = curves[name]
        lo, hi = min(raw), max(raw)
        ax2.plot(list(r), [1 / v for v in r.values()], marker="o",
                 label=f"{name}: {_us(raw[lo])} per op at {lo:,} regions, {_us(raw[hi])} at {hi:,}")
    ax2.set_xscale("log")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("live regions (mappings in the process)")
    ax2.set_ylabel("cost per operation ÷ the C limit's at the same level")
    ax2.set_title("scale: flat is the goal (top ≤ 1.25 × at 100)")
    ax2.legend(fontsize=7, title="series (layout/variant)", title_fontsize=7)
    ax2.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(suite_path: Path, out_dir: Path, stem: str = "bench") -> str:
    data = load(suite_path)
    where, run = machine(data["meta"]), provenance(data)
    paired = load_pairs(suite_path.with_name(f"{stem}-pairs.jsonl"))
    table, (curves, ratios) = rows(data["times"], paired), scale(data["times"], paired)
    hunts = hunt_rows(data["times"])
    checks = goals(table, curves, ratios, hunts)
    text = table_text(table, curves, ratios, checks, where, hunts, run)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"run": run, "machine": where, "rows": table, "scale": curves, "scale_ratio_to_c": ratios, "hunt": hunts,
               "goals": checks, "pyperf_suite": suite_path.name}
    (out_dir / f"{stem}-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / f"{stem}-table.md").write_text(text)
    try:
        chart(table, curves, ratios, out_dir / f"{stem}.png",
              f"arena benchmark ({stem}), run {run['started'] or '(date unknown)'}, arena {run['arena_version'] or '?'} "
              f"commit {(run['arena_commit'] or '?')[:12]} — {where['cpu']}, {where['cpus']} CPUs, {where['platform']}")
    except ImportError:
        # matplotlib has no wheel for some platforms (i386): the table and JSON stand alone.
        print("matplotlib is not installed here: no chart", file=sys.stderr)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite", type=Path)
    p.add_argument("--out-dir", type=Path)
    args = p.parse_args()
    stem = args.suite.stem
    print(report(args.suite, args.out_dir or args.suite.parent, stem), end="")


if __name__ == "__main__":
    main()
