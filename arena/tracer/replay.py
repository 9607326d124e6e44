"""Replay a saved process trace: run the program again under the trace's own decisions and compare the outcomes."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .adversaries import Scripted
from .outcome import Outcome
from .process import run
from .record import load


@dataclasses.dataclass
class Replay:
    """A replay: the ``recorded`` run, the new ``outcome``, whether it ``repeats`` (the program ended the
    same way, with the same fatal line), and the ``differences`` in words (empty when it repeats and the
    program's file is unchanged). The scripted adversary's mismatches are in ``outcome.notes``."""

    recorded: Outcome
    outcome: Outcome
    repeats: bool
    differences: list[str]


def replay(trace: Outcome | str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
           cwd: str | os.PathLike[str] | None = None, timeout: float | None = None, capture: bool = False,
           **options: Any) -> Replay:
    """Run the traced program again (the recorded executable, with the recorded argv) under the ``scripted``
    adversary made from ``trace`` (an ``Outcome`` or a file), and compare.

    Raises what ``load`` raises for a file, and what ``run`` raises (``options``
    are run's other keywords: grace, max_processes, ...).
    """
    recorded = trace if isinstance(trace, Outcome) else load(trace)
    file = None if isinstance(trace, Outcome) else os.fspath(trace)
    outcome = run(recorded.argv, Scripted(recorded, file=file), executable=recorded.executable, env=env, cwd=cwd,
                  timeout=timeout, capture=capture, **options)
    differences = []
    if outcome.sha256 != recorded.sha256:
        differences.append(f"the program changed since the trace was saved ({recorded.executable}: "
                           f"sha256 {recorded.sha256[:12]}... then, {outcome.sha256[:12]}... now)")
    ended, before = outcome.ended(), recorded.ended()
    if ended != before or outcome.timed_out != recorded.timed_out:
        differences.append(f"the program {ended}{' (timed out)' * outcome.timed_out}; "
                           f"in the trace it {before}{' (timed out)' * recorded.timed_out}")
    if outcome.fatal != recorded.fatal:
        differences.append(f"fatal line: {outcome.fatal or 'none'}; in the trace: {recorded.fatal or 'none'}")
    repeats = ended == before and outcome.timed_out == recorded.timed_out and outcome.fatal == recorded.fatal
    return Replay(recorded, outcome, repeats, differences)
