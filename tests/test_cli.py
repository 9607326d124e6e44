"""The ``arena`` command line, run in-process against real memory (and once as ``python -m arena``)."""
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import arena
from arena import sysmem
from arena.harness.run import size_text
from arena.interface import cli, demo
from commands import arena_cmd


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_shows_every_rule_side_by_side_and_succeeds(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # wide enough for every rule's decisions on one line
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "fixed" in out and "legacy" in out and "go1.9" in out
    assert "accepted 0x10000000, moved arena_used DOWN" in out and "rejected 0x10000000; fallback" in out


@pytest.mark.needs_64_bit
def test_demo_on_64_bit_explains_why_every_rule_rejects(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run(capsys, "demo", "--layout", "64")
    assert code == 0
    assert out.count("rejected 0xbfa0000000; out-of-memory") == len(arena.RULES)
    assert "arena_start = 0" in " ".join(out.split())  # wrapped to the terminal


def test_demo_json_is_one_object_with_every_event(capsys):
    code, out, _ = run(capsys, "demo", "--rule", "legacy", "--json")
    data = json.loads(out)
    assert code == data["exit"] == 0
    (legacy,) = data["rules"]
    assert legacy["rule"] == "legacy" and len(legacy["lost"]) == len(demo.LIVE)
    assert [e["verdict"] for e in legacy["events"]][-2:] == ["accepted", "committed"]


@pytest.mark.parametrize("argv, message", [
    (["demo", "--rule", "newest"], "arena demo: argument --rule: expected one of fixed, legacy, go1.9, strict, go1.11, all, "
                                   "or module:attr of your own rule (python3 -m pydoc arena.policy.rules), got 'newest' "
                                   "(see arena demo --help)"),
    (["demo", "--layout", "16"], "arena demo: argument --layout: invalid choice: '16' (choose from '32', '64') (see arena demo --help)"),
    (["replay"], "arena replay: the following arguments are required: TRACE.json (see arena replay --help)"),
    (["replay", "t.json", "--color"], "arena replay: unrecognized arguments: --color (see arena replay --help)"),
    (["nothing"], "arena: argument COMMAND: invalid choice: 'nothing' (choose from 'demo', 'replay', 'maps', 'hunt', 'run', 'bench') "
                  "(see arena --help)"),
    ([], "arena: the following arguments are required: COMMAND (see arena --help)"),
    (["bench", "--slow"], "arena bench: unrecognized arguments: --slow (see arena bench --help)"),
])
@pytest.mark.backend_independent
def test_usage_errors_exit_2_in_one_line_naming_the_fix(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    assert capsys.readouterr().err == message + "\n"


@pytest.mark.backend_independent
def test_save_trace_needs_one_rule(capsys):
    code, _, err = run(capsys, "demo", "--save-trace", "x.json")
    assert code == 2 and err == "arena demo: --save-trace needs a single --rule: add --rule legacy, say\n"


def test_a_saved_demo_replays_with_exit_1_under_legacy_and_0_otherwise(capsys, tmp_path):
    path = str(tmp_path / "legacy.json")
    assert run(capsys, "demo", "--rule", "legacy", "--save-trace", path)[0] == 0
    code, out, _ = run(capsys, "replay", path)
    assert code == 1
    assert "same decisions as the recorded run" in out and "arena_used-decreased" in out
    code, out, _ = run(capsys, "replay", path, "--rule", "fixed")
    assert code == 0 and "verify: no violation" in out
    code, out, _ = run(capsys, "replay", path, "--rule", "all", "--json")
    data = json.loads(out)
    assert code == data["exit"] == 1
    assert [(r["rule"], bool(r["violations"])) for r in data["rules"]] == [
        ("fixed", False), ("legacy", True), ("go1.9", False), ("strict", False), ("go1.11", False)]


@pytest.mark.backend_independent
def test_a_malformed_trace_exits_2_naming_the_field_without_a_traceback(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "arena-trace", "version": 1, "layout": "32", "rule": "fixed",
                                "requests": [8192], "answers": [None, True]}))
    code, out, err = run(capsys, "replay", str(path))
    assert code == 2 and out == ""
    assert err.strip() == f'arena replay: {path}: answers[1]: expected an address, null or "no-room", got true'


@pytest.mark.backend_independent
def test_a_missing_trace_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "replay", str(tmp_path / "none.json"))
    assert code == 2 and "No such file" in err and "Traceback" not in err


def test_maps_annotates_the_live_arena(capsys):
    code, out, _ = run(capsys, "maps")
    assert code == 0
    assert "rejected-and-released (grow rejected: released)" in out and "(unmapped)" in out
    assert "first (metadata)" in out and "fallback; committed (1 allocation)" in out
    assert "committed (5 allocations, 5 LOST)" in out


def test_maps_json_from_a_trace(capsys, tmp_path):
    path = str(tmp_path / "t.json")
    run(capsys, "demo", "--rule", "go1.9", "--save-trace", path)
    code, out, _ = run(capsys, "maps", "--trace", path, "--json")
    data = json.loads(out)
    assert code == 0
    (go19,) = data["rules"]
    roles = [role for row in go19["mappings"] for role in row["roles"]]
    assert "reservation" in roles and "first (metadata)" in roles
    assert all(row["mapped"] for row in go19["mappings"])


@pytest.mark.backend_independent
def test_bench_from_an_installed_package_says_benchmarks_run_from_a_checkout(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_bench_script", lambda: None)  # as installed: no benchmarks/ beside the package
    code, out, err = run(capsys, "bench", "--quick")
    assert code == 2 and out == ""
    assert err == ("arena bench: the benchmarks are not installed with the package: they run from a source checkout "
                   "of mmap-arena (there: make bench, or arena bench)\n")


def test_python_dash_m_arena_runs_the_demo():
    done = subprocess.run([sys.executable, "-m", "arena", "demo", "--rule", "fixed"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "fallback 0x" in done.stdout


@pytest.mark.backend_independent
def test_version_flag_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"arena {arena.__version__}\n"
    assert arena.__version__ == importlib.metadata.version("mmap-arena")


@pytest.mark.parametrize("backend, message", [
    ("rust", "arena demo: ARENA_BACKEND='rust' is not a backend: set it to one of cffi, ctypes, or unset it"),
    ("cffi", "arena demo: compiled shim unavailable (import of arena._native halted; None in sys.modules): "
             "install a C compiler and reinstall"),
], ids=["unknown", "cffi-without-shim"])
@pytest.mark.backend_independent
def test_a_backend_that_cannot_be_had_exits_2_in_one_line(capsys, monkeypatch, backend, message):
    from arena.sysmem import _cffi

    monkeypatch.setitem(sys.modules, "arena._native", None)  # as if the install skipped the shim
    monkeypatch.setattr(_cffi, "_lib", None)
    monkeypatch.setenv("ARENA_BACKEND", backend)
    code, out, err = run(capsys, "demo")
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


# -- maps --pid: another process, through psutil ----------------------------------

# Maps 16 MiB, writes the first 4 MiB, says where, and waits for its stdin to close.
CHILD = """
import ctypes, mmap, sys
if sys.argv[1:] == ["private"]:
    ctypes.CDLL(None).prctl(4, 0)  # PR_SET_DUMPABLE 0: only a privileged reader may see its mappings
m = mmap.mmap(-1, 16 << 20)
m.write(b"x" * (4 << 20))
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def child(request):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *getattr(request, "param", [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.pid, int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


@pytest.mark.backend_independent
def test_maps_pid_lists_another_process_mappings_with_resident_bytes(child):
    pid, addr = child
    done = arena_cmd("maps", "--pid", str(pid), "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["command"] == "maps" and data["pid"] == pid and data["exit"] == 0
    (mine,) = [m for m in data["mappings"] if m["start"] <= addr < m["end"]]
    assert mine["perms"].startswith("rw") and mine["end"] - mine["start"] >= 16 << 20
    # The 4 MiB written are resident, and with transparent huge pages at most
    # a 2 MiB page more on each side: never the whole mapping.
    assert 4 << 20 <= mine["rss"] <= 8 << 20
    assert any(m["name"].endswith(os.path.basename(os.path.realpath(sys.executable))) for m in data["mappings"])

    # Wide enough for a row per mapping (tests/test_tables.py checks narrower terminals).
    text = arena_cmd("maps", "--pid", str(pid), env={"COLUMNS": "250"}, timeout=60)
    assert text.returncode == 0, text.stderr
    head, columns, *rows = text.stdout.splitlines()
    assert head.startswith(f"/proc/{pid}/smaps: {len(data['mappings'])} mappings, ")
    assert columns.split() == ["start", "end", "size", "perms", "resident", "name"]
    (row,) = [re.split(r"\s{2,}", r) for r in rows if r.startswith(f"{mine['start']:#x} ")]
    assert row[2:5] == [size_text(mine["end"] - mine["start"]), mine["perms"], size_text(mine["rss"])]


@pytest.mark.backend_independent
def test_maps_pid_of_no_process_exits_2_in_one_line():
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: the pid names no process now
    done = arena_cmd("maps", "--pid", str(gone.pid), timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"arena maps: no running process with pid {gone.pid}\n"


@pytest.mark.parametrize("child", [["private"]], indirect=True)
@pytest.mark.backend_independent
def test_maps_pid_of_a_process_we_may_not_read_exits_2_in_one_line(child):
    pid, _ = child
    under = ()
    if os.geteuid() == 0:
        # Root reads anything; without its capabilities it is any other reader.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing to drop the capabilities")
        under = ("setpriv", "--inh-caps=-all", "--bounding-set=-all")
    done = arena_cmd("maps", "--pid", str(pid), under=under, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"arena maps: pid {pid}: permission denied reading /proc/{pid}/smaps: it is ")
    # Advice that fits who asked: root is told what it lacks, another user to run as root.
    assert done.stderr.endswith("docker run --cap-add SYS_PTRACE)\n" if os.geteuid() == 0 else "run as root\n")


@pytest.mark.parametrize("argv", [["--pid", "1", "--trace", "t.json"], ["--pid", "1", "--rule", "fixed"]])
@pytest.mark.backend_independent
def test_maps_pid_takes_no_arena_options(capsys, argv):
    code, _, err = run(capsys, "maps", *argv)
    assert code == 2 and "takes no --trace, --rule or --layout" in err


@pytest.mark.parametrize("pid", ["0", "-5", "self"])
@pytest.mark.backend_independent
def test_maps_pid_must_be_a_process_id(capsys, pid):
    with pytest.raises(SystemExit) as exit:
        cli.main(["maps", "--pid", pid])
    assert exit.value.code == 2 and "not a process id" in capsys.readouterr().err


# -- --crowd: a real process's address space -----------------------------------------


@pytest.mark.parametrize("command", [["demo", "--rule", "legacy"], ["replay", "TRACE"], ["hunt", "--examples", "50"]])
def test_crowd_runs_a_command_among_a_shipped_dumps_mappings(capsys, tmp_path, command):
    path = str(tmp_path / "t.json")
    run(capsys, "demo", "--rule", "go1.9", "--save-trace", path)
    code, out, err = run(capsys, *[path if a == "TRACE" else a for a in command], "--crowd", "python3-i386")
    assert code == 0, err
    assert re.search(f"^arena {command[0]}: crowd python3-i386: [0-9,]+ ranges? occupied ", err), err


def test_a_malformed_maps_dump_exits_2_naming_the_line(capsys, tmp_path):
    dump = tmp_path / "maps.txt"
    dump.write_text("10000000-10400000 r-xp 00000000 08:01 1234 /bin/x\nthis is not a maps line\n")
    for argv in (["demo"], ["hunt"]):
        code, out, err = run(capsys, *argv, "--crowd", str(dump))
        assert code == 2 and out == ""
        assert err == f"arena {argv[0]}: {dump}: line 2 is not a /proc/PID/maps line: 'this is not a maps line'\n"


def test_the_20259_demo_where_the_crowd_holds_its_addresses_is_a_usage_error(capsys, tmp_path):
    dump = tmp_path / "maps.txt"
    dump.write_text("10000000-20000000 rw-p 00000000 00:00 0\n")
    code, _, err = run(capsys, "demo", "--rule", "legacy", "--crowd", str(dump))
    if sysmem.NATIVE_BITS == 64:
        assert code == 2 and "cannot run in this address space" in err and "0x10000000" in err
    else:
        assert code in (0, 2) and "Traceback" not in err  # a real 32-bit process may hold part of it already
