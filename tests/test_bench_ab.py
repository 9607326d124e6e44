"""make bench-ab's verdicts (benchmarks/ab.py): compare_to's statistics on each side's values, per case."""
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if not (BENCHMARKS / "ab.py").exists():
    pytest.skip("the benchmarks are in a source checkout, not in the sdist", allow_module_level=True)
pyperf = pytest.importorskip("pyperf")
sys.path.insert(0, str(BENCHMARKS))
import ab  # noqa: E402

# Per case: the side's per-op times (raw) and, for a paired case, the C limit's beside each value.
C = [1.00e-6, 1.02e-6, 0.98e-6, 1.01e-6, 0.99e-6, 1.00e-6]


# make bench-ab's verdicts from given numbers: no memory backend (conftest checks).
pytestmark = pytest.mark.backend_independent


def side(tmp_path, label, cases):
    """Write a side's pyperf suite and pairs file: ``cases`` is ``{name: (times, c_times or None)}``."""
    files = ab.Files(tmp_path / f"{label}.json", tmp_path / f"{label}-pairs.jsonl")
    benches, lines = [], []
    for name, (times, c_times) in cases.items():
        run = pyperf.Run(times, metadata={"name": name, "loops": 1000}, collect_metadata=False)
        benches.append(pyperf.Benchmark([run]))
        if c_times:
            # One warm-up value first, which the comparison leaves out.
            pairs = [(1000, 9.0, 1.0)] + [(1000, c * 1000, x * 1000) for c, x in zip(c_times, times)]
            lines.append(json.dumps({"name": name, "warmups": 1, "pairs": pairs}))
    pyperf.BenchmarkSuite(benches).dump(str(files.suite), replace=True)
    files.pairs.write_text("".join(line + "\n" for line in lines))
    return files


def verdicts(tmp_path, base, new, min_speed=10.0):
    rows, slower = ab.compare(list(new), side(tmp_path, "base", base), side(tmp_path, "new", new), min_speed)
    return {r["case"]: r for r in rows}, slower


def scaled(values, k):
    return [v * k for v in values]


def test_twice_as_slow_is_slower_the_same_is_within_noise_half_is_faster(tmp_path):
    t = [3.0e-6, 3.1e-6, 2.9e-6, 3.05e-6, 2.95e-6, 3.0e-6]
    base = {"os/64/64KiB/cffi": (t, C), "os/64/64KiB/ctypes": (t, C), "alloc/64/8KiB/arena-cffi": (t, C)}
    new = {"os/64/64KiB/cffi": (scaled(t, 2), C), "os/64/64KiB/ctypes": (t[::-1], C),
           "alloc/64/8KiB/arena-cffi": (scaled(t, 0.5), C)}
    rows, slower = verdicts(tmp_path, base, new)
    assert {name: r["verdict"] for name, r in rows.items()} == {
        "os/64/64KiB/cffi": "SLOWER", "os/64/64KiB/ctypes": "within noise", "alloc/64/8KiB/arena-cffi": "faster"}
    assert slower == ["os/64/64KiB/cffi"]
    assert rows["os/64/64KiB/cffi"]["ratio"] == pytest.approx(2.0) and rows["os/64/64KiB/cffi"]["measure"] == "vs C"


def test_a_slow_moment_of_the_machine_cancels_against_the_c_limit_in_the_same_worker(tmp_path):
    # The new side ran while the machine was 1.5 times slower: its Python and its C times both.
    t = [3.0e-6, 3.1e-6, 2.9e-6, 3.05e-6, 2.95e-6, 3.0e-6]
    rows, slower = verdicts(tmp_path, {"growth/64/256MiB/arena-cffi": (t, C)},
                            {"growth/64/256MiB/arena-cffi": (scaled(t, 1.5), scaled(C, 1.5))})
    row = rows["growth/64/256MiB/arena-cffi"]
    assert row["raw"] == pytest.approx(1.5) and row["ratio"] == pytest.approx(1.0)
    assert row["verdict"] == "within noise" and slower == []


def test_a_change_inside_the_noise_band_is_not_slower(tmp_path):
    # 5 % slower, consistently: significant for the t-test, but inside a 10 % band.
    t = [3.0e-6, 3.1e-6, 2.9e-6, 3.05e-6, 2.95e-6, 3.0e-6]
    base, new = {"alloc/32/8KiB/arena-cffi": (t, None)}, {"alloc/32/8KiB/arena-cffi": (scaled(t, 1.05), None)}
    rows, slower = verdicts(tmp_path, base, new)
    assert rows["alloc/32/8KiB/arena-cffi"]["measure"] == "raw" and slower == []
    rows, slower = verdicts(tmp_path, base, new, 2.0)
    assert slower == ["alloc/32/8KiB/arena-cffi"]


def test_the_c_limit_moving_is_the_machines_noise_never_a_slower_case(tmp_path):
    rows, slower = verdicts(tmp_path, {"os/64/64KiB/C": (C, None)}, {"os/64/64KiB/C": (scaled(C, 1.5), None)})
    assert rows["os/64/64KiB/C"]["verdict"] == "noise (slower)" and slower == []
    assert "moved beyond the band in os/64/64KiB/C" in ab.footer(list(rows.values()), slower)


def test_the_table_names_ratio_spread_and_verdict(tmp_path):
    t = [3.0e-6, 3.1e-6, 2.9e-6, 3.05e-6, 2.95e-6, 3.0e-6]
    rows, _ = ab.compare(["os/64/64KiB/cffi"], side(tmp_path, "base", {"os/64/64KiB/cffi": (t, C)}),
                         side(tmp_path, "new", {"os/64/64KiB/cffi": (scaled(t, 2), C)}), 10.0)
    text = ab.table(rows, "61ba341, 61ba3415b105", 10.0)
    line = next(ln for ln in text.splitlines() if ln.startswith("| os/64/64KiB/cffi"))
    assert line.split(" | ")[1:3] == ["vs C", "2.000"] and "**SLOWER**" in line and "±1% / ±1%" in line
    assert "61ba341" in text and "10 %" in text


def test_quick_mode_keeps_the_hot_paths_both_sides_have():
    base = ["os/64/64KiB/C", "os/64/64KiB/cffi", "os/64/64KiB/shim", "os/64/256MiB/cffi", "growth/32/256MiB/arena-cffi"]
    new = base + ["growth/32/4MiB/go1.11-cffi", "alloc/64/8KiB/arena-ctypes"]
    assert ab.chosen(base, new, quick=True, only="") == ["os/64/64KiB/C", "os/64/64KiB/cffi", "growth/32/256MiB/arena-cffi"]
    assert ab.chosen(base, new, quick=False, only="growth") == ["growth/32/256MiB/arena-cffi"]
