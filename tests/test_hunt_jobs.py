"""arena hunt --jobs: one search over N forked processes, the first counterexample winning, the others stopped."""
import multiprocessing
import os
import time

import pytest

import arena
from arena.harness import hunt, jobs
from arena.interface import cli


def children() -> set[int]:
    """This process's children, zombies included (they stay in /proc until waited for)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == os.getpid():
            found.add(int(pid))
    return found


@pytest.fixture(autouse=True)
def no_process_left():
    """Every job is waited for: none is left running, nor as a zombie."""
    before = children()
    yield
    assert multiprocessing.active_children() == []
    assert children() <= before


# -- the runner ------------------------------------------------------------------


@pytest.mark.backend_independent
def test_the_first_find_wins_and_stops_the_others():
    def work(i, tally):
        done = 0
        # Job 1 finds at its 5th step, then goes on 20 more (as a hunt shrinks); the others never find.
        while tally(done, i == 1 and done >= 5):
            done += 1
            time.sleep(0.001)
            if done == 25 and i == 1:
                return ("finished", done)
            if done > 5_000:
                return ("never stopped", done)
        return ("stopped", done)

    results, won = jobs.run(work, 3)
    assert won == 1 and results == [results[0], ("finished", 25), results[2]]
    assert results[0][0] == results[2][0] == "stopped"


@pytest.mark.backend_independent
def test_a_later_find_is_not_the_winners():
    # Job 0 finds first and goes on (it shrinks); job 1's find comes after: it is told to stop.
    def work(i, tally):
        if i == 1:
            time.sleep(0.3)
        done = 0
        while tally(done, True) and done < 2000:
            done += 1
            time.sleep(0.001)
        return done

    results, won = jobs.run(work, 2)
    assert won == 0 and results[0] == 2000 and results[1] == 0


@pytest.mark.backend_independent
def test_no_find_runs_every_job_to_its_end_with_progress():
    seen = []

    def work(i, tally):
        for done in range(1, 301):
            assert tally(done, False)
            time.sleep(0.003)
        return i * 10

    results, won = jobs.run(work, 2, progress=lambda done, found: seen.append((done, found)), interval=0.1)
    assert (results, won) == ([0, 10], None)
    assert seen and all(0 <= done <= 600 and not found for done, found in seen)


@pytest.mark.backend_independent
def test_a_job_that_raises_stops_the_others_and_is_reported():
    def work(i, tally):
        if i == 0:
            raise ZeroDivisionError("job 0 broke")
        done = 0
        while tally(done, False):
            done += 1
            time.sleep(0.001)
        return done

    with pytest.raises(ZeroDivisionError, match="job 0 broke"):
        jobs.run(work, 2)


@pytest.mark.backend_independent
def test_a_job_that_dies_is_a_job_failed():
    def work(i, tally):
        if i == 1:
            os._exit(3)
        return i

    with pytest.raises(jobs.JobFailed, match="job 1 died without an answer .exit code 3."):
        jobs.run(work, 2)


@pytest.mark.backend_independent
def test_ctrl_c_in_the_parent_stops_every_job():
    def work(i, tally):
        done = 0
        while tally(done, False):
            done += 1
            time.sleep(0.001)
        return done

    def interrupt(done, found):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.run(work, 2, progress=interrupt, interval=0.05)


# -- the hunt ----------------------------------------------------------------------


def test_two_jobs_find_a_counterexample_that_one_job_repeats_with_its_seed():
    found = hunt.hunt("legacy", arena.LAYOUT_32, examples=2000, seed=7, jobs=2)
    assert found.counterexample is not None and found.stopped == "found" and found.jobs == 2
    assert found.seed in (7, 7 + (1 << 32))
    again = hunt.hunt("legacy", arena.LAYOUT_32, examples=1000, seed=found.seed)
    assert again.counterexample == found.counterexample and again.shrink_steps == found.shrink_steps


def test_two_clean_jobs_share_the_budget():
    result = hunt.hunt("fixed", arena.LAYOUT_32, examples=300, seed=3, jobs=2, read_maps=False)
    assert result.counterexample is None and result.stopped == "examples"
    assert (result.examples, result.jobs, result.seed) == (300, 2, 3)
    assert result.as_json()["jobs"] == 2


def test_more_jobs_than_scenarios_start_one_per_scenario():
    result = hunt.hunt("fixed", arena.LAYOUT_32, examples=2, seed=3, jobs=8, read_maps=False)
    assert (result.examples, result.jobs) == (2, 2)


def test_the_time_budget_holds_for_every_job():
    result = hunt.hunt("fixed", arena.LAYOUT_32, examples=1_000_000, seconds=1.0, jobs=2, read_maps=False)
    assert result.counterexample is None and result.stopped == "time" and 1.0 <= result.seconds < 10


@pytest.mark.parametrize("value, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)])
@pytest.mark.backend_independent
def test_bad_jobs(value, exc):
    with pytest.raises(exc, match="jobs"):
        hunt.hunt("fixed", arena.LAYOUT_32, examples=10, jobs=value)


def test_the_command_says_how_many_processes_and_how_to_repeat(capsys):
    assert cli.main(["hunt", "--jobs", "2", "--examples", "200", "--seed", "5", "--no-maps"]) == 0
    out = capsys.readouterr().out
    assert "the rule held for 200 scenarios" in out and "(repeat with --seed 5 --jobs 2)" in out and "in 2 processes" in out
    assert cli.main(["hunt", "--rule", "legacy", "--jobs", "2", "--seed", "7"]) == 1
    out = capsys.readouterr().out
    # The head (wrapped within the width) repeats with the winning process's seed alone.
    head = " ".join(out.split("\n\n")[0].split())
    assert head.startswith("counterexample found") and "in 2 processes" in head and "--jobs" not in head


@pytest.mark.parametrize("text", ["0", "257", "two", "1.5"])
@pytest.mark.backend_independent
def test_bad_jobs_on_the_command_line_are_one_line_and_exit_2(capsys, text):
    with pytest.raises(SystemExit) as exit:
        cli.main(["hunt", "--jobs", text])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "argument --jobs: expected a number of processes from 1 to 256" in err
    assert err.count("\n") == 1
