"""Every table and title the command line prints fits the terminal's width (COLUMNS): paths lose their middle,
prose wraps, numbers and addresses are never cut."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from arena.interface import cli, maps, report

WIDTHS = sorted({60, 61, 80, 100, 200, *range(63, 200, 17)})


def _lines_fit(monkeypatch, capsys, argv, widths=WIDTHS):
    for width in widths:
        monkeypatch.setenv("COLUMNS", str(width))
        cli.main(argv)
        out = capsys.readouterr().out
        over = [line for line in out.splitlines() if len(line) > width]
        assert over == [], (width, argv, over)


@pytest.fixture(scope="module")
def legacy_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "legacy.json"
    assert cli.main(["demo", "--rule", "legacy", "--save-trace", str(path), "--json"]) == 0
    return str(path)


NEEDS_64 = pytest.mark.needs_64_bit


@pytest.mark.parametrize("argv", [["maps"], pytest.param(["maps", "--layout", "64"], marks=NEEDS_64), ["maps", "--rule", "go1.11"],
                                  ["demo"], pytest.param(["demo", "--layout", "64"], marks=NEEDS_64)])
def test_the_model_commands_fit_every_width(monkeypatch, capsys, argv):
    _lines_fit(monkeypatch, capsys, argv)


def test_a_trace_replayed_and_mapped_fits_every_width(monkeypatch, capsys, legacy_trace):
    capsys.readouterr()
    _lines_fit(monkeypatch, capsys, ["replay", legacy_trace, "--rule", "all"])
    _lines_fit(monkeypatch, capsys, ["maps", "--trace", legacy_trace])


def test_another_process_s_mappings_fit_every_width(monkeypatch, capsys):
    pytest.importorskip("psutil")
    # This process: mappings with long paths (the interpreter's libraries) and the 18-digit vsyscall page.
    _lines_fit(monkeypatch, capsys, ["maps", "--pid", str(os.getpid())])


def test_a_hunt_s_report_fits_the_width(monkeypatch, capsys):
    pytest.importorskip("hypothesis")
    # A hunt costs seconds: a few widths, the narrowest first.
    _lines_fit(monkeypatch, capsys, ["hunt", "--rule", "legacy", "--seed", "1"], widths=[60, 77])
    _lines_fit(monkeypatch, capsys, ["hunt", "--rule", "fixed", "--examples", "20", "--seed", "1"], widths=[60])


def test_a_real_program_s_run_fits_the_width(monkeypatch, capsys):
    _lines_fit(monkeypatch, capsys, ["run", "--", shutil.which("true") or "/bin/true"], widths=[60, 80])


def test_piped_without_columns_the_width_is_the_default(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    done = subprocess.run([sys.executable, "-m", "arena", "maps", "--pid", str(os.getpid())], capture_output=True,
                          text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
    if "needs psutil" in done.stderr:
        pytest.skip("psutil is not installed")
    assert done.returncode == 0, done.stderr
    assert max(map(len, done.stdout.splitlines())) <= cli.DEFAULT_WIDTH


# -- report.fit, the layout itself ------------------------------------------------

_hex = st.integers(0, 2**64 - 1).map(lambda x: f"{x:#x}")
_words = st.lists(st.text("abcdefghij()-", min_size=1, max_size=12), min_size=1, max_size=12).map(" ".join)
_paths = st.lists(st.text("abcdefghij_-", min_size=1, max_size=20), min_size=1, max_size=8).map(lambda p: "/" + "/".join(p))


@given(st.lists(st.tuples(_hex, _hex, st.sampled_from(["4 KiB", "16392 KiB", "0"]), _words, _paths), min_size=1,
                max_size=6), st.integers(60, 200))
def test_fit_keeps_every_line_within_the_width_and_every_number_whole(cells, width):
    rows = [["start", "end", "size", "role", "name"], *[list(c) for c in cells]]
    text = report.fit(rows, width, prose=[3], paths=[4])
    assert max(map(len, text.splitlines())) <= width
    for start, end, size, _, path in cells:
        for number in (start, end, size):
            assert number in text  # never cut
        shown = [line.strip().split()[-1] for line in text.splitlines() if "..." in line or path in line]
        # Elided: its start and its end, "..." between them (the paths drawn have no dots of their own).
        assert path in text or any(path.startswith(s.partition("...")[0]) and path.endswith(s.partition("...")[2])
                                   and len(s.partition("...")[0]) >= 1 for s in shown)


# Cells with blanks at their ends, line breaks of both kinds columns and width_of tell apart ("\n" breaks a
# cell, "\r" and "\u2028" only width_of's lines), and a tab.
_cells = st.text("ab ;\n\r\t\u2028", max_size=6)


@given(st.lists(st.lists(_cells, min_size=3, max_size=3), min_size=1, max_size=6))
@example([["a ", "", ""], ["b", " ", ""]])  # the blanks that end a line are not its width
@example([["a", "b\rbb", "c"]])  # width_of starts a line at "\r"
def test_a_table_is_measured_exactly_as_wide_as_it_is_laid_out(rows):
    # side_by_side measures each table it tries without laying it out: the width it decides by is the printed one.
    assert report._extent([list(column) for column in zip(*rows)]) == report.width_of(report.columns(rows))


def test_a_record_shows_braces_as_they_are():
    # A record's line is made by a format: a brace in a heading or a cell is text, not a field.
    rows = [["#", "{step}", "why"], ["0", "{0}", "because"]]
    assert report.fit(rows, 8, prose=[2]).splitlines()[:2] == ["0", "   {step} {0}"]


def test_a_path_loses_its_middle_keeping_more_of_its_end():
    path = "/usr/lib/x86_64-linux-gnu/libtinfo.so.6.4"
    assert report.elide(path, len(path)) == path
    short = report.elide(path, 25)
    assert len(short) == 25 and short.startswith("/usr/") and short.endswith("libtinfo.so.6.4")


# -- why another process's mappings could not be read ---------------------------------


def test_a_denial_as_root_with_the_capability_blames_no_missing_permission():
    text = maps.denied(1, maps.Access(euid=0, can_trace=True, owner=0, hidepid=None))
    assert "even as root" in text and "security module" in text and "run as" not in text


def test_a_denial_as_root_without_the_capability_names_it():
    text = maps.denied(1, maps.Access(euid=0, can_trace=False, owner=1000, hidepid=None))
    assert "CAP_SYS_PTRACE" in text and "--cap-add SYS_PTRACE" in text


def test_a_denial_as_another_user_says_whose_it_is_and_how_proc_is_mounted():
    text = maps.denied(7, maps.Access(euid=1000, can_trace=False, owner=0, hidepid="invisible"))
    assert "belongs to uid 0" in text and text.endswith("run as its owner or root; /proc is mounted with hidepid=invisible")
    text = maps.denied(7, maps.Access(euid=1000, can_trace=False, owner=1000, hidepid=None))
    assert "it is yours" in text and "run as root" in text


def test_a_denial_of_root_s_own_process_to_a_root_without_the_capability():
    text = maps.denied(7, maps.Access(euid=0, can_trace=False, owner=0, hidepid=None))
    assert "it is root's" in text and "lacks CAP_SYS_PTRACE" in text and "owner" not in text


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to become another user")
def test_an_unprivileged_user_is_told_to_run_as_the_owner(tmp_path):
    pytest.importorskip("psutil")
    # A process of root's, read by nobody: the kernel refuses, for real.
    with subprocess.Popen(["sleep", "60"]) as owned:
        try:
            done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                                   "arena", "maps", "--pid", str(owned.pid)], capture_output=True, text=True, timeout=60,
                                  cwd=tmp_path)
        finally:
            owned.kill()
    if "No module named" in done.stderr:
        pytest.skip("the package is not readable by user nobody here")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"arena maps: pid {owned.pid}: permission denied reading /proc/{owned.pid}/smaps "
                           "(it belongs to uid 0): run as its owner or root\n")


def test_a_pid_that_does_not_exist_is_named(capsys):
    pytest.importorskip("psutil")
    pid = int(open("/proc/sys/kernel/pid_max").read()) - 1  # above any pid handed out on a machine this young
    assert cli.main(["maps", "--pid", str(pid)]) == 2
    assert capsys.readouterr().err == f"arena maps: no running process with pid {pid}\n"
