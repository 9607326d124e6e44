"""Traces: saving an arena's history, reading it back, replaying it with real memory."""
import json

import pytest

import arena
from arena import sysmem
from arena.harness import trace
from arena.harness.check import verify
from arena.harness.run import per_request
from arena.interface import demo
from arena.policy.layout import MiB
from arena.spaces import NO_ROOM, ScriptedMemory

GOOD = {
    "format": "arena-trace",
    "version": 1,
    "layout": "32",
    "rule": "legacy",
    "start": "0x70000000",
    "initial_size": "0x8000000",
    "requests": ["0x100000", "0x700000", "0x1000000", "0x2000000", "0x4000000", "0x1000000"],
    "answers": ["0x5fe00000", "0x10000000"],
}


def decisions(a):
    return [(e.step, e.verdict, e.returned) for e in a.events]


@pytest.mark.parametrize(
    "layout",
    [arena.LAYOUT_32, pytest.param(arena.LAYOUT_64, marks=pytest.mark.needs_64_bit)],
    ids=["32", "64"],
)
@pytest.mark.parametrize("rule", arena.RULES)
def test_a_saved_20259_demo_replays_to_the_same_verdicts(tmp_path, rule, layout):
    path = tmp_path / "t.json"
    r = demo.replay_20259(rule, layout)
    with r.arena:
        trace.save(r.arena, path)
        want, kinds = decisions(r.arena), sorted(v.kind for v in verify(r.arena))
    t = trace.load(path)
    assert (t.rule, t.layout, t.requests) == (rule, layout, [*demo.LIVE, demo.LAST])
    again = trace.replay(t)
    with again.arena:
        assert decisions(again.arena) == want
        assert sorted(v.kind for v in verify(again.arena)) == kinds
        assert trace.divergence(t, again.arena) is None
        assert again.intact()


def test_the_documented_example_reproduces_20259_under_legacy_only():
    t = trace.parse(GOOD)
    for rule, lost in (("legacy", 5), ("fixed", 0), ("go1.9", 0)):
        r = trace.replay(t, rule)
        with r.arena:
            assert len(r.lost) == lost
            assert bool(verify(r.arena)) == (rule == "legacy")


def test_a_request_that_gave_up_in_grow_is_saved_as_its_own_request(tmp_path):
    # Go 1.8 returns nil when growth finds no room: the request ends in the grow.
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, NO_ROOM])
    with arena.Arena(arena.LAYOUT_32, "fixed", memory=memory, start=0x70000000, initial_size=16 * MiB) as a:
        assert a.sys_alloc(32 * MiB) is None
        assert a.sys_alloc(8 * MiB) is not None
        assert [len(g) for g in per_request(a.events)] == [1, 1]
        saved = trace.record(a)
        trace.save(a, tmp_path / "t.json")
    assert saved["requests"] == [32 * MiB, 8 * MiB]
    assert saved["answers"][1] == "no-room"
    r = trace.replay(trace.load(tmp_path / "t.json"))
    with r.arena:
        assert r.returned[0] is None and r.returned[1] is not None
        assert trace.divergence(trace.parse(saved), r.arena) is None


@pytest.mark.backend_independent
def test_answers_and_sizes_may_be_integers_or_hex_strings():
    t = trace.parse({**GOOD, "answers": [0x5FE00000, "0x10000000", None, "no-room"], "requests": [0x100000]})
    assert t.answers == [0x5FE00000, 0x10000000, None, "no-room"] and t.requests == [MiB]


@pytest.mark.backend_independent
def test_a_custom_layout_is_an_object_of_layout_fields():
    t = trace.parse({**GOOD, "layout": {"address_bits": 32, "max_mem": "0xffffffff", "fallback": True,
                                         "arena_start_is_zero": True, "first_sizes": ["0x8000000"]}})
    assert t.layout.first_sizes == (128 * MiB,) and t.layout.name == "custom"


@pytest.mark.parametrize("change, message", [
    ({"answers": [None, True]}, 'answers[1]: expected an address, null or "no-room", got true'),
    ({"answers": "0x10"}, "answers: expected a list"),
    ({"requests": [1, "lots"]}, 'requests[1]: expected an integer or a hex string, got "lots"'),
    ({"requests": [0]}, "requests[0]: expected a positive size"),
    ({"format": "other"}, 'format: expected "arena-trace"'),
    ({"version": 3}, "version: this reader knows versions 1 and 2, got 3"),
    ({"rule": "go1.11"}, "rule: expected one of fixed, legacy, go1.9, strict or module:attr of a rule, got \"go1.11\" (version 1)"),
    ({"rule": "newest"}, "rule: expected one of fixed, legacy, go1.9"),
    ({"layout": "16"}, 'layout: expected "32", "64"'),
    ({"layout": {"address_bits": 32, "colour": 1}}, "layout.colour: not a Layout field"),
    ({"layout": {"address_bits": 48, "max_mem": 1}}, "layout.address_bits: must be 32 or 64, got 48"),
    ({"layout": {"address_bits": 32, "max_mem": 1, "first_hints": ["0x100000000"]}},
     "layout.first_hints: holds 0x100000000: outside [0, 2**32)"),
    ({"version": "1"}, 'version: must be the integer 1, got the string "1"'),
    ({"version": "2"}, 'version: must be the integer 2, got the string "2"'),
    ({"version": "one"}, 'version: this reader knows versions 1 and 2, got "one"'),
    ({"requests": [8192] * (trace.MAX_STEPS + 1)},
     f"requests: {trace.MAX_STEPS + 1:,} requests, more than the {trace.MAX_STEPS:,} a trace may hold "
     "(python3 -m pydoc arena.harness.trace)"),
    ({"answers": [None] * (trace.MAX_STEPS + 1)}, f"answers: {trace.MAX_STEPS + 1:,} answers, more than the"),
    ({"start": [1]}, "start: expected an integer or a hex string"),
    ({"answer": []}, "answer: unknown field"),
    ({"recorded": [{"step": "grow"}]}, "recorded[0]: expected an object"),
])
@pytest.mark.backend_independent
def test_a_malformed_trace_names_the_field(change, message):
    with pytest.raises(trace.TraceError) as err:
        trace.parse({**GOOD, **change})
    assert str(err.value).startswith(message)


@pytest.mark.backend_independent
def test_a_missing_field_is_named():
    data = dict(GOOD)
    del data["requests"]
    with pytest.raises(trace.TraceError, match=r"^requests: missing$"):
        trace.parse(data)


@pytest.mark.parametrize("change, message", [
    ({"requests": ["0x1000"]}, "requests[0]: 0x1000 is not a multiple of the arena page 0x2000"),
    ({"requests": ["0x200000000"]}, "requests[0]: 0x200000000 is too large: more than max_mem 0xffffffff of the 32-bit layout"),
    ({"answers": ["0x5fe00000", "0x10000001"]}, "answers[1]: 0x10000001 is not aligned to the page size"),
    ({"answers": ["0x5fe00000", "0xfffff000"]}, "answers[1]: 0xfffff000 is outside [0x"),
    ({"start": "0x1000"}, "start: must be a multiple of the arena page 0x2000, got 0x1000"),
    ({"start": "0x2000"}, "start: 0x2000 leaves no room below it"),
    ({"initial_size": "0x1000"}, "initial_size: must be a multiple of the arena page 0x2000, got 0x1000"),
])
def test_values_checked_only_against_the_replay_layout_name_their_field_once(change, message):
    with pytest.raises(trace.TraceError) as err:
        trace.replay(trace.parse({**GOOD, **change}))
    assert str(err.value).startswith(message)


def test_an_answer_on_a_taken_range_cannot_be_replayed_here():
    t = trace.parse(GOOD)
    first = trace.replay(t)
    with first.arena:
        # The first replay holds 0x5fe00000: a second one cannot map there.
        with pytest.raises(trace.ReplayError, match="cannot replay the first reservation here"):
            trace.replay(t)


@pytest.mark.parametrize("content, message", [
    (b"{not json", "(file): not JSON"),
    (b"\xff\xfe{}", "(file): not UTF-8 text (byte 0xff at offset 0): a trace is JSON in UTF-8"),
    (b'{"requests": [' + b"1" * 5000 + b"]}", "requests[0]: an integer of 5,000 digits"),
    (b"[" * 100_000 + b"]" * 100_000, "(file): not a trace: maximum recursion depth exceeded"),
    (b" " * (trace.MAX_BYTES + 1), "(file): larger than 16 MiB"),
])
@pytest.mark.backend_independent
def test_a_file_that_is_not_a_trace_is_a_trace_error(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(trace.TraceError) as err:
        trace.load(path)
    assert str(err.value).startswith(message)


def test_a_history_longer_than_a_trace_may_hold_is_not_saved(tmp_path):
    with arena.Arena(arena.LAYOUT_32, initial_size=(trace.MAX_STEPS + 1) * 8192) as a:
        for _ in range(trace.MAX_STEPS + 1):
            a.sys_alloc(8192)
        with pytest.raises(ValueError, match=f"^a trace holds at most {trace.MAX_STEPS:,} requests, and this arena's history has"):
            a.save_trace(tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_a_saved_trace_is_plain_json_with_the_documented_keys(tmp_path):
    r = demo.replay_20259("fixed")
    with r.arena:
        trace.save(r.arena, tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    assert list(data) == ["format", "version", "layout", "rule", "start", "initial_size", "requests", "answers", "recorded"]
    # fixed asks for a fallback mapping too: the kernel's answer is saved.
    assert data["answers"][:2] == ["0x5fe00000", "0x10000000"] and len(data["answers"]) == 3
