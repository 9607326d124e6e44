"""Replayable traces: the kernel's answers to an arena's reservations, saved as JSON.

A bug seen once becomes a file anyone can replay, against any rule and layout.
Format version 2 (also in docs/trace-format.md)::

    {
      "format": "arena-trace",          # required, exactly this
      "version": 2,                     # required; 1 is read too
      "layout": "32" | "64" | {...},    # LAYOUT_32, LAYOUT_64, or Layout's fields (address_bits required;
                                        #   max_mem: the "32" or "64" layout's; the rest: Layout's defaults)
      "rule": "fixed" | "legacy" | "go1.9" | "strict" | "module:attr" | "go1.11",   # go1.11: HeapArenas (version 2 only)
      "start": ADDRESS | null,          # Arena(start=...): where the arena part begins
      "initial_size": SIZE | null,      # Arena(initial_size=...)
      "requests": [SIZE, ...],          # sys_alloc(n), in order
      "answers": [ANSWER, ...],         # the kernel's answer to each reserve call, in order
      "recorded": [{"step", "verdict", "returned"}, ...]   # optional: the run it was saved from
    }

ADDRESS and SIZE are integers or hex strings ("0x10000000"). An ANSWER is an
address (really mapped exactly there on replay), ``null`` (ask the kernel with
the arena's hint) or ``"no-room"``. Reservations past the last answer ask the
kernel. ``recorded`` is informative: a replay under the same rule and layout
says whether it made the same decisions. Unknown fields are errors, so a typo
never passes silently. Version 2 adds the rule "go1.11" and is written only
for ``HeapArenas``: a linear arena's trace is still version 1, which every
reader since the first reads.

The limits bound a replay's work, not only the file's size: at most
``MAX_STEPS`` requests and as many answers, ``MAX_HINTS`` first hints and
first sizes in the layout, ``MAX_EVENTS`` recorded decisions, an index of at
most ``2**MAX_L1_BITS`` first-level entries, and, under ``go1.11``, at most
``MAX_HEAP_ARENAS`` heap arenas registered, in a file of at most
``MAX_BYTES``. The largest trace they accept replays in seconds
(docs/trace-format.md).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal

from .. import jsontext, sysmem
from ..managers import NAMES, RELEASE, Arena, HeapArenas, ReservationFailed, open_manager

# The format's names and limits, and record and save (arena.trace's writing half): this module's too,
# re-exported (each "X as X" says so to a type checker).
from ..managers.record import FORMAT as FORMAT
from ..managers.record import LAYOUTS as LAYOUTS
from ..managers.record import MAX_EVENTS as MAX_EVENTS
from ..managers.record import MAX_HEAP_ARENAS as MAX_HEAP_ARENAS
from ..managers.record import MAX_HINTS as MAX_HINTS
from ..managers.record import MAX_STEPS as MAX_STEPS
from ..managers.record import VERSION as VERSION
from ..managers.record import record as record
from ..managers.record import save as save
from ..policy import rules
from ..policy.layout import L1_BITS_MAX, Layout
from ..policy.rules import RULES
from ..spaces import NO_ROOM, Answer, ScriptedMemory
from ..words import plural, size_text
from .run import Replay, drive

# The rules each version knows: version 2 added Go 1.11's heap arenas.
VERSION_RULES = {1: RULES, 2: NAMES}
# Room for MAX_STEPS requests and answers with every decision recorded.
MAX_BYTES = 16 << 20
# Go 1.11's index has 2**arena_l1_bits first-level entries, made up front: Layout
# itself bounds them (arena.policy.layout.validate), for a trace's layout as for any.
MAX_L1_BITS = L1_BITS_MAX
# Where a message sends a reader for the limits: this module's own documentation, installed with it
# (docs/trace-format.md is in the source distribution only).
DOC = "python3 -m pydoc arena.harness.trace"
_FIELDS = ("format", "version", "layout", "rule", "start", "initial_size", "requests", "answers", "recorded")
_REQUIRED = ("format", "version", "layout", "rule", "requests", "answers")


class TraceError(ValueError):
    """The trace is malformed; the message starts with the field's path."""

    @classmethod
    def of(cls, field: str, exc: Exception, *names: str) -> TraceError:
        """``exc`` as the error of ``field``, without repeating the field (or ``names``) it starts with."""
        text = str(exc)
        for name in (field, *names):
            if text.startswith((name + " ", name + ":")):
                text = text[len(name):].lstrip(": ")
                break
        return cls(f"{field}: {text}")


class ReplayError(RuntimeError):
    """A well-formed trace that cannot be replayed here (an address is taken, say)."""


@dataclasses.dataclass
class Trace:
    layout: Layout
    rule: str
    start: int | None
    initial_size: int | None
    requests: list[int]
    answers: list[int | None | Literal["no-room"]]
    recorded: list[dict[str, Any]] | None = None


# -- reading -------------------------------------------------------------------


def _number(path: str, value: object) -> int:
    """An integer or a hex string such as "0x10000000"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.lower().startswith("0x") else int(value)
        except ValueError:
            pass
    raise TraceError(f"{path}: expected an integer or a hex string, got {json.dumps(value)}")


def _layout(value: object) -> Layout:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) in LAYOUTS:
        return LAYOUTS[str(value)]
    if not isinstance(value, dict):
        raise TraceError(f'layout: expected "32", "64" or an object of Layout fields, got {json.dumps(value)}')
    fields = {f.name: f for f in dataclasses.fields(Layout)}
    # Any: what each field must be, Layout checks when made (validate), naming the field.
    kwargs: dict[str, Any] = {"name": "custom"}
    for key, item in value.items():
        if key not in fields:
            raise TraceError(f"layout.{key}: not a Layout field (one of {', '.join(fields)})")
        if fields[key].type.startswith("tuple"):
            if not isinstance(item, list):
                raise TraceError(f"layout.{key}: expected a list, got {json.dumps(item)}")
            if len(item) > MAX_HINTS:
                # Each is a reservation tried in turn: their number is the replay's work.
                raise TraceError(f"layout.{key}: {len(item):,} entries, more than the {MAX_HINTS:,} a trace's layout "
                                 f"may hold (Go has 128 first hints and 4 first sizes; {DOC})")
            item = tuple(_number(f"layout.{key}[{i}]", v) for i, v in enumerate(item))
        elif fields[key].type in ("int", "int | None") and item is not None:
            item = _number(f"layout.{key}", item)
        kwargs[key] = item
    if "address_bits" not in kwargs:
        raise TraceError("layout.address_bits: missing")
    width = LAYOUTS.get(str(kwargs["address_bits"])) if type(kwargs["address_bits"]) is int else None
    if width is not None:
        # The one field Layout has no default for: the "32" or "64" layout's (the whole space, or Go's 512 GiB).
        kwargs.setdefault("max_mem", width.max_mem)
    try:
        layout = Layout(**kwargs)
    except (TypeError, ValueError) as exc:
        # Layout names the field as "Layout.max_mem": the trace's path is "layout.max_mem".
        field, _, rest = str(exc).partition(" ")
        if field.startswith("Layout.") and field[7:] in fields:
            raise TraceError(f"layout.{field[7:]}: {rest}") from None
        raise TraceError(f"layout: {exc}") from None
    return layout


def _answer(path: str, value: object) -> int | None | Literal["no-room"]:
    if value is None:
        return None
    if value == "no-room":
        return "no-room"
    try:
        return _number(path, value)
    except TraceError:
        raise TraceError(f'{path}: expected an address, null or "no-room", got {json.dumps(value)}') from None


def _list(path: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise TraceError(f"{path}: expected a list, got {json.dumps(value)}")
    return value


def parse(data: object) -> Trace:
    """Check a decoded trace; ``TraceError`` names the first bad field."""
    if not isinstance(data, dict):
        raise TraceError(f"(top level): expected an object, got {type(data).__name__}")
    for key in data:
        if key not in _FIELDS:
            raise TraceError(f"{key}: unknown field (version {VERSION} has {', '.join(_FIELDS)})")
    for key in _REQUIRED:
        if key not in data:
            raise TraceError(f"{key}: missing")
    if data["format"] != FORMAT:
        raise TraceError(f'format: expected "{FORMAT}", got {json.dumps(data["format"])}')
    version = data["version"]
    if isinstance(version, str) and version.strip().isdigit() and int(version) in VERSION_RULES:
        raise TraceError(f"version: must be the integer {int(version)}, got the string {json.dumps(version)}")
    if isinstance(version, bool) or not isinstance(version, int) or version not in VERSION_RULES:
        raise TraceError(f"version: this reader knows versions 1 and {VERSION}, got {json.dumps(version)}")
    rule, names = data["rule"], VERSION_RULES[version]
    if not isinstance(rule, str) or rule not in names and not all(rule.partition(":")[::2]):
        raise TraceError(f"rule: expected one of {', '.join(names)} or module:attr of a rule, "
                         f"got {json.dumps(rule)} (version {version})")
    for key in ("requests", "answers"):
        steps = _list(key, data[key])
        if len(steps) > MAX_STEPS:
            raise TraceError(f"{key}: {len(steps):,} {key}, more than the {MAX_STEPS:,} a trace may hold "
                             f"({DOC}): split the trace, or replay its first part")
    requests = [_number(f"requests[{i}]", n) for i, n in enumerate(data["requests"])]
    for i, n in enumerate(requests):
        if n <= 0:
            raise TraceError(f"requests[{i}]: expected a positive size, got {n}")
    optional = {k: None if data.get(k) is None else _number(k, data[k]) for k in ("start", "initial_size")}
    recorded = data.get("recorded")
    if recorded is not None:
        if len(_list("recorded", recorded)) > MAX_EVENTS:
            raise TraceError(f"recorded: {len(recorded):,} decisions, more than the {MAX_EVENTS:,} a run within "
                             f"the trace's limits makes ({DOC})")
        for i, e in enumerate(_list("recorded", recorded)):
            if not isinstance(e, dict) or not {"step", "verdict"} <= e.keys():
                raise TraceError(f'recorded[{i}]: expected an object with "step" and "verdict", got {json.dumps(e)}')
    return Trace(
        layout=_layout(data["layout"]),
        rule=data["rule"],
        requests=requests,
        answers=[_answer(f"answers[{i}]", a) for i, a in enumerate(_list("answers", data["answers"]))],
        recorded=recorded,
        **optional,
    )


def load(path: str | os.PathLike[str]) -> Trace:
    """Read and check a trace file; ``TraceError`` for a file that is too large, not UTF-8 JSON, or has a bad
    field; ``OSError`` if it cannot be read."""
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise TraceError(f"(file): larger than {MAX_BYTES >> 20} MiB, more than any trace of at most "
                         f"{MAX_STEPS:,} requests needs ({DOC})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(f"(file): not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}): "
                         "a trace is JSON in UTF-8, as arena writes it") from None
    try:
        data = jsontext.loads(text)
    except jsontext.NumberTooLong as exc:
        raise TraceError(str(exc)) from None  # it starts with the field's path
    except json.JSONDecodeError as exc:
        raise TraceError(f"(file): not JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        # Arrays nested thousands deep: valid JSON, not a trace.
        raise TraceError(f"(file): not a trace: {exc}") from None
    return parse(data)


# -- replaying -----------------------------------------------------------------


def _scripted(inner: sysmem.Memory, answers: list[Answer]) -> ScriptedMemory:
    """The memory layer that answers ``answers``; ``TraceError`` naming the first it refuses."""
    try:
        return ScriptedMemory(inner, answers)
    except (TypeError, ValueError):
        # Only now a layer per answer, for the index: as many layers cost as much as a long trace's replay.
        for i, answer in enumerate(answers):
            try:
                ScriptedMemory(inner, [answer])
            except (TypeError, ValueError) as exc:
                raise TraceError.of(f"answers[{i}]", exc, "scripted answer", "a scripted answer") from None
        raise


def replay(trace: Trace, rule: str | None = None, layout: Layout | None = None) -> Replay:
    """Run ``trace`` with real memory, under its own or the given rule (``"go1.11"``: ``HeapArenas``) and
    layout; the caller closes the arena."""
    name = rule or trace.rule
    layout = layout or trace.layout
    resolved: str | rules.Parts = name
    if name != RELEASE:
        try:
            # A user's rule is loaded here, where the replay needs it (its module must be importable),
            # and read once (RuleFailed if reading it raises).
            resolved = rules.read(name)
        except (TypeError, ValueError) as exc:
            raise TraceError(str(exc)) from None  # it starts with "rule", the field
    span = "max_alloc" if name == RELEASE else "max_mem"
    for i, n in enumerate(trace.requests):
        if n > getattr(layout, span):
            raise TraceError(f"requests[{i}]: {n:#x} is too large: more than {span} {getattr(layout, span):#x} "
                             f"of the {layout.name} layout")
        if n % layout.page_size:
            raise TraceError(f"requests[{i}]: {n:#x} is not a multiple of the arena page {layout.page_size:#x}")
    if name == RELEASE:
        _check_heap_arenas(trace.requests, layout)
    try:
        inner = sysmem.default(address_bits=layout.address_bits)
    except ValueError as exc:
        raise ReplayError(f"cannot replay a {layout.name} layout here: {exc}") from None
    memory = _scripted(inner, [NO_ROOM if a == "no-room" else a for a in trace.answers])
    initial_size = trace.initial_size
    if name == RELEASE and layout.first_hints:
        # 64-bit heap arenas have no first reservation to size (a linear arena's trace has one).
        initial_size = None
    try:
        arena = open_manager(resolved, layout, memory=memory, start=trace.start, initial_size=initial_size)
    except (TypeError, ValueError) as exc:
        field = "start" if str(exc).startswith("start") else "initial_size" if "initial_size" in str(exc) else "layout"
        raise TraceError.of(field, exc) from None
    except (RuntimeError, ReservationFailed) as exc:
        raise ReplayError(f"cannot replay the first reservation here: {exc}") from None
    try:
        return drive(arena, trace.requests)
    except RuntimeError as exc:
        # drive closed the arena: a scripted address was taken by something else.
        raise ReplayError(f"cannot replay here: {exc}") from None


def _check_heap_arenas(requests: list[int], layout: Layout) -> None:
    """``TraceError`` if replaying ``requests`` under ``go1.11`` could register more than ``MAX_HEAP_ARENAS``:
    each request is rounded up to whole heap arenas, plus one where an aligned reservation is kept whole."""
    size, total = layout.heap_arena_size or layout.page_size, 0  # never None: Layout fills it in
    for i, n in enumerate(requests):
        total += -(-n // size) + 1
        if total > MAX_HEAP_ARENAS:
            # Registering a heap arena is an index entry and checks: the count is the replay's time and memory.
            raise TraceError(f"requests[{i}]: up to here the requests need {total:,} heap arenas of "
                             f"{size_text(size)}, more than the {MAX_HEAP_ARENAS:,} a replay under go1.11 may "
                             f"register ({DOC}): split the trace, or replay it under another rule")


def divergence(trace: Trace, arena: Arena | HeapArenas) -> str | None:
    """How the replay's decisions differ from the recorded run, or ``None`` if they agree."""
    if trace.recorded is None:
        return None
    replayed = [{"step": e.step, "verdict": e.verdict} for e in arena.events]
    recorded = [{"step": e["step"], "verdict": e["verdict"]} for e in trace.recorded]
    for i, (want, got) in enumerate(zip(recorded, replayed)):
        if want != got:
            return f"event {i}: recorded {want['step']} {want['verdict']}, replayed {got['step']} {got['verdict']}"
    if len(recorded) != len(replayed):
        return f"recorded {plural(len(recorded), 'event')}, replayed {len(replayed)}"
    return None
