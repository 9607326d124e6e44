"""``arena run``, the replay of a process trace and ``arena demo --real``: real programs for the command line.

Each command returns ``(exit code, what to print)``: 0 when the program
succeeded, 1 when it failed (a non-zero exit, a signal, a fatal line, a
timeout; for the demo, a row that did not reproduce). What cannot start —
no such program, not executable, a bad adversary, ptrace refused, an
unusable trace — raises ``Refused``: one line naming the fix (exit 2).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from .. import jsontext, tracer
from ..harness import goheap, realdemo
from ..harness.real import Beside, beside
from ..tracer.outcome import signal_name
from ..tracer.record import KIND, MAX_BYTES, TraceFileError
from ..words import plural
from . import realtext

EXIT_OK, EXIT_FAILED = 0, 1
T = TypeVar("T")


class Refused(Exception):
    """The program cannot run as asked, or a file cannot be used: the message is one line that names the fix."""


def _traced(start: Callable[[], T]) -> T:
    """``start()``, with every tracer error (and a bad argument) as ``Refused``."""
    try:
        return start()
    except tracer.AdversaryError as exc:
        raise Refused(f"{exc} (the program was stopped)") from None
    except (tracer.TracerError, tracer.AdversarySpecError, TypeError, ValueError) as exc:
        raise Refused(str(exc)) from None


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def _program_json(o: tracer.Outcome, output: bool = True) -> dict[str, Any]:
    return {"argv": o.argv, "executable": o.executable, "bits": o.bits, "exit_status": o.exit_status,
            "signal": o.signal, "signal_name": None if o.signal is None else signal_name(o.signal),
            "timed_out": o.timed_out, "stopped": o.stopped, "fatal": o.fatal, "wall_time": round(o.wall_time, 6),
            "processes": o.processes, "leftovers": o.leftovers, "failed": o.failed,
            "stdout": _text(o.stdout), "stderr": _text(o.stderr) if output else None, "output_dropped": o.output_dropped}


def _calls_json(o: tracer.Outcome) -> dict[str, Any]:
    return {"calls": len(o.calls) + o.calls_dropped, "rewritten": o.rewritten,
            "rewritten_calls": [c for c, r in zip(tracer.dump(o)["calls"], o.calls) if r.rewritten], "notes": o.notes}


def _beside_json(b: Beside | None) -> dict[str, Any] | None:
    if b is None:
        return None
    return {"heap": b.heap.describe(), "design": b.heap.design, "program": b.real, "program_words": b.real_words,
            "shift": b.shift, "notes": b.notes,
            "rules": [{"rule": r.rule, "verdict": r.verdict, "words": r.words, "agrees": r.agrees,
                       "lost": len(r.outcome.lost), "violations": [str(v) for v in r.outcome.violations]} for r in b.runs]}


def _save(outcome: tracer.Outcome, path: str) -> None:
    try:
        tracer.save(outcome, path)
    except OSError as exc:
        raise Refused(f"--save-trace {path}: {exc.strerror}: give a path in a writable directory") from None


# -- arena run ---------------------------------------------------------------------


def run(command: list[str], adversary: str, *, timeout: float | None, save: str | None, as_json: bool,
        every: bool, width: int) -> tuple[int, str]:
    """Run ``command`` under ``adversary``: its output passes through (captured into the JSON with ``as_json``),
    then the calls that matter and the verdict."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise Refused("give the program to run after --, e.g.: arena run --adversary gap -- ./prog arg")
    outcome = _traced(lambda: tracer.run(command, adversary, timeout=timeout, capture=as_json))
    heap = goheap.recognise(outcome)
    if save:
        _save(outcome, save)
    code = EXIT_FAILED if outcome.failed else EXIT_OK
    if as_json:
        return code, json.dumps({"command": "run", "adversary": outcome.adversary, "program": _program_json(outcome),
                                 **_calls_json(outcome), "go_heap": heap.describe() if heap else None,
                                 "trace": save, "exit": code}) + "\n"
    lines = ["",
             realtext.wrap(f"arena run: {outcome.executable} ({outcome.bits}-bit) under adversary {outcome.adversary}", width),
             realtext.calls_table(outcome, heap, width, every)]
    if heap is not None:
        lines.append(realtext.wrap(f"Go's heap: {heap.describe()}", width))
    lines.append(realtext.verdict(outcome, width))
    if save:
        lines.append(realtext.wrap(f"trace saved: {save} (replay it with: arena replay {save})", width))
    return code, "\n".join(lines) + "\n"


# -- arena replay on a process trace ---------------------------------------------------


def process_trace(path: str) -> tracer.Outcome | None:
    """The run saved at ``path`` if it is a process trace (``"kind": "program"``); None for any other file
    (the model's traces, and what is not JSON: the model's loader says what is wrong with it)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise Refused(f"{path}: larger than {MAX_BYTES >> 20} MiB, more than any trace")
    try:
        data = jsontext.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # Not JSON, or not numbers of ours: the model's loader names what is wrong.
        return None
    if not (isinstance(data, dict) and data.get("kind") == KIND):
        return None
    try:
        return tracer.parse(data)
    except TraceFileError as exc:
        raise Refused(f"{path}: {exc}") from None


def replay(path: str, recorded: tracer.Outcome, *, rules: tuple[str, ...] | None, timeout: float,
           as_json: bool, every: bool, width: int) -> tuple[int, str]:
    """Run the recorded program again under the recorded decisions, stopped after ``timeout`` seconds; say whether
    its end repeats, and put the model beside it (fed the new run's answers). Exit as ``arena run`` would."""
    again = _traced(lambda: tracer.replay(path, timeout=timeout, capture=as_json))
    outcome = again.outcome
    try:
        model, unmodelled = beside(outcome, rules), None
    except ValueError as exc:
        model, unmodelled = None, str(exc)
    code = EXIT_FAILED if outcome.failed else EXIT_OK
    if as_json:
        return code, json.dumps({"command": "replay", "trace": path, "kind": "program", "repeats": again.repeats,
                                 "differences": again.differences, "recorded": _program_json(recorded),
                                 "program": _program_json(outcome), **_calls_json(outcome),
                                 "model": _beside_json(model), "model_not_run": unmodelled, "exit": code}) + "\n"
    moves = sum(r.rewritten for r in recorded.calls)
    lines = ["", realtext.wrap(f"replaying {path}: {recorded.executable}, recorded under adversary "
                                f"{recorded.adversary} ({plural(moves, 'call')} rewritten), its decisions applied again", width),
             realtext.calls_table(outcome, model.heap if model else goheap.recognise(outcome), width, every),
             realtext.verdict(outcome, width),
             f"recorded: {recorded.describe()}"
             + (f" ({recorded.fatal})" if recorded.fatal and recorded.fatal not in recorded.describe() else "")]
    if again.repeats and not again.differences:
        lines.append("repeats: yes, the program ended as recorded" + (", with the same fatal line" if outcome.fatal else ""))
    else:
        lines.append("repeats: " + ("yes, but " if again.repeats else "NO: ") + "; ".join(again.differences))
    lines.append("")
    if model is not None:
        lines.append(realtext.beside_text(model, width))
    else:
        lines.append(f"the model: not run ({unmodelled or 'no Go heap reservations recognised in the calls'})")
    return code, "\n".join(lines) + "\n"


# -- arena demo --real -------------------------------------------------------------------

DEMO_HEAD = (
    "Go's heap under an adversarial kernel, for real. Go issue 20259: Go 1.8 accepted a heap reservation that the "
    "kernel placed below its heap and lowered the heap's bound (arena_used); live memory above it stopped being heap "
    "and the runtime crashed. Here the Go test program (arena/data/programs/grow.go: 640 MiB of live data, every byte "
    "checked) is built by each toolchain and run under ptrace; an adversary moves the hints of its own heap "
    "reservations (the kernel still places every mapping, for real). Beside each run, the model (arena's Arena and "
    "HeapArenas) is given the same kernel answers under the rule that describes that runtime.")
DEMO_FOOT = (
    "The old toolchains' programs are 386 builds: on amd64, Go 1.8 to 1.10 map their heap without a reservation, so "
    "there is none to move. 'rewritten' counts the program's calls the adversary really changed: a survivor whose "
    "reservations were never moved would prove nothing.")


def demo(*, runs: int, as_json: bool, width: int, progress: Callable[[str], None]) -> tuple[int, str]:
    """Each runtime of ``realdemo.RUNTIMES`` that can run here, ``runs`` times; exit 1 unless every run reproduced."""
    rows = _traced(lambda: realdemo.demo(runs, progress))
    ran = [r for r in rows if r.attempts]
    if not ran:
        why = "; ".join(sorted({r.missing for r in rows if r.missing}))
        raise Refused(f"no Go program could run: {why}")
    code = EXIT_OK if all(r.reproduced == len(r.attempts) for r in ran) else EXIT_FAILED
    if as_json:
        return code, json.dumps({"command": "demo", "real": True, "runs": runs, "rows": [_row_json(r) for r in rows],
                                 "exit": code}) + "\n"
    missing = sorted({r.missing for r in rows if r.missing and "go-toolchains" in r.missing})
    lines = [realtext.wrap(DEMO_HEAD, width), "", realtext.demo_table(rows, width), "",
             realtext.demo_details(rows, width), "", realtext.wrap(DEMO_FOOT, width)]
    if missing:
        lines += ["", realtext.wrap("Old Go toolchains not built here: " + missing[0] + " (README, 'Real programs').", width)]
    total = sum(len(r.attempts) for r in ran)
    good = sum(r.reproduced for r in ran)
    lines += ["", f"reproduced: {good} of {plural(total, 'run')}" + ("" if code == EXIT_OK else " - see above")]
    return code, "\n".join(lines) + "\n"


def _row_json(row: realdemo.Row) -> dict[str, Any]:
    rt = row.runtime
    return {"runtime": rt.name, "toolchain": rt.toolchain, "version": row.version, "arch": rt.arch,
            "adversary": rt.adversary, "rule": rt.rule, "expect": rt.expect, "missing": row.missing,
            "program": None if row.program is None else os.fspath(row.program), "reproduced": row.reproduced,
            "runs": [{"reproduced": a.reproduced, "why": a.why, "program": _program_json(a.outcome, output=False),
                      **_calls_json(a.outcome), "model": _beside_json(a.beside)} for a in row.attempts]}
