"""The benchmark report a stranger reads: each ratio shows the figures it divides (benchmarks/report.py)."""
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if not (BENCHMARKS / "report.py").exists():
    pytest.skip("the benchmarks are in a source checkout, not in the sdist", allow_module_level=True)
sys.path.insert(0, str(BENCHMARKS))
import report  # noqa: E402

NAME = "alloc/32/1MiB/arena-cffi"
# Five values of a worker: (loops, C seconds, Python seconds), C run around each Python value.
PAIRS = [(1000, 1.40e-3, 4.10e-3), (1000, 1.45e-3, 4.20e-3), (1000, 1.20e-3, 4.00e-3), (1000, 1.50e-3, 4.15e-3),
         (1000, 1.38e-3, 4.30e-3)]


# The benchmark's report from given numbers: no memory backend (conftest checks).
pytestmark = pytest.mark.backend_independent


@pytest.fixture
def table(tmp_path):
    pairs = tmp_path / "bench-pairs.jsonl"
    # One warm-up value first, which the report leaves out.
    pairs.write_text(json.dumps({"name": NAME, "warmups": 1, "pairs": [(1000, 9.0, 1.0)] + PAIRS}) + "\n")
    # The C row's own workers ran at another moment: faster than the C beside the variant.
    times = {("alloc", 32, "1MiB", "C"): (1.07e-6, 0.02e-6), ("alloc", 32, "1MiB", "arena-cffi"): (4.15e-6, 0.07e-6)}
    return report.rows(times, report.load_pairs(pairs))


def test_the_ratio_to_c_shows_the_c_time_it_divides_and_its_spread(table):
    c_row, row = table
    ratios = sorted(c / x for _, c, x in PAIRS)
    assert row["c_ns_same_worker"] == pytest.approx(1400)  # the median of the C values beside it, not the C row's 1,070
    assert row["ratio_to_c"] == pytest.approx(ratios[2]) and row["ratio_to_c_range"] == pytest.approx([ratios[0], ratios[-1]])
    assert row["ratio_to_c_row"] == pytest.approx(1.07 / 4.15)
    text = report.table_text(table, {}, {}, [], {"cpu": "x", "cpus": 2, "platform": "p", "python": "3", "pointer_bits": 64,
                                                 "vm.max_map_count": 1}, [],
                             {"started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:05:00",
                              "arena_version": "0.1.0", "arena_commit": "abc123"})
    assert ("| layout | case | variant | ops/s | ns/op (median ± MAD) | C, same worker (ns/op) | ratio to C | "
            "C row ÷ this row | cffi ÷ ctypes |") in text
    assert (f"| 32-bit | alloc 1MiB | arena-cffi | 240,964 | 4,150 ± 70 | 1,400 | {ratios[2]:.2f} "
            f"({ratios[0]:.2f}–{ratios[-1]:.2f}) | 0.26 |  |") in text
    assert "Run: 2026-01-01T00:00:00 to 2026-01-01T00:05:00, arena 0.1.0, commit abc123" in text
    assert '- ratio to C = C\'s time ÷ this variant\'s, value by value' in text


def test_the_committed_summary_carries_when_and_what_ran():
    results = BENCHMARKS / "results"
    summaries = [p for p in (results / "bench-summary.json", results / "i386" / "bench-summary.json") if p.exists()]
    if not summaries:
        pytest.skip("no committed benchmark results in this copy of the sources (the i386 run copies none)")
    for summary in summaries:
        data = json.loads(summary.read_text())
        assert set(data["run"]) == {"started", "finished", "arena_version", "arena_commit"}
        assert data["run"]["started"]  # read from the pyperf suite's own run dates
        assert all("c_ns_same_worker" in row and "ratio_to_c_range" in row for row in data["rows"])


def test_every_variant_in_the_chart_has_a_legend_entry_and_a_colour():
    # A bar without one would be an unexplained colour (the go1.11 rows once were).
    drawn = [v for v in report.VARIANTS if v not in ("C", *report.REFERENCE.values())]
    assert [v for v in drawn if v not in report.VARIANT_WORDS] == []
