"""Process traces: a real program's traced run (an ``Outcome``) saved as JSON, and loaded back with every field checked.

The kind ``"program"`` of the arena trace format (docs/trace-format.md,
"A real program's run")::

    {
      "format": "arena-trace", "kind": "program", "version": 1,
      "argv": ["./prog", "arg"],
      "executable": {"path": "/abs/prog", "sha256": "<64 hex digits>", "bits": 64},
      "adversary": "displace,by=12K",
      "outcome": {"exit_status": 0, "signal": null, "timed_out": false, "stopped": null,
                  "fatal": null, "wall_time": 0.12, "processes": 1, "leftovers": 0},
      "calls": [{"index": 0, "nth": 0, "tid": 7, "pid": 7, "syscall": "mmap", "bits": 64,
                 "hint": "0xc000000000", "size": "0x4000000", "prot": 0, "flags": "0x22",
                 "decision": "move", "moved_to": "0xc000003000", "answer": "0xc000003000"}, ...],
      "calls_dropped": 0,
      "notes": []
    }

Numbers are JSON integers or hex strings. In a call, ``prot`` (0),
``flags`` (0), ``fd`` (-1), ``offset`` (0), ``old_size`` (0) and
``decision`` ("keep") may be left out; ``moved_to`` is present exactly
for a move; ``answer`` is an address, ``-errno`` (a JSON integer) or null.
Unknown fields are errors. At most ``MAX_CALLS`` calls and ``MAX_BYTES``.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from .. import jsontext
from .calls import SYSCALLS, Call, Record
from .outcome import Outcome

FORMAT = "arena-trace"
KIND = "program"
VERSION = 1
# The bounds of a run (what run() keeps) and so of a record. A run records its
# first MAX_CALLS calls and counts the rest; a Go program makes a few hundred.
MAX_CALLS = 100_000
MAX_ARGS = 4096
MAX_ARGV_BYTES = 2 << 20
# An adversary's notes past this are only counted.
MAX_NOTES = 100
# Room for MAX_CALLS calls of ~300 bytes each, with every optional field written.
MAX_BYTES = 64 << 20
MAX_TEXT = 4096
_PID_MAX = 1 << 22
_FIELDS = ("format", "kind", "version", "argv", "executable", "adversary", "outcome", "calls", "calls_dropped", "notes")
_OUTCOME = ("exit_status", "signal", "timed_out", "stopped", "fatal", "wall_time", "processes", "leftovers")
_CALL = ("index", "nth", "tid", "pid", "syscall", "bits", "hint", "size", "prot", "flags", "fd", "offset",
         "old_size", "decision", "moved_to", "answer")
_DEFAULTS = {"prot": 0, "flags": 0, "fd": -1, "offset": 0, "old_size": 0, "decision": "keep"}


class TraceFileError(ValueError):
    """A process trace that is malformed or too large; the message starts with the field's path."""


# -- writing -------------------------------------------------------------------


def dump(outcome: Outcome) -> dict[str, Any]:
    """``outcome`` as the JSON data of a process trace (its captured output is not kept)."""
    return {
        "format": FORMAT, "kind": KIND, "version": VERSION,
        "argv": list(outcome.argv),
        "executable": {"path": outcome.executable, "sha256": outcome.sha256, "bits": outcome.bits},
        "adversary": outcome.adversary,
        "outcome": {"exit_status": outcome.exit_status, "signal": outcome.signal, "timed_out": outcome.timed_out,
                    "stopped": outcome.stopped, "fatal": outcome.fatal, "wall_time": round(outcome.wall_time, 6),
                    "processes": outcome.processes, "leftovers": outcome.leftovers},
        "calls": [_call(r) for r in outcome.calls],
        "calls_dropped": outcome.calls_dropped,
        "notes": list(outcome.notes),
    }


def _call(r: Record) -> dict[str, Any]:
    c = r.call
    out: dict[str, Any] = {"index": c.index, "nth": c.nth, "tid": c.tid, "pid": c.pid, "syscall": c.syscall,
                           "bits": c.bits, "hint": hex(c.hint), "size": hex(c.size)}
    # Fields at their default are left out; sizes and flags are written in hex.
    for key, value in (("prot", c.prot), ("flags", c.flags), ("fd", c.fd), ("offset", c.offset), ("old_size", c.old_size)):
        if value != _DEFAULTS[key]:
            out[key] = value if key in ("prot", "fd") else hex(value)
    if r.decision != "keep":
        out["decision"] = r.decision
    if r.moved_to is not None:
        out["moved_to"] = hex(r.moved_to)
    out["answer"] = None if r.answer is None else r.answer if r.answer < 0 else hex(r.answer)
    return out


def save(outcome: Outcome, path: str | os.PathLike[str]) -> None:
    """Write ``outcome`` to ``path`` as a process trace. ``OSError`` if it cannot be written."""
    text = json.dumps(dump(outcome), indent=1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


# -- reading -------------------------------------------------------------------


def load(path: str | os.PathLike[str]) -> Outcome:
    """The run saved at ``path``. ``OSError`` if unreadable; ``TraceFileError`` if larger than ``MAX_BYTES``,
    not UTF-8 JSON, or not a valid process trace (the message names the field)."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise TraceFileError(f"{os.fspath(path)}: larger than {MAX_BYTES >> 20} MiB, the most a process trace may be")
    try:
        decoded = jsontext.loads(data.decode("utf-8"))
    except jsontext.NumberTooLong as exc:
        raise TraceFileError(str(exc)) from None  # it starts with the field's path
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceFileError(f"{os.fspath(path)}: not UTF-8 JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:
        # Arrays nested thousands deep: valid JSON, not a trace.
        raise TraceFileError(f"{os.fspath(path)}: not a process trace: {exc}") from None
    return parse(decoded)


def parse(data: object) -> Outcome:
    """Check decoded JSON and make the ``Outcome`` it records; ``TraceFileError`` names the first bad field."""
    top = _object("(top level)", data, _FIELDS, required=_FIELDS[:8])
    if top["format"] != FORMAT:
        raise TraceFileError(f'format: expected "{FORMAT}", got {json.dumps(top["format"])}')
    if top["kind"] != KIND:
        raise TraceFileError(f'kind: expected "{KIND}" (a real program\'s run), got {json.dumps(top["kind"])}')
    version = top["version"]
    if isinstance(version, bool) or version != VERSION:
        raise TraceFileError(f"version: this reader knows version {VERSION}, got {json.dumps(version)}")
    argv = _list("argv", top["argv"], MAX_ARGS)
    if not argv:
        raise TraceFileError("argv: empty; a run has at least the program's name")
    for i, a in enumerate(argv):
        _text(f"argv[{i}]", a, limit=MAX_ARGV_BYTES)
    if sum(len(a) + 1 for a in argv) > MAX_ARGV_BYTES:
        raise TraceFileError(f"argv: longer than {MAX_ARGV_BYTES >> 20} MiB in all")
    exe = _object("executable", top["executable"], ("path", "sha256", "bits"), required=("path", "sha256", "bits"))
    path = _text("executable.path", exe["path"])
    sha = _text("executable.sha256", exe["sha256"])
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise TraceFileError(f"executable.sha256: expected 64 lowercase hex digits, got {json.dumps(sha)}")
    bits = _bits("executable.bits", exe["bits"])
    adversary = _text("adversary", top["adversary"])
    o = _object("outcome", top["outcome"], _OUTCOME, required=_OUTCOME)
    status = _optional_int("outcome.exit_status", o["exit_status"], 0, 255)
    sig = _optional_int("outcome.signal", o["signal"], 1, 64)
    if (status is None) == (sig is None):
        raise TraceFileError("outcome: exactly one of exit_status and signal is set (how the program ended)")
    if not isinstance(o["timed_out"], bool):
        raise TraceFileError(f"outcome.timed_out: expected true or false, got {json.dumps(o['timed_out'])}")
    wall = o["wall_time"]
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall) or wall < 0:
        raise TraceFileError(f"outcome.wall_time: expected seconds (a number >= 0), got {json.dumps(wall)}")
    processes = _int("outcome.processes", o["processes"], 1, _PID_MAX)
    calls = [_record(f"calls[{i}]", i, c) for i, c in enumerate(_list("calls", top["calls"], MAX_CALLS))]
    notes = [_text(f"notes[{i}]", n) for i, n in enumerate(_list("notes", top.get("notes", []), MAX_NOTES + 1))]
    return Outcome(
        argv=argv, executable=path, sha256=sha, bits=bits, adversary=adversary,
        exit_status=status, signal=sig, timed_out=o["timed_out"],
        stopped=_optional_text("outcome.stopped", o["stopped"]), wall_time=float(wall), processes=processes,
        leftovers=_int("outcome.leftovers", o["leftovers"], 0, processes), calls=calls,
        calls_dropped=_int("calls_dropped", top.get("calls_dropped", 0), 0, 1 << 40),
        fatal=_optional_text("outcome.fatal", o["fatal"]), notes=notes,
    )


def _record(path: str, position: int, value: object) -> Record:
    c = _object(path, value, _CALL, required=("index", "nth", "tid", "pid", "syscall", "bits", "hint", "size", "answer"))
    c = {**_DEFAULTS, **c}
    index = _int(f"{path}.index", c["index"], 0, 1 << 40)
    if index != position:
        raise TraceFileError(f"{path}.index: expected {position} (calls are saved in order), got {index}")
    syscall = c["syscall"]
    if syscall not in SYSCALLS:
        raise TraceFileError(f"{path}.syscall: expected one of {', '.join(SYSCALLS)}, got {json.dumps(syscall)}")
    bits = _bits(f"{path}.bits", c["bits"])
    top = (1 << bits) - 1
    call = Call(
        index=index, nth=_int(f"{path}.nth", c["nth"], 0, index), tid=_int(f"{path}.tid", c["tid"], 1, _PID_MAX),
        pid=_int(f"{path}.pid", c["pid"], 1, _PID_MAX), syscall=syscall, bits=bits,
        hint=_int(f"{path}.hint", c["hint"], 0, top), size=_int(f"{path}.size", c["size"], 0, top),
        prot=_int(f"{path}.prot", c["prot"], 0, 0xFFFFFFFF), flags=_int(f"{path}.flags", c["flags"], 0, 0xFFFFFFFF),
        fd=_int(f"{path}.fd", c["fd"], -1, 0x7FFFFFFF), offset=_int(f"{path}.offset", c["offset"], 0, (1 << 64) - 1),
        old_size=_int(f"{path}.old_size", c["old_size"], 0, top),
    )
    decision = c["decision"]
    if decision not in ("keep", "move", "fail"):
        raise TraceFileError(f'{path}.decision: expected "keep", "move" or "fail", got {json.dumps(decision)}')
    if decision != "keep" and not call.adjustable:
        raise TraceFileError(f"{path}.decision: a {syscall} call{' with MAP_FIXED' if syscall.startswith('mmap') else ''} "
                             f"is only observed, never {'moved' if decision == 'move' else 'failed'}")
    if (decision == "move") != ("moved_to" in c):
        raise TraceFileError(f"{path}.moved_to: present exactly when the decision is a move")
    moved_to = _int(f"{path}.moved_to", c["moved_to"], 0, top) if "moved_to" in c else None
    answer = None if c["answer"] is None else _int(f"{path}.answer", c["answer"], -4095, top)
    return Record(call, decision, moved_to, answer)


# -- fields --------------------------------------------------------------------


def _object(path: str, value: object, fields: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TraceFileError(f"{path}: expected an object, got {json.dumps(value)[:80]}")
    for key in value:
        if key not in fields:
            where = key if path == "(top level)" else f"{path}.{key}"
            raise TraceFileError(f"{where}: unknown field (expected {', '.join(fields)})")
    for key in required:
        if key not in value:
            raise TraceFileError(f"{key if path == '(top level)' else f'{path}.{key}'}: missing")
    return value


def _list(path: str, value: object, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise TraceFileError(f"{path}: expected a list, got {json.dumps(value)[:80]}")
    if len(value) > limit:
        raise TraceFileError(f"{path}: {len(value):,} items, more than the {limit:,} a process trace may hold")
    return value


def _text(path: str, value: object, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise TraceFileError(f"{path}: expected a string, got {json.dumps(value)[:80]}")
    if len(value) > limit:
        raise TraceFileError(f"{path}: longer than {limit:,} characters")
    return value


def _optional_text(path: str, value: object) -> str | None:
    return None if value is None else _text(path, value)


def _int(path: str, value: object, low: int, high: int) -> int:
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and re.fullmatch(r"-?(0[xX][0-9a-fA-F]+|[0-9]+)", value):
        n = int(value, 16) if "x" in value.lower() else int(value)
    if n is None:
        raise TraceFileError(f"{path}: expected an integer or a hex string, got {json.dumps(value)[:80]}")
    if not low <= n <= high:
        raise TraceFileError(f"{path}: {n:#x} is outside [{low:#x}, {high:#x}]")
    return n


def _optional_int(path: str, value: object, low: int, high: int) -> int | None:
    return None if value is None else _int(path, value, low, high)


def _bits(path: str, value: object) -> int:
    if value not in (32, 64) or isinstance(value, bool):
        raise TraceFileError(f"{path}: expected 32 or 64, got {json.dumps(value)}")
    return 32 if value == 32 else 64
