"""One search split over N processes, the first to find something winning: what ``arena hunt --jobs`` runs.

``run(work, jobs)`` forks ``jobs`` processes; process ``i`` runs
``work(i, tally)`` and sends back what it returns. A job calls
``tally(done, found)`` as it goes (units of work done so far, and whether it
has found something); ``False`` tells it to stop now. The first job to report
a find wins: every other job is then told to stop, and a find reported later
is not the winner's (the job stops instead of finishing it). The parent
shows progress from the tallies, and a Ctrl-C there stops every job.

Processes are forked, not spawned: each starts with this process's address
space as it is (the same mappings, a crowd of placeholders included), and
nothing has to be pickled on the way in: the work may close over anything.
Only results travel back, pickled. A child never runs the parent's exit
handlers, and every child is waited for.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")

# winner: no job has found anything yet; STOP_ALL: the parent stopped every job.
_NONE, _STOP_ALL = -1, -2


class JobFailed(RuntimeError):
    """A job died without an answer, or its answer could not be sent back: the message says which and why."""


class Tally:
    """What job ``i`` reports through: its count in shared memory, the winner's number beside it."""

    def __init__(self, counts: Any, winner: Any, i: int) -> None:
        self._counts, self._winner, self._i = counts, winner, i

    def __call__(self, done: int, found: bool) -> bool:
        """Report ``done`` units (and a find); whether to go on."""
        self._counts[self._i] = done
        winner: int = self._winner.value
        if found and winner == _NONE:
            with self._winner.get_lock():
                if self._winner.value == _NONE:
                    self._winner.value = self._i
                winner = self._winner.value
        return winner == _NONE or winner == self._i


def run(work: Callable[[int, Callable[[int, bool], bool]], R], jobs: int,
        progress: Callable[[int, bool], None] | None = None, interval: float = 1.0) -> tuple[list[R], int | None]:
    """``work(i, tally)`` in ``jobs`` forked processes: their results in job order, and the winner's number (or None).

    ``progress(done, found)`` is called about every ``interval`` seconds with
    the jobs' total. What a job raised is raised here, once every job has
    stopped (the others are told to at once); ``JobFailed`` if a job died
    without an answer; ``KeyboardInterrupt`` after stopping every job.
    """
    ctx = multiprocessing.get_context("fork")
    counts = ctx.Array("q", jobs, lock=False)
    winner = ctx.Value("i", _NONE)
    pipes, procs = [], []
    try:
        for i in range(jobs):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_job, args=(work, i, Tally(counts, winner, i), send, receive),
                               name=f"arena-job-{i}", daemon=True)
            proc.start()
            send.close()  # the child's end: the parent's copy would keep the pipe open past the child
            pipes.append(receive)
            procs.append(proc)
        results: dict[int, tuple[str, Any]] = {}
        shown = time.monotonic()
        while len(results) < jobs:
            waiting = [i for i in range(jobs) if i not in results]
            ready = multiprocessing.connection.wait([pipes[i] for i in waiting], timeout=interval)
            for i in waiting:
                if pipes[i] not in ready:
                    continue
                try:
                    results[i] = pipes[i].recv()
                except EOFError:
                    procs[i].join()
                    results[i] = ("error", JobFailed(f"job {i} died without an answer (exit code {procs[i].exitcode})"))
                if results[i][0] == "error":
                    winner.value = _STOP_ALL  # the others stop at their next step
            now = time.monotonic()
            if progress is not None and now - shown >= interval:
                shown = now
                progress(sum(counts), winner.value >= 0)
    except BaseException:
        winner.value = _STOP_ALL
        raise
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():  # a job stuck in one step: it has nothing more to give
                proc.kill()
                proc.join()
        for p in pipes:
            p.close()
    errors = [value for kind, value in results.values() if kind == "error"]
    if errors:
        raise errors[0]  # as the job raised it (pickled: without its traceback)
    found = winner.value
    return [results[i][1] for i in range(jobs)], (found if found >= 0 else None)


def _job(work: Callable[[int, Callable[[int, bool], bool]], Any], i: int, tally: Tally,
         send: multiprocessing.connection.Connection, receive: multiprocessing.connection.Connection) -> None:
    """Job ``i``, in the child: Ctrl-C is the parent's to handle (it stops every job)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    receive.close()
    try:
        answer: tuple[str, Any] = ("done", work(i, tally))
    except BaseException as exc:  # any failure of the work is the parent's to report
        answer = ("error", exc)
    try:
        send.send(answer)
    except Exception as exc:  # a result or an exception that does not pickle
        send.send(("error", JobFailed(f"job {i}: {type(answer[1]).__name__} could not be sent back: {exc}")))
    send.close()
    os._exit(0)  # nothing of the parent's (exit handlers, finalizers of its objects) runs in the child
