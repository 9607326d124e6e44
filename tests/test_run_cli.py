"""arena run, arena replay of a real program's trace and arena demo --real, through a real subprocess:
the program's output passes through, the calls that matter, the verdict and its exit code (0 succeeded,
1 failed, 2 could not run: one line, never a traceback), and no process left behind under any bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

import commands
from arena import sysmem

pytest_plugins = ["tracees"]
pytestmark = [pytest.mark.usefixtures("no_leftover_processes"), pytest.mark.backend_independent]
HOLE = "0x34202000"  # where gap puts go_linear's second growth: in the hole it left below the heap's end


def arena_cmd(*argv, env=None, **kwargs):
    """``arena ARGV`` (tests/commands.py), its tables 100 columns wide (``COLUMNS``)."""
    return commands.arena_cmd(*argv, env={"COLUMNS": "100", **(env or {})}, **kwargs)


def one_line(done, command="run"):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"arena {command}: "), done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def go_linear(build):
    return str(build("go_linear", 32))


@pytest.mark.backend_independent(False)  # runs the model, on the memory backend
def test_a_failing_run_passes_its_output_through_and_says_why(go_linear, tmp_path):
    trace = tmp_path / "run.json"
    done = arena_cmd("run", "--adversary", "gap", "--save-trace", str(trace), "--", go_linear, "legacy")
    assert done.returncode == 1, done.stderr
    # The program's own stderr passed through; then the table, the verdict and the trace on stdout.
    assert "fatal error: heapBitsForSpan: base out of range" in done.stderr
    out = done.stdout
    assert "verdict: FAILED under adversary gap: exited with status 2" in out
    assert "  fatal error: heapBitsForSpan: base out of range" in out
    flat = " ".join(out.split())
    assert f"moved to {HOLE}" in out and "answered BELOW the heap's end" in flat
    assert "MAP_FIXED mmaps" in out and "--all-calls" in out
    assert max(map(len, out.splitlines())) <= 100
    assert f"trace saved: {trace}" in flat and trace.is_file()
    # Only the calls that matter, the rest counted: Go 1.8's ~800 commits are one line. (The table's rows, each
    # starting with its call's number: how many lines the paths wrap to depends on the folder the test runs in.)
    rows = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(rows) < 10 and "other calls not shown" in rows[-1], rows
    every = arena_cmd("run", "--all-calls", "--adversary", "gap", "--", go_linear, "legacy")
    assert len(every.stdout.splitlines()) > 700 and "not shown" not in every.stdout


def test_a_succeeding_run_exits_0_and_json_has_the_programs_status(go_linear):
    done = arena_cmd("run", "--json", "--adversary", "gap", "--", go_linear, "go1.9")
    assert done.returncode == 0 and done.stderr == ""
    report = json.loads(done.stdout)
    assert report["exit"] == 0 and report["command"] == "run" and report["adversary"] == "gap"
    program = report["program"]
    assert program["exit_status"] == 0 and program["signal"] is None and not program["failed"]
    assert program["stdout"] == "go_linear go1.9: 900 MiB allocated\n"
    assert report["rewritten"] == 2 and [c["moved_to"] for c in report["rewritten_calls"]][1] == HOLE
    assert report["go_heap"].startswith("Go's linear heap arena")
    failed = json.loads(arena_cmd("run", "--json", "--adversary", "gap", "--", go_linear, "legacy").stdout)
    assert failed["exit"] == 1 and failed["program"]["exit_status"] == 2
    assert failed["program"]["fatal"] == "fatal error: heapBitsForSpan: base out of range"


@pytest.mark.backend_independent(False)  # runs the model, on the memory backend
def test_a_saved_run_replays_with_the_model_beside_it(go_linear, tmp_path):
    trace = tmp_path / "run.json"
    assert arena_cmd("run", "--adversary", "gap", "--save-trace", str(trace), "--", go_linear, "legacy").returncode == 1
    done = arena_cmd("replay", str(trace))
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "repeats: yes, the program ended as recorded, with the same fatal line" in out
    flat = " ".join(out.split())
    assert "the program: took the region at " + HOLE in flat and "heapBitsForSpan: base out of range" in flat
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()[0] in ("legacy", "fixed", "go1.9")}
    assert "arena_used lowered" in rows["legacy"] and rows["legacy"].rstrip().endswith("yes")
    assert rows["fixed"].rstrip().endswith("no") and rows["go1.9"].rstrip().endswith("no")
    report = json.loads(arena_cmd("replay", "--json", "--rule", "legacy", str(trace)).stdout)
    assert report["repeats"] and report["exit"] == 1 and report["kind"] == "program"
    assert [(r["rule"], r["verdict"], r["agrees"]) for r in report["model"]["rules"]] == [("legacy", "lowered", True)]


@pytest.mark.backend_independent(False)  # runs the model, on the memory backend
def test_a_replay_that_succeeds_exits_0(go_linear, tmp_path):
    trace = tmp_path / "ok.json"
    assert arena_cmd("run", "--adversary", "gap", "--save-trace", str(trace), "--", go_linear, "fixed").returncode == 0
    done = arena_cmd("replay", str(trace))
    assert done.returncode == 0, done.stderr
    assert "repeats: yes" in done.stdout and "gave back the region at " + HOLE in " ".join(done.stdout.split())


@pytest.mark.backend_independent(False)  # runs the model, on the memory backend
def test_replay_options_belong_to_one_kind_of_trace(go_linear, tmp_path):
    trace = tmp_path / "run.json"
    arena_cmd("run", "--save-trace", str(trace), "--", "true")
    assert "--svg" in one_line(arena_cmd("replay", "--svg", str(tmp_path / "x.svg"), str(trace)), "replay")
    model = tmp_path / "model.json"
    assert arena_cmd("demo", "--rule", "fixed", "--save-trace", str(model)).returncode == 0
    assert "--timeout" in one_line(arena_cmd("replay", "--timeout", "5", str(model)), "replay")


def test_a_replay_whose_program_is_gone_is_one_line(tmp_path):
    program = tmp_path / "gone"
    shutil.copy(shutil.which("true"), program)
    trace = tmp_path / "run.json"
    assert arena_cmd("run", "--save-trace", str(trace), "--", str(program)).returncode == 0
    program.unlink()
    assert "no such file" in one_line(arena_cmd("replay", str(trace)), "replay")


def test_a_broken_process_trace_is_one_line(tmp_path):
    trace = tmp_path / "run.json"
    arena_cmd("run", "--save-trace", str(trace), "--", "true")
    data = json.loads(trace.read_text())
    data["calls"][0]["decision"] = "sideways"
    trace.write_text(json.dumps(data))
    assert "calls[0].decision" in one_line(arena_cmd("replay", str(trace)), "replay")


# -- what cannot run: one line, exit 2, nothing left behind ---------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["--", "/no/such/program"], "no such file"),
    (["--", "/"], "is a directory"),
    ([], "give the program to run after --"),
    (["--"], "give the program to run after --"),
    (["--timeout", "0", "--", "true"], "expected a positive number of seconds, got '0'"),
    (["--timeout", "-1", "--", "true"], "expected a positive number of seconds, got '-1'"),
    (["--timeout", "nan", "--", "true"], "expected a positive number of seconds, got 'nan'"),
    (["--timeout", "inf", "--", "true"], "expected a positive number of seconds, got 'inf'"),
    (["--adversary", "sideways", "--", "true"], "not an adversary"),
    (["--adversary", "displace,by=5", "--", "true"], "multiple of the page"),
    (["--save-trace", "/no/such/dir/t.json", "--", "true"], "--save-trace /no/such/dir/t.json"),
])
def test_what_cannot_run_is_one_line(argv, words):
    assert words in one_line(arena_cmd("run", *argv))


def test_files_that_are_not_programs(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    text.chmod(0o755)
    assert "neither an ELF program nor a script" in one_line(arena_cmd("run", "--", str(text)))
    text.chmod(0o644)
    assert "not executable" in one_line(arena_cmd("run", "--", str(text)))
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho from the script\n")
    script.chmod(0o755)
    done = arena_cmd("run", "--", str(script))
    assert done.returncode == 0 and done.stdout.startswith("from the script\n") and "verdict: succeeded" in done.stdout


def test_a_program_that_exits_at_once():
    done = arena_cmd("run", "--", "true")
    assert done.returncode == 0 and "verdict: succeeded under adversary observe: exited with status 0" in done.stdout
    failed = arena_cmd("run", "--", "false")
    assert failed.returncode == 1 and "verdict: FAILED" in failed.stdout


def test_a_fork_bomb_is_stopped(build):
    done = arena_cmd("run", "--timeout", "60", "--", str(build("forker")), "300")
    assert done.returncode == 1, done.stderr
    assert "stopped by the tracer: more than 128 processes" in done.stdout


def test_a_program_that_ignores_sigterm_is_killed_after_the_grace(build):
    start = time.monotonic()
    done = arena_cmd("run", "--timeout", "0.5", "--", str(build("ignore_term")))
    assert time.monotonic() - start < 20
    assert done.returncode == 1 and done.stdout.startswith("ignoring SIGTERM\n")
    assert "killed by SIGKILL (timed out)" in done.stdout


def test_on_timeout_the_whole_process_tree_is_killed(tmp_path):
    # Children, grandchildren, a daemon in a session of its own: all were traced, all are killed.
    script = "sleep 300 & (sleep 300 &) & setsid sleep 300 & echo started; wait"
    done = arena_cmd("run", "--timeout", "1", "--", "sh", "-c", script)
    assert done.returncode == 1 and "timed out" in done.stdout and "started" in done.stdout
    # no_leftover_processes checks that none of them is left, running or unreaped.


def test_a_program_that_uses_ptrace_itself(build):
    done = arena_cmd("run", "--", str(build("self_tracer")))
    assert done.returncode == 1 and done.stdout.startswith("traceme: Operation not permitted\n")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_arena_under_a_tracer_says_so():
    done = arena_cmd("run", "--", "true", under=("strace", "-f", "-o", os.devnull))
    assert "itself being traced" in one_line(done)


REFUSE_PTRACE = textwrap.dedent("""
    import errno, sys
    from arena.tracer import _seccomp as S
    # ptrace (x86-64: 101, i386: 26) answers EPERM, as under a container's seccomp profile.
    S.install(S.assemble([S.load(S.NR), S.jeq(101 if sys.maxsize > 2**32 else 26, "no"), S.ret(S.RET_ALLOW), "no",
                          S.ret(S.RET_ERRNO | errno.EPERM)]))
    """)


def test_ptrace_refused_names_the_fix():
    message = one_line(arena_cmd("run", "--", "true", prelude=REFUSE_PTRACE))
    assert "kernel.yama.ptrace_scope" in message and "--cap-add SYS_PTRACE" in message


def test_setuid_programs_are_refused(build, tmp_path):
    from tracees import setuid_copy

    other = setuid_copy(build("mapper"), tmp_path)
    tmp_path.chmod(0o755)
    assert "set-user-ID" in one_line(arena_cmd("run", "--", str(other)))


def test_ctrl_c_kills_the_program_and_exits_130(build):
    from arena.tracer import _ptrace
    from tracees import descendants

    # The program, killed with its tracer, is an orphan: it comes back to this process (as to init) to be reaped.
    _ptrace.prctl(_ptrace.PR_SET_CHILD_SUBREAPER, 1)
    # Ctrl-C as from a terminal, even if the suite was started with SIGINT ignored (by a command run with &).
    default = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    p = subprocess.Popen(commands.arena_argv("run", "--", str(build("ignore_term")), prelude=default),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ignoring SIGTERM\n"
    running = descendants(p.pid)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 20
    while running and time.monotonic() < deadline:
        for pid in list(running):
            try:
                gone = os.waitpid(pid, os.WNOHANG)[0] == pid
            except ChildProcessError:
                gone = not os.path.exists(f"/proc/{pid}")
            if gone:
                running.discard(pid)
        time.sleep(0.02)
    assert not running, f"still there: {running}"


# -- demo --real -------------------------------------------------------------------------------------


def test_demo_real_without_any_go_is_one_line(tmp_path):
    # No go on PATH, no toolchain in the cache.
    message = one_line(arena_cmd("demo", "--real", env={"PATH": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}), "demo")
    assert "no Go program could run" in message and "make go-toolchains" in message


@pytest.mark.parametrize("option", [["--rule", "legacy"], ["--layout", "64"], ["--svg", "x.svg"]])
def test_demo_real_takes_no_model_options(option):
    assert option[0] in one_line(arena_cmd("demo", "--real", *option), "demo")


def test_runs_needs_real():
    assert "--runs" in one_line(arena_cmd("demo", "--runs", "3"), "demo")


@pytest.mark.slow
@pytest.mark.backend_independent(False)  # the demo runs the model beside each program, on the memory backend
def test_demo_real_reproduces_ten_runs_of_ten():
    """Each runtime, ten times: Go 1.8 dies, its fix releases the low region, Go 1.9 allocates in it, Debian's
    Go releases its misplaced heap arenas; every run's calls really rewritten, the model agreeing."""
    if sysmem.NATIVE_BITS == 32:
        pytest.skip("the demo's amd64 row needs a 64-bit Python")
    done = arena_cmd("demo", "--real", "--runs", "10", "--json", timeout=3600)
    report = json.loads(done.stdout)
    ran = [row for row in report["rows"] if row["runs"]]
    assert ran, report
    for row in ran:
        assert row["reproduced"] == 10, [r["why"] for r in row["runs"] if not r["reproduced"]]
    assert done.returncode == 0
    print(f"\ndemo --real: {sum(row['reproduced'] for row in ran)} of {10 * len(ran)} runs reproduced: "
          + ", ".join(f"{row['runtime']} {row['arch']} {row['reproduced']}/10" for row in ran))
