"""Process traces: a real run saved as JSON, loaded back with every field checked, and replayed."""
from __future__ import annotations

import copy
import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena import tracer
from arena.tracer import record
from budget import budget

pytest_plugins = ["tracees"]

# Real programs' traces: no memory backend (conftest checks), one run of make test.
pytestmark = [pytest.mark.usefixtures("no_leftover_processes"), pytest.mark.backend_independent]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, build):
    """A real run under ``gap`` (threads, moves), and its JSON data."""
    o = tracer.run([str(build("linear_arena")), "go1.8", "3"], "gap", capture=True, timeout=60)
    return o, record.dump(o)


def test_round_trip(saved, tmp_path):
    o, data = saved
    tracer.save(o, tmp_path / "run.json")
    back = tracer.load(tmp_path / "run.json")
    assert back.calls == o.calls and back.argv == o.argv and back.fatal == o.fatal
    for field in ("executable", "sha256", "bits", "adversary", "exit_status", "signal", "timed_out", "stopped",
                  "processes", "leftovers", "calls_dropped", "notes"):
        assert getattr(back, field) == getattr(o, field), field
    assert back.stdout is None and abs(back.wall_time - o.wall_time) < 1e-5
    text = (tmp_path / "run.json").read_text()
    assert '"kind": "program"' in text and '"format": "arena-trace"' in text
    # Defaults are left out: an observed call has no decision and no moved_to.
    kept = data["calls"][0]
    assert "decision" not in kept and "moved_to" not in kept and "answer" in kept


def _bad(data, path, value):
    broken = copy.deepcopy(data)
    *parents, last = path
    target = broken
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return broken


@pytest.mark.parametrize("path, value, words", [
    (("format",), "arena", 'format: expected "arena-trace"'),
    (("kind",), "model", 'kind: expected "program"'),
    (("version",), 2, "version: this reader knows version 1"),
    (("version",), True, "version: this reader knows version 1"),
    (("argv",), [], "argv: empty"),
    (("argv",), "prog", "argv: expected a list"),
    (("argv", 0), 3, r"argv\[0\]: expected a string"),
    (("executable", "sha256"), "abc", "executable.sha256: expected 64 lowercase hex digits"),
    (("executable", "bits"), 16, "executable.bits: expected 32 or 64"),
    (("executable", "size"), 1, "executable.size: unknown field"),
    (("executable", "path"), KeyError, "executable.path: missing"),
    (("outcome", "exit_status"), 256, r"outcome.exit_status: 0x100 is outside \[0x0, 0xff\]"),
    (("outcome", "signal"), 9, "outcome: exactly one of exit_status and signal"),
    (("outcome", "timed_out"), "no", "outcome.timed_out: expected true or false"),
    (("outcome", "wall_time"), -1, "outcome.wall_time: expected seconds"),
    (("outcome", "wall_time"), "NaN", "outcome.wall_time: expected seconds"),
    (("outcome", "leftovers"), 99, "outcome.leftovers"),
    (("calls", 0, "index"), 5, r"calls\[0\].index: expected 0 \(calls are saved in order\)"),
    (("calls", 0, "syscall"), "brk", r"calls\[0\].syscall: expected one of mmap"),
    (("calls", 0, "hint"), "0xzz", r"calls\[0\].hint: expected an integer or a hex string"),
    (("calls", 0, "hint"), "0x10000000000000000", r"calls\[0\].hint: .* is outside"),
    (("calls", 0, "tid"), 0, r"calls\[0\].tid"),
    (("calls", 0, "fd"), -2, r"calls\[0\].fd"),
    (("calls", 0, "answer"), -4096, r"calls\[0\].answer"),
    (("calls", 0, "decision"), "maybe", r'calls\[0\].decision: expected "keep", "move" or "fail"'),
    (("calls", 0, "moved_to"), "0x1000", r"calls\[0\].moved_to: present exactly when the decision is a move"),
    (("calls", 0, "colour"), "red", r"calls\[0\].colour: unknown field"),
    (("calls",), [None], r"calls\[0\]: expected an object"),
    (("notes",), [1], r"notes\[0\]: expected a string"),
    (("comment",), "hi", "comment: unknown field"),
])
def test_load_names_the_bad_field(saved, path, value, words):
    _, data = saved
    with pytest.raises(tracer.TraceFileError, match=words):
        record.parse(_bad(data, path, value))


def test_a_decision_on_an_observed_call_is_refused(saved):
    _, data = saved
    munmap = next(i for i, c in enumerate(data["calls"]) if c["syscall"] == "munmap")
    broken = _bad(data, ("calls", munmap, "decision"), "fail")
    with pytest.raises(tracer.TraceFileError, match=rf"calls\[{munmap}\].decision: a munmap call is only observed, never failed"):
        record.parse(broken)


def test_limits(saved, tmp_path):
    _, data = saved
    many = dict(data, calls=[data["calls"][0]] * (record.MAX_CALLS + 1))
    with pytest.raises(tracer.TraceFileError, match="calls: 100,001 items, more than the 100,000"):
        record.parse(many)
    with pytest.raises(tracer.TraceFileError, match="argv: 4,097 items"):
        record.parse(dict(data, argv=["x"] * 4097))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (record.MAX_BYTES + 1))
    with pytest.raises(tracer.TraceFileError, match="larger than 64 MiB"):
        tracer.load(big)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff{")
    with pytest.raises(tracer.TraceFileError, match="not UTF-8 JSON"):
        tracer.load(bad)


@settings(max_examples=budget(200), deadline=None)
@given(st.data())
def test_any_change_is_either_valid_or_named(saved, data):
    # Replace one value anywhere in a real trace with arbitrary JSON: load accepts it or raises TraceFileError.
    _, original = saved
    doc = copy.deepcopy(original)
    node, path = doc, []
    while isinstance(node, (dict, list)) and node:
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        if not isinstance(node[key], (dict, list)) or data.draw(st.booleans()):
            break
        node = node[key]
    value = data.draw(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                                   lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
                                   max_leaves=5))
    broken = _bad(doc, path, value)
    try:
        record.parse(json.loads(json.dumps(broken)))
    except tracer.TraceFileError:
        pass


def test_replay_says_when_the_program_changed(saved, build, tmp_path):
    o, _ = saved
    copy_path = tmp_path / "linear_arena"
    shutil.copy(o.executable, copy_path)
    moved = record.parse(dict(record.dump(o), executable={"path": str(copy_path), "sha256": "0" * 64, "bits": o.bits}))
    again = tracer.replay(moved, capture=True, timeout=60)
    assert again.repeats  # it ends the same way...
    assert again.differences == [f"the program changed since the trace was saved ({copy_path}: sha256 000000000000... "
                                 f"then, {o.sha256[:12]}... now)"]


def test_replay_says_when_the_outcome_differs(saved):
    o, _ = saved
    survived = record.parse(dict(record.dump(o), outcome=dict(record.dump(o)["outcome"], exit_status=0, fatal=None)))
    again = tracer.replay(survived, capture=True, timeout=60)
    assert not again.repeats
    assert again.differences == ["the program exited with status 2; in the trace it exited with status 0",
                                 "fatal line: fatal error: heapBitsForSpan: base out of range; in the trace: none"]
