"""The command line as a newcomer meets it: exit codes 0/1/2, one line per mistake and never a traceback,
help that shows defaults, a demo that fits the terminal, a verdict a closed pipe cannot change. Help and
mistakes refused before anything runs through its main() in this process (tests/inprocess.py); the rest
through a real subprocess."""
import json
import os
import subprocess
import sys
import time

import pytest

from arena.harness import trace
from arena.managers import NAMES
from budget import budget
from commands import arena_argv, arena_cmd
from inprocess import arena_main

COMMANDS = ("demo", "replay", "maps", "hunt", "run", "bench")


def one_line_usage_error(done, command):
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"arena {command}: "), done.stderr
    return done.stderr.rstrip("\n")


@pytest.fixture(scope="module")
def legacy_trace(tmp_path_factory):
    """The 20259 demo under legacy, saved: replaying it finds violations (exit 1)."""
    path = tmp_path_factory.mktemp("trace") / "legacy.json"
    done = arena_cmd("demo", "--rule", "legacy", "--save-trace", str(path))
    assert done.returncode == 0, done.stderr
    return path


# -- arena demo fits the terminal --------------------------------------------------


@pytest.mark.parametrize("width, groups", [(80, 4), (100, 3), (200, 1)])
def test_demo_fits_the_terminal_stacking_the_rules_where_they_do_not(width, groups):
    done = arena_cmd("demo", env={"COLUMNS": str(width)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= width
    # Each group of rules is a table of its own, with a header row of rule names.
    headers = [line.split() for line in lines if line.startswith(" ") and set(line.split()) <= set(NAMES)]
    assert len(headers) == groups and [rule for h in headers for rule in h] == list(NAMES)
    # Every table has every row.
    assert sum(line.startswith("bytes intact ") for line in lines) == groups
    assert sum(line.startswith("allocations lost ") for line in lines) == groups
    # ... and says what "lost" means, beside "bytes intact".
    text = " ".join(done.stdout.split())
    assert ("allocations lost: handed out, but no longer counted as heap (contains(p) is false). "
            "bytes intact: every allocation still reads back the bytes written into it.") in text


def test_demo_of_one_rule_speaks_only_of_that_rule():
    done = arena_cmd("demo", "--rule", "fixed", env={"COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    for other in NAMES[1:]:
        assert other not in done.stdout, other
    assert "fixed (Go commit e5a5c03) refuses the low region" in done.stdout
    assert "arena_used after" in done.stdout and "heap arenas after" not in done.stdout
    done = arena_cmd("demo", "--rule", "go1.11", env={"COLUMNS": "100"})
    assert "arena_used after" not in done.stdout and "heap arenas after" in done.stdout
    assert not any(rule in done.stdout for rule in ("legacy", "go1.9", "strict", "fixed"))


# -- help -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMANDS])
@pytest.mark.backend_independent
def test_help_has_no_markup_and_shows_defaults(command):
    done = arena_main(*([command] if command else []), "--help", env={"COLUMNS": "80"})
    assert done.returncode == 0 and done.stderr == ""
    assert max(map(len, done.stdout.splitlines())) <= 80
    assert "``" not in done.stdout and ":class:" not in done.stdout
    if command is None:
        assert "exit codes: 0 success, 1 a rule violation found, 2 usage" in done.stdout
        assert "ARENA_BACKEND=cffi or ctypes" in done.stdout
    defaults = {"demo": ["(default: all)", "(default: 32,"], "replay": ["(default: the trace's own rule)", "(default: the trace's own)"],
                "maps": ["(default: all)"], "hunt": ["(default: fixed)", "(default: 32)", "(default: 1000,"],
                "bench": ["(default: the full run"], "run": ["(default: observe", "(default: none)"]}.get(command, [])
    text = " ".join(done.stdout.split())
    for default in defaults:
        assert default in text, default


# -- mistakes: one line, exit 2, before anything runs -------------------------------


@pytest.mark.parametrize("option", ["--svg", "--save-trace"])
@pytest.mark.parametrize("path, why", [("/no/such/dir/out", "No such file or directory"), ("/", "is a directory")])
@pytest.mark.backend_independent
def test_an_output_path_that_cannot_be_written_is_refused_before_the_run(option, path, why):
    # A hunt of 60 s that is refused at once never ran.
    t0 = time.monotonic()
    done = arena_main("hunt", "--time", "60", option, path)
    assert time.monotonic() - t0 < 30
    line = one_line_usage_error(done, "hunt")
    assert line.startswith(f"arena hunt: {option} {path}: {why}: give a ")
    done = arena_main("demo", "--rule", "legacy", option, path)
    assert one_line_usage_error(done, "demo").startswith(f"arena demo: {option} {path}: {why}")


@pytest.mark.backend_independent
def test_a_trace_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "t.json"
    path.write_bytes(b"\xff\xfe{\x00}\x00")
    line = one_line_usage_error(arena_main("replay", str(path)), "replay")
    assert line == f"arena replay: {path}: not UTF-8 text (byte 0xff at offset 0): a trace is JSON in UTF-8, as arena writes it"


@pytest.mark.backend_independent
def test_a_trace_too_long_is_refused_before_any_replay(tmp_path):
    path = tmp_path / "long.json"
    n = trace.MAX_STEPS + 1
    path.write_text(json.dumps({"format": "arena-trace", "version": 1, "layout": "32", "rule": "fixed",
                                "requests": [8192] * n, "answers": []}))
    t0 = time.monotonic()
    line = one_line_usage_error(arena_main("replay", str(path), "--rule", "all"), "replay")
    assert time.monotonic() - t0 < 20
    assert line == (f"arena replay: {path}: requests: {n:,} requests, more than the {trace.MAX_STEPS:,} a trace may "
                    "hold (python3 -m pydoc arena.harness.trace): split the trace, or replay its first part")


@pytest.mark.backend_independent
def test_a_trace_whose_version_is_a_string_says_so(tmp_path, legacy_trace):
    data = json.loads(legacy_trace.read_text())
    path = tmp_path / "v.json"
    path.write_text(json.dumps({**data, "version": "1"}))
    line = one_line_usage_error(arena_main("replay", str(path)), "replay")
    assert line == f'arena replay: {path}: version: must be the integer 1, got the string "1"'


@pytest.mark.parametrize("value, words", [
    ("CTYPES", None), (" ctypes", None),
    ("rust", "ARENA_BACKEND='rust' is not a backend: set it to one of cffi, ctypes, or unset it"),
])
@pytest.mark.backend_independent
def test_arena_backend_is_read_in_any_case_and_a_wrong_one_is_one_line(value, words):
    done = arena_cmd("demo", "--rule", "fixed", env={"ARENA_BACKEND": value})
    if words is None:
        assert done.returncode == 0 and "CtypesMemory" in done.stdout.splitlines()[0], done.stderr
    else:
        assert one_line_usage_error(done, "demo") == f"arena demo: {words}"


@pytest.mark.backend_independent
def test_arena_backend_cffi_without_the_compiled_shim_is_one_line_naming_the_fix():
    # As if the install had skipped the shim: importing arena._native fails.
    done = arena_cmd("demo", env={"ARENA_BACKEND": "cffi"}, prelude="import sys; sys.modules['arena._native'] = None; ")
    line = one_line_usage_error(done, "demo")
    assert "compiled shim unavailable" in line and "install a C compiler and reinstall" in line
    assert "or set ARENA_BACKEND=ctypes" in line


@pytest.mark.backend_independent
def test_without_the_compiled_shim_a_command_warns_in_one_line_and_runs():
    # As if the install had skipped the shim, with no backend chosen: the ctypes backend, said once.
    env = {k: v for k, v in os.environ.items() if k != "ARENA_BACKEND"}
    done = subprocess.run(arena_argv("demo", "--rule", "fixed", prelude="import sys; sys.modules['arena._native'] = None; "),
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "CtypesMemory" in done.stdout.splitlines()[0], done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("arena demo: warning: compiled shim unavailable (import of arena._native halted")
    assert "using the slower ctypes backend" in done.stderr


@pytest.mark.backend_independent
def test_a_crowd_dump_that_is_not_a_file_of_maps_is_one_line(tmp_path):
    line = one_line_usage_error(arena_main("demo", "--crowd", str(tmp_path)), "demo")
    assert line == f"arena demo: --crowd {tmp_path}: Is a directory"
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(65 << 20)  # sparse: no disk used
    line = one_line_usage_error(arena_main("demo", "--crowd", str(big)), "demo")
    assert line.startswith(f"arena demo: --crowd {big}: larger than 64 MiB: not a /proc/PID/maps dump")


# -- a closed pipe cannot change the verdict ------------------------------------------


def test_a_reader_that_stops_early_never_turns_a_violation_into_success(legacy_trace):
    # arena replay TRACE --rule all | head -1, many times: exit 1 (legacy's violations) every time.
    codes = []
    for _ in range(budget(8, least=2)):
        proc = subprocess.Popen([sys.executable, "-m", "arena", "replay", str(legacy_trace), "--rule", "all"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.stdout.close()  # as head does after its lines
        err = proc.stderr.read()
        codes.append(proc.wait(timeout=60))
        assert b"Traceback" not in err and b"Exception ignored" not in err, err
    assert codes == [1] * len(codes)


def test_a_pipe_closed_before_any_output_keeps_the_verdict(legacy_trace):
    # The reader is gone before a byte is written: every write fails with EPIPE.
    for argv, verdict in ((["replay", str(legacy_trace), "--rule", "all"], 1), (["replay", str(legacy_trace), "--rule", "fixed"], 0),
                          (["demo", "--rule", "legacy", "--json"], 0),
                          # Output smaller than the stream's buffer: the failure shows at its flush.
                          (["hunt", "--rule", "strict", "--examples", "5", "--json"], 0)):
        for _ in range(budget(4)):
            r, w = os.pipe()
            os.close(r)
            try:
                done = subprocess.run([sys.executable, "-m", "arena", *argv], stdout=w, stderr=subprocess.PIPE, timeout=60)
            finally:
                os.close(w)
            assert done.returncode == verdict, (argv, done.stderr)
            # (Without the compiled shim, stderr has the warning that ctypes is used: nothing else.)
            assert b"Traceback" not in done.stderr and b"Broken pipe" not in done.stderr, done.stderr


# -- exit codes end to end ----------------------------------------------------------


def test_exit_codes_0_success_1_violation_2_usage(legacy_trace):
    assert arena_cmd("demo", "--rule", "legacy").returncode == 0  # the bug shown is the demo's point
    assert arena_cmd("replay", str(legacy_trace)).returncode == 1
    assert arena_cmd("replay", str(legacy_trace), "--rule", "fixed").returncode == 0
    assert arena_cmd("replay", "/no/such/trace.json").returncode == 2


# -- fuzz: malformed arguments and files never show a traceback -------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from arena.interface import cli  # noqa: E402

TOKENS = ["demo", "replay", "maps", "hunt", "--rule", "--layout", "--json", "--svg", "--save-trace", "--crowd", "--trace",
          "--pid", "--examples", "--time", "--seed", "--no-maps", "--quick", "--help", "-h", "all", "fixed", "legacy",
          "go1.9", "strict", "go1.11", "32", "64", "16", "0", "-1", "1e9", "nan", "x:y", "arena.policy.rules:Fixed",
          "arena.policy.rules:Bounds", "os:getcwd", "", " ", "--", "-", "\x00", "é", "TRACE", "DIR", "NOFILE", "BIG", "python3-i386"]


def _fuzz_paths(tmp_path):
    good = {"format": "arena-trace", "version": 1, "layout": "32", "rule": "legacy", "start": "0x70000000",
            "initial_size": "0x8000000", "requests": ["0x100000", "0x1000000"], "answers": [None, "0x10000000"]}
    (tmp_path / "t.json").write_text(json.dumps(good))
    return {"TRACE": str(tmp_path / "t.json"), "DIR": str(tmp_path), "NOFILE": str(tmp_path / "none" / "x"),
            "BIG": "9" * 40}


def _assert_clean(code, err):
    assert code in (0, 1, 2), code
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1, err


@settings(max_examples=budget(150), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(argv=st.lists(st.sampled_from(TOKENS), max_size=6))
def test_fuzzed_arguments_never_show_a_traceback(argv, tmp_path_factory, monkeypatch_module):
    paths = _fuzz_paths(tmp_path_factory.mktemp("fuzz"))
    argv = [paths.get(a, a) for a in argv]
    if "hunt" in argv:
        argv += ["--examples", "3"]  # argparse keeps the last: a fuzzed hunt stays short
    if any(a in ("--svg", "--save-trace") for a in argv):
        argv += ["--svg", paths["NOFILE"]]  # never write into the working directory
    out_err = _run(argv)
    _assert_clean(*out_err)


def _run(argv):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: --help, --version, or a usage error
            code = exc.code
    return code, err.getvalue()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(["0x10000000", "0x2000", "no-room", "32", "64", "go1.11", "legacy", "arena-trace", "x:y"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = ["format", "version", "layout", "rule", "start", "initial_size", "requests", "answers", "recorded"]


@settings(max_examples=budget(120), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(changes=st.dictionaries(st.sampled_from(FIELDS + ["extra"]), JSON_VALUES, max_size=3),
       dropped=st.sets(st.sampled_from(FIELDS), max_size=2), rule=st.sampled_from(["legacy", "all", "go1.11"]))
def test_fuzzed_traces_never_show_a_traceback(changes, dropped, rule, tmp_path_factory, monkeypatch_module):
    path = tmp_path_factory.mktemp("fuzz") / "t.json"
    data = json.loads(open(_fuzz_paths(path.parent)["TRACE"]).read())
    data.update(changes)
    for key in dropped:
        data.pop(key, None)
    path.write_text(json.dumps(data))
    _assert_clean(*_run(["replay", str(path), "--rule", rule]))


@settings(max_examples=budget(60), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(blob=st.binary(max_size=200))
def test_fuzzed_bytes_as_a_trace_or_a_maps_dump_never_show_a_traceback(blob, tmp_path_factory, monkeypatch_module):
    path = tmp_path_factory.mktemp("fuzz") / "f"
    path.write_bytes(blob)
    _assert_clean(*_run(["replay", str(path)]))
    _assert_clean(*_run(["demo", "--rule", "fixed", "--crowd", str(path)]))


@pytest.fixture(scope="module")
def monkeypatch_module():
    # A fuzzed "bench" must not start the benchmarks: as from an installed package, it is a usage error.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "_bench_script", lambda: None)
        yield mp


def test_replay_fits_a_100_column_terminal_with_every_reason(legacy_trace):
    wide = arena_cmd("replay", str(legacy_trace), "--rule", "all", env={"COLUMNS": "1000"})
    done = arena_cmd("replay", str(legacy_trace), "--rule", "all", env={"COLUMNS": "100"})
    assert done.returncode == wide.returncode == 1
    assert max(map(len, done.stdout.splitlines())) <= 100 < max(map(len, wide.stdout.splitlines()))
    # Nothing is lost to the narrower terminal: the same words, laid out differently (row
    # names repeat where the rules are stacked; where the kernel chose, in a real 32-bit
    # process, the addresses differ from run to run).
    def words(text):
        return {w for w in text.split() if "0x" not in w}

    assert words(done.stdout) == words(wide.stdout)
