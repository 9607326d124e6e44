"""arena hunt: the search API, its budget and seed, targets, and the command end to end with a user's rule."""
import argparse
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import arena
from arena import sysmem
from arena.harness import hunt
from arena.harness.hunt import Answer, Scenario
from arena.interface import cli
from budget import budget
from commands import arena_cmd
from doc_output import assert_shows, shown

MiB = 1 << 20
PAGE = arena.LAYOUT_32.page_size
DOCS = Path(__file__).resolve().parent.parent / "docs" / "rules.md"
# The smallest 20259 shape: an arena at 0x40000000 with 16 MiB, 8 KiB handed out,
# then a request that needs a new block, answered below arena_used.
LOW = Scenario({"start": 0x40000000, "initial_size": 16 * MiB}, (PAGE, 16 * MiB), (Answer("start-used", 0.0),))


def module_from_docs(name: str) -> str:
    """The code of ``name`` (a ```python block starting ``# name``) in docs/rules.md."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    (code,) = [b for b in blocks if b.startswith(f"# {name}\n")]
    return code


def run_arena(*argv, cwd, pythonpath=None, hide_hypothesis=False):
    """``arena ARGV`` as the installed script runs it in ``cwd``, with ``pythonpath`` as its only PYTHONPATH."""
    return arena_cmd(*argv, cwd=cwd, env={"PYTHONPATH": str(pythonpath)} if pythonpath else None, installed=True,
                     prelude="import sys; sys.modules['hypothesis'] = None; " if hide_hypothesis else "", timeout=300)


# -- scenarios -------------------------------------------------------------------


@pytest.mark.backend_independent
def test_every_byte_string_is_a_scenario_and_smaller_bytes_are_simpler():
    target = hunt.arena_target()
    assert hunt.decode(b"", arena.LAYOUT_32, target) == Scenario(hunt.arena_setups(arena.LAYOUT_32)[0], (), ())
    sc = hunt.decode(bytes([1, 0, 63, 64, 127, 0x80, 0xFF]), arena.LAYOUT_32, target)
    assert sc.setup == {"start": 0x40000000, "initial_size": 16 * MiB}
    assert sc.requests == (PAGE, 64 * PAGE, 8 * MiB, 512 * MiB)
    assert sc.answers == (Answer("kernel", 0.0), Answer("no-room", 0.0))


def test_no_answer_lands_within_the_program_breaks_reach(memory):
    # Another process has its break elsewhere (ASLR): a trace must not need this range.
    end = hunt.binary_end()
    if end >= memory.limit:
        pytest.skip("the executable is not in this layer's space")
    reach = max(sysmem.program_break(), end) + 64 * MiB
    assert hunt.free_spot(memory, end, reach + 16 * MiB, PAGE, 0.0) >= reach


def test_an_answer_whose_window_has_no_free_spot_is_played_as_the_kernels():
    sc = Scenario({"start": 0x40000000, "initial_size": 16 * MiB}, (32 * MiB,), (Answer("used-end", 0.5), Answer("above-end", 0)))
    log = []
    r = hunt.play(sc, hunt.arena_target(), arena.LAYOUT_32, log=log)
    with r.arena:
        # [arena_used, arena_end) is the arena's own: the kernel answered, at the hint.
        assert log == [Answer("kernel", 0.0)] and r.arena.events[1].verdict == "contiguous"


# -- the search ------------------------------------------------------------------


def test_a_hunt_is_repeatable_with_its_seed():
    first = hunt.hunt("legacy", arena.LAYOUT_32, examples=2000, seed=7)
    again = hunt.hunt("legacy", arena.LAYOUT_32, examples=2000, seed=7)
    assert first.counterexample is not None and first.stopped == "found"
    assert (again.counterexample, again.examples, again.shrink_steps) == (first.counterexample, first.examples, first.shrink_steps)


def test_a_clean_hunt_runs_its_budget_and_reports_progress():
    seen = []
    result = hunt.hunt("fixed", arena.LAYOUT_32, examples=1_000_000, seconds=1.5, progress=seen.append, read_maps=False)
    assert result.counterexample is None and result.stopped == "time"
    assert 1.5 <= result.seconds < 10 and result.examples > 0 and result.rate > 0
    assert seen and all(not p.shrinking and p.examples <= result.examples for p in seen)
    assert result.as_json()["found"] is False


def test_a_rule_that_raises_is_a_counterexample():
    class Raises(arena.Rule):
        separate_cursor, fallback_on_no_room, fallback_raises_end = True, True, False

        def refusal(self, bounds, p, p_size, layout):
            return 1 // 0 if p < bounds.arena_used else None

    result = hunt.hunt(Raises(), arena.LAYOUT_32, examples=2000)
    assert result.counterexample is not None, result.seed
    assert [v.kind for v in result.violations] == ["rule-failed"]
    assert result.violations[0].detail.endswith("Raises raised ZeroDivisionError in refusal(): integer division or modulo by zero")


def test_any_target_can_be_hunted():
    # A target is a factory over a memory layer: here the linear arena under legacy,
    # one setup, answered only between arena_start and arena_used.
    target = hunt.Target(
        name="legacy, low answers only",
        make=lambda memory, layout, setup: arena.Arena(layout, "legacy", memory=memory, **setup),
        setups=lambda layout: [{"start": 0x40000000, "initial_size": 16 * MiB}],
        categories=("start-used",),
        window=hunt.arena_window,
    )
    result = hunt.hunt(target=target, layout=arena.LAYOUT_32, examples=500)
    assert result.target == "legacy, low answers only" and result.counterexample is not None
    assert {a.category for a in result.counterexample.answers} <= {"kernel", "start-used"}


class Aliasing(arena.Arena):
    """A broken manager: from its second request on, it hands out its first allocation again."""

    def sys_alloc(self, n):
        p = super().sys_alloc(n)
        return self.allocations[0][0] if len(self.allocations) > 1 else p


def test_memory_handed_out_twice_is_found_by_its_bytes():
    # verify cannot see it (the arena's own record is sound); the marks written into
    # both ends of every allocation can.
    target = hunt.Target("aliasing", lambda memory, layout, setup: Aliasing(layout, memory=memory, **setup),
                         hunt.arena_setups, hunt.ARENA_CATEGORIES, hunt.arena_window)
    found = hunt.failures(Scenario({"start": 0x40000000, "initial_size": 16 * MiB}, (PAGE, PAGE), ()), target, arena.LAYOUT_32)
    assert [v.kind for v in found] == ["bytes-changed"]
    result = hunt.hunt(target=target, layout=arena.LAYOUT_32, examples=200)
    assert result.counterexample is not None and len(result.counterexample.requests) == 2


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"examples": 0}, ValueError, "examples"),
    ({"examples": 1.5}, ValueError, "examples"),
    ({"seconds": -1}, ValueError, "seconds"),
    ({"seed": "x"}, TypeError, "seed"),
    ({"rule": "nope"}, ValueError, "rule"),
    ({"rule": "fixed", "target": hunt.arena_target()}, ValueError, "not both"),
])
@pytest.mark.backend_independent
def test_bad_hunt_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        hunt.hunt(**{"layout": arena.LAYOUT_32, **kwargs})


# -- the command -------------------------------------------------------------------


def test_hunt_finds_legacy_saves_a_replayable_trace_and_draws_it(capsys, tmp_path):
    path, picture = str(tmp_path / "t.json"), str(tmp_path / "t.svg")
    code = cli.main(["hunt", "--rule", "legacy", "--seed", "1", "--save-trace", path, "--svg", picture])
    out, _ = capsys.readouterr()
    assert code == 1
    assert "counterexample found after" in out and "repeat with --seed 1" in out
    if sysmem.NATIVE_BITS == 32 and "not written: --save-trace" in out:
        # A 32-bit process's own mappings moved under the replay shown: said, nothing written.
        assert not os.path.exists(path) and not os.path.exists(picture)
        return
    assert "legacy" in out and "fixed" in out and "moved arena_used DOWN" in out
    lost = next(line for line in out.splitlines() if line.startswith("allocations lost"))
    assert lost.split()[2:4] != ["none"] and lost.split()[-1] == "none"  # legacy lost some, fixed none
    assert "arena_used-decreased" in out and "not-heap" in out
    assert ET.parse(picture).getroot().tag.endswith("svg")
    assert cli.main(["replay", path]) == 1
    out, _ = capsys.readouterr()
    assert "same decisions as the recorded run" in out and "arena_used-decreased" in out
    assert cli.main(["replay", path, "--rule", "fixed"]) == 0


@pytest.mark.backend_independent
def test_a_clean_hunt_counts_only_the_scenarios_it_played():
    # A scenario the address space stopped was drawn, not played: the rule did not hold for it.
    result = hunt.HuntResult("fixed", arena.LAYOUT_32, 1, examples=502, shrink_steps=0, skipped=2, seconds=1.0,
                             stopped="examples")
    text = " ".join(cli._hunt_text(argparse.Namespace(time=None), result, []).split())
    assert text.startswith("no counterexample: the rule held for 500 scenarios; 2 more could not be played in this "
                           "process's address space rule fixed"), text
    result.skipped = 0
    text = " ".join(cli._hunt_text(argparse.Namespace(time=None), result, []).split())
    assert text.startswith("no counterexample: the rule held for 502 scenarios rule fixed"), text


def test_hunt_json_and_a_clean_rule_exits_0(capsys):
    code = cli.main(["hunt", "--rule", "strict", "--examples", str(budget(300)), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == data["exit"] == 0
    assert data["found"] is False and data["examples"] >= budget(300) and data["target"] == "strict" and data["rules"] == []
    code = cli.main(["hunt", "--rule", "legacy", "--seed", "3", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == data["exit"] == 1 and data["found"] is True
    assert [r["rule"] for r in data["rules"]] == ["legacy", "fixed"] and data["rules"][0]["lost"]


@pytest.mark.parametrize("argv, words", [
    (["--examples", "0"], "argument --examples"),
    (["--time", "soon"], "argument --time"),
    (["--seed", "x"], "argument --seed"),
    (["--rule", "newest"], "argument --rule"),
    (["--rule", "nosuchmodule:Rule"], "cannot import nosuchmodule"),
    (["--layout", "16"], "argument --layout"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--rule", "all"], "argument --rule"),
])
@pytest.mark.backend_independent
def test_hunt_usage_mistakes_are_one_line_and_exit_2(capsys, argv, words):
    with pytest.raises(SystemExit) as exit:
        cli.main(["hunt", *argv])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and words in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(sysmem.NATIVE_BITS == 64, reason="a 64-bit process can hunt on both layouts")
def test_a_64_bit_hunt_in_a_32_bit_process_is_a_usage_error(capsys):
    assert cli.main(["hunt", "--layout", "64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot map a 64-bit address space" in err


def test_hunt_with_time_alone_runs_until_the_time_is_up(capsys):
    assert cli.main(["hunt", "--time", "1", "--no-maps"]) == 0
    out = capsys.readouterr().out
    assert "no counterexample: the rule held for" in out and "(the --time 1 s ran out)" in out


@pytest.mark.parametrize("argv, words", [
    (["--crowd", "/no/such/maps"], "no such file"),
    (["--save-trace", "/no/such/dir/t.json"], "--save-trace /no/such/dir/t.json: No such file or directory: give a path in a writable directory"),
    (["--svg", "/no/such/dir/t.svg"], "--svg /no/such/dir/t.svg: No such file or directory: give a path in a writable directory"),
])
def test_hunt_bad_paths_are_one_line_and_exit_2(capsys, argv, words):
    assert cli.main(["hunt", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


@pytest.mark.backend_independent
def test_without_hypothesis_hunt_says_what_to_install(tmp_path):
    done = run_arena("hunt", cwd=tmp_path, hide_hypothesis=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "hunting needs hypothesis: pip install '" in done.stderr
    assert "[hunt]'" in done.stderr


def test_the_docs_example_rule_in_its_own_module_end_to_end(tmp_path, monkeypatch):
    # docs/rules.md's plausible but wrong rule, as a user would have it: a module of
    # their own, on PYTHONPATH, hunted, saved, replayed; its repair comes back clean.
    monkeypatch.setenv("COLUMNS", "100")  # the width the docs show: a pipe's
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "mine.py").write_text(module_from_docs("mine.py"))
    done = run_arena("hunt", "--rule", "mine:NoOverlap", "--seed", "1", "--save-trace", "t.json", "--svg", "t.svg",
                     cwd=tmp_path, pythonpath=rules_dir)
    assert done.returncode == 1, done.stderr
    assert "mine:NoOverlap" in done.stdout and "not-heap" in done.stdout
    if sysmem.NATIVE_BITS == 64:
        # As the docs show it. A 32-bit process's own space, laid out afresh at each start, can lead the
        # same seed to another counterexample (docs/rules.md says so).
        assert "moved arena_used DOWN" in done.stdout
        assert_shows(shown(DOCS, "arena hunt --rule mine:NoOverlap --seed 1 --save-trace t.json --svg t.svg"), done.stdout)
    elif not (tmp_path / "t.json").exists():
        # The replay shown did not fail again (the kernel's own mappings moved under it): said, nothing written.
        assert "not written: --save-trace t.json, --svg t.svg: the counterexample did not fail again" in " ".join(
            done.stdout.split())
        assert not (tmp_path / "t.svg").exists()
        return
    assert json.loads((tmp_path / "t.json").read_text())["rule"] == "mine:NoOverlap"
    assert (tmp_path / "t.svg").stat().st_size > 0
    done = run_arena("replay", "t.json", cwd=tmp_path, pythonpath=rules_dir)
    assert done.returncode == 1 and "same decisions as the recorded run" in done.stdout, done.stderr
    # Without the module on the path the trace cannot be replayed: a usage error, one line.
    done = run_arena("replay", "t.json", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("arena replay: t.json: rule mine:NoOverlap: cannot import mine")
    done = run_arena("hunt", "--rule", "mine:OwnCursor", "--examples", str(budget(500)), "--seed", "1", cwd=tmp_path,
                     pythonpath=rules_dir)
    assert done.returncode == 0 and "no counterexample" in done.stdout, done.stdout + done.stderr
    out = done.stdout
    if sysmem.NATIVE_BITS == 32:
        # A 32-bit process's own mappings can stop a scenario or two (seen in the i686 wheel's run): said, and
        # the rule held for the rest.
        unplayed = re.search(r"held for ([\d,]+) scenarios;\s+([\d,]+)\s+more\s+could\s+not\s+be\s+played\s+in\s+"
                             r"this\s+process's\s+address\s+space", out)  # wrapped anywhere
        if unplayed:
            # hypothesis draws another scenario for each one stopped: the rule held for the whole budget.
            assert int(unplayed.group(1).replace(",", "")) == budget(500), out
            out = out.replace(unplayed.group(0), f"held for {budget(500):,} scenarios")
    # The docs' run, but with this profile's number of scenarios.
    doc = shown(DOCS, "arena hunt --rule mine:OwnCursor --examples 5000 --seed 1")
    assert_shows([line.replace("5,000", f"{budget(500):,}") for line in doc], out)


def test_the_docs_subtler_example_is_caught(tmp_path, monkeypatch):
    (tmp_path / "fixedend.py").write_text(module_from_docs("fixedend.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = hunt.hunt("fixedend:KeepEnd", arena.LAYOUT_32, examples=3000)
    assert result.counterexample is not None, result.seed
    assert "arena_used-decreased" in {v.kind for v in result.violations}


@pytest.mark.needs_64_bit
def test_the_docs_example_takes_two_steps_on_64_bit(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(module_from_docs("mine.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = hunt.hunt("mine:NoOverlap", arena.LAYOUT_64, examples=3000)
    assert result.counterexample is not None, result.seed
    assert [a.category for a in result.counterexample.answers if a.category != "kernel"] == ["above-end", "start-used"]


def test_the_low_answer_is_what_breaks_legacy_and_only_legacy():
    for rule in arena.RULES:
        found = hunt.failures(LOW, hunt.arena_target(rule), arena.LAYOUT_32)
        assert bool(found) == (rule == "legacy"), (rule, found)
    found = hunt.failures(LOW, hunt.arena_target("legacy"), arena.LAYOUT_32, read_maps=False)
    assert {v.kind for v in found} == {"arena_used-decreased", "not-heap"}


# -- Go 1.11's heap arenas ---------------------------------------------------------------


@pytest.mark.parametrize("layout", ["32", pytest.param("64", marks=pytest.mark.needs_64_bit)])
def test_hunt_go1_11_comes_back_clean(capsys, layout):
    code = cli.main(["hunt", "--rule", "go1.11", "--layout", layout, "--examples", str(budget(300)), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == data["exit"] == 0 and data["target"] == "go1.11" and data["layout"] == f"{layout}-bit"
    assert data["found"] is False and data["examples"] >= budget(300) and data["rules"] == []


def test_a_heap_arenas_counterexample_is_shown_saved_and_replayed(capsys, tmp_path, monkeypatch):
    # go1.11 holds, so a broken variant stands in for it (tests/test_heap_properties.py): a hint
    # answered elsewhere is registered where it landed instead of released.
    import dataclasses

    from test_heap_properties import KEEPS_MISSED, broken

    variant = dataclasses.replace(broken(*KEEPS_MISSED), name="go1.11")
    monkeypatch.setattr(hunt, "heap_target", lambda: variant)
    path, picture = str(tmp_path / "t.json"), str(tmp_path / "t.svg")
    code = cli.main(["hunt", "--rule", "go1.11", "--seed", "1", "--save-trace", path, "--svg", picture])
    out, _ = capsys.readouterr()
    assert code == 1 and "counterexample found after" in out and "repeat with --seed 1" in out
    assert "heap arenas after" in out and "asked at 0x" in out and "go1.11: foreign" in out
    assert "fixed" not in out  # a linear arena's rule makes nothing of heap arenas' answers
    saved = json.loads(Path(path).read_text())
    assert saved["version"] == 2 and saved["rule"] == "go1.11" and "missed" in [e["verdict"] for e in saved["recorded"]]
    assert ET.parse(picture).getroot().tag.endswith("svg")
    monkeypatch.undo()
    # The same kernel answers, replayed against the real manager: the same decisions, and sound.
    assert cli.main(["replay", path]) == 0
    out, _ = capsys.readouterr()
    assert "same decisions as the recorded run" in out and "verify: no violation" in out


def test_hunt_accepts_go1_11_by_name_and_the_target_by_value():
    by_name = hunt.hunt("go1.11", arena.LAYOUT_32, examples=50, seed=5, read_maps=False)
    by_value = hunt.hunt(target=hunt.heap_target(), layout=arena.LAYOUT_32, examples=50, seed=5, read_maps=False)
    assert by_name.target == by_value.target == "go1.11" and by_name.examples == by_value.examples == 50
    assert hunt.target_for("go1.11").categories == hunt.HEAP_CATEGORIES and hunt.target_for("legacy").name == "legacy"
