"""``arena ARGV`` in a new Python process, as a user's shell runs it: its exit code and its output as text.

A test of what a command says about a mistake calls ``cli.main`` in its own process instead
(tests/inprocess.py); a test of a run, of output as a process writes it, of signals or of exit codes as
the shell sees them starts a process here.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

MAIN = "import sys; from arena.interface.cli import main; sys.exit(main(sys.argv[1:]))"
"""What the installed ``arena`` script runs, as ``python -c`` code."""


def arena_argv(*argv: str, prelude: str = "", installed: bool = False, under: Sequence[str] = ()) -> list[str]:
    """The command line of ``arena ARGV``; ``prelude`` is Python run first (to hide a module, say).

    ``installed``: with ``-P``, so that the working directory is not on ``sys.path``, as with the
    installed script (whose own folder comes first there, not the user's). ``under``: the command
    that runs it (a tracer, a drop of privileges).
    """
    return [*under, sys.executable, *(["-P"] if installed else []), "-c", prelude + MAIN, *argv]


def arena_cmd(*argv: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              prelude: str = "", timeout: float = 120, installed: bool = False, under: Sequence[str] = (),
              **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``arena ARGV`` run to its end; ``env`` adds to this process's environment.

    ``installed``: as the installed script runs in a user's folder, with the working directory off
    ``sys.path`` and without this process's ``PYTHONPATH`` (``env`` may set one).
    """
    environment = {k: v for k, v in os.environ.items() if not (installed and k == "PYTHONPATH")}
    return subprocess.run(arena_argv(*argv, prelude=prelude, installed=installed, under=under),
                          env={**environment, **(env or {})},
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs)
