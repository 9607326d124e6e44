"""What a traced run of a real program came to: how it ended, and every mmap-family call with its answer."""
from __future__ import annotations

import dataclasses
import signal as _signal

from ..words import plural
from .calls import Record


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 77`` for a number with no name."""
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclasses.dataclass
class Outcome:
    """A program's traced run (also what ``arena.tracer.record`` saves and loads).

    ``exit_status`` (0-255) or ``signal`` (the number that killed it) says
    how the program's first process ended. ``timed_out``: the run's timeout
    expired and the program was terminated. ``stopped``: why the tracer
    stopped the program early, in words (timeout, too many processes, an
    adversary that raised, a program it cannot trace), else None.
    ``leftovers``: processes of the program still running when its first
    process ended (killed then). ``calls``: each traced call, in the order
    the tracer saw them (the first ``max_calls``; ``calls_dropped`` counts the
    rest). ``fatal``: the runtime's fatal line in its stderr (Go's
    ``fatal error:``, ``panic:``, ``runtime:``; glibc's malloc checks, an
    assertion). ``stdout``/``stderr``: the captured output (``capture=True``),
    at most the capture limit each, else None (``output_dropped``: the
    bytes past the limit, not kept). ``notes``: what the adversary
    noted (a scripted replay's mismatches, a step it could not take).
    """

    argv: list[str]
    executable: str
    sha256: str
    bits: int
    adversary: str
    exit_status: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stopped: str | None = None
    wall_time: float = 0.0
    processes: int = 1
    leftovers: int = 0
    calls: list[Record] = dataclasses.field(default_factory=list)
    calls_dropped: int = 0
    fatal: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    stdout: bytes | None = None
    stderr: bytes | None = None
    output_dropped: int = 0

    @property
    def rewritten(self) -> int:
        """How many recorded calls the adversary changed (a hint moved, or a call failed)."""
        return sum(r.rewritten for r in self.calls)

    @property
    def failed(self) -> bool:
        """A non-zero exit, a signal, a fatal line in stderr, a timeout, or a stop by the tracer."""
        return bool(self.exit_status or self.signal is not None or self.fatal or self.timed_out or self.stopped)

    def ended(self) -> str:
        """How the program ended, in words: ``exited with status 2``, ``killed by SIGKILL``."""
        if self.signal is not None:
            return f"killed by {signal_name(self.signal)}"
        if self.exit_status is not None:
            return f"exited with status {self.exit_status}"
        return "did not start"

    def describe(self) -> str:
        """One line for people, e.g. ``exited with status 2 after 1.20 s (fatal error: ...); 240 calls, 2 rewritten``."""
        text = f"{self.ended()} after {self.wall_time:.2f} s"
        why = [w for w in (self.stopped, self.fatal) if w]
        if why:
            text += f" ({'; '.join(why)})"
        n = len(self.calls) + self.calls_dropped
        return f"{text}; {plural(n, 'call')}, {self.rewritten:,} rewritten"
