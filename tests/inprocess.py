"""``arena ARGV`` through the command line's main() in this process: what it says about a mistake, without the
start of an interpreter (a tenth of a second a command). A test of a run, of its output as a process writes it,
of signals or of exit codes as the shell sees them starts a real subprocess instead (tests/commands.py)."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess

import pytest

from arena.interface import cli


def arena_main(*argv: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    """``arena ARGV`` through ``cli.main`` in this process, its exit code and output as a subprocess.run has them."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse's usage mistakes and --help
            code = exc.code
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
