"""Text for real programs' runs: the calls that matter, the verdict, the model beside the run, the demo's table."""
from __future__ import annotations

import errno
import textwrap

from ..harness.goheap import LINEAR, GoHeap
from ..harness.real import Beside
from ..harness.realdemo import Row
from ..tracer import Outcome, Record
from ..tracer.calls import MAP_FIXED, PROT_NONE
from ..words import MiB, plural, size_text
from .report import columns, width_of

# Without --all-calls, at most this many rows of calls that matter; the rest are counted.
MAX_ROWS = 60
# A reservation worth a row: PROT_NONE address space of at least this much.
RESERVATION = 1 * MiB
# Runs of at least this many reservations, each at the previous one's end, are one row.
FOLD = 3
_PROT = {0: "none", 1: "r", 3: "rw", 5: "rx", 7: "rwx"}
# Characters the note needs beside the other columns; with less it goes on a line of its own.
_NOTE_ROOM = 24


def _hex(x: int | None) -> str:
    return "-" if x is None else f"{x:#x}"


def heap_notes(heap: GoHeap | None) -> dict[int, str]:
    """What each of the Go heap's calls was, by call index (and the munmaps that gave one back)."""
    notes: dict[int, str] = {}
    if heap is None:
        return notes
    for r in heap.reservations:
        if r.role == "first":
            text = "Go: first reservation (heap metadata and arena)"
        elif r.role == "growth":
            text = "Go: growth, hinted at the heap's end" + (" - answered BELOW the heap's end" if r.below else "")
        elif r.role == "fallback":
            text = "Go: fallback mapping for the heap"
        elif r.role == "metadata":
            text = "Go: heap-arena metadata"
        elif r.role == "prereserved":
            text = "Go: heap pre-reservation"
        elif r.role == "hint":
            text = "Go: heap arena" + ("" if r.at_hint else ", not at its hint")
        else:
            text = "Go: aligned heap arena (no hint left)"
        if r.released_at is not None:
            text += f"; given back at #{r.released_at}"
            notes[r.released_at] = f"gives back #{r.index}"
        notes[r.index] = text
    return notes


def _matters(r: Record, notes: dict[int, str]) -> bool:
    c = r.call
    failed = r.answer is None or r.answer < 0
    reservation = c.adjustable and c.prot == PROT_NONE and c.size >= RESERVATION
    return r.rewritten or failed or reservation or c.index in notes


def _decision(r: Record) -> str:
    if r.decision == "move":
        return f"moved to {_hex(r.moved_to)}"
    if r.decision == "fail":
        return "failed (ENOMEM)"
    return "kept" if r.call.adjustable else ""


def _answer(r: Record) -> str:
    if r.answer is None:
        return "none (thread ended)"
    if r.answer < 0:
        return errno.errorcode.get(-r.answer, str(-r.answer))
    return "0" if r.call.syscall == "munmap" else _hex(r.answer)


def _row(r: Record, note: str) -> list[str]:
    c = r.call
    call = c.syscall + (" FIXED" if c.syscall.startswith("mmap") and c.flags & MAP_FIXED else "")
    prot = _PROT.get(c.prot, f"{c.prot:#x}") if c.syscall.startswith(("mmap", "old")) else ""
    hint = "none" if c.syscall.startswith(("mmap", "old")) and not c.hint else _hex(c.hint)
    return [str(c.index), call, hint, size_text(c.size), prot, _decision(r), _answer(r), note]


def _foldable(prev: Record, r: Record) -> bool:
    """``r`` continues a run: kept, at its hint, the same shape, hinted at ``prev``'s end."""
    a, b = prev.call, r.call
    return (not r.rewritten and r.answer == b.hint and prev.answer == a.hint and b.hint == a.hint + a.size
            and (a.syscall, a.size, a.prot, a.flags) == (b.syscall, b.size, b.prot, b.flags))


def _rows(chosen: list[Record], notes: dict[int, str]) -> list[list[str]]:
    rows: list[list[str]] = []
    i = 0
    while i < len(chosen):
        j = i + 1
        while j < len(chosen) and _foldable(chosen[j - 1], chosen[j]):
            j += 1
        if j - i >= FOLD:
            first, last = chosen[i], chosen[j - 1]
            row = _row(first, "")
            row[0] = f"{first.call.index}-{last.call.index}"
            row[1] = f"{j - i} x {row[1]}"
            row[2] = f"{first.call.hint:#x}.."
            row[6] = f"{first.answer:#x}..{last.call.hint + last.call.size:#x}"
            note = notes.get(first.call.index, "")
            row[7] = (note + "; " if note else "") + "each hinted at the previous end, placed there"
            rows.append(row)
            i = j
        else:
            rows.append(_row(chosen[i], notes.get(chosen[i].call.index, "")))
            i += 1
    return rows


def _rest(rest: list[Record]) -> str:
    """The calls not shown, counted by kind, most first."""
    kinds: dict[str, int] = {}
    for r in rest:
        c = r.call
        if c.syscall.startswith(("mmap", "old")):
            kind = "MAP_FIXED mmap" if c.flags & MAP_FIXED else "other mmap"
        else:
            kind = c.syscall
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(plural(n, kind) for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))


def calls_table(outcome: Outcome, heap: GoHeap | None, width: int, every: bool = False) -> str:
    """The calls that matter (reservations, anything rewritten or failed, Go's heap calls), runs folded, at most
    ``MAX_ROWS`` rows; the rest counted in a line. ``every``: every call, one row each."""
    notes = heap_notes(heap)
    chosen = outcome.calls if every else [r for r in outcome.calls if _matters(r, notes)]
    rows = [_row(r, notes.get(r.call.index, "")) for r in chosen] if every else _rows(chosen, notes)
    cut = 0 if every or len(rows) <= MAX_ROWS else len(rows) - MAX_ROWS
    rows = rows[:len(rows) - cut]
    head = ["#", "call", "hint", "size", "prot", "decision", "answer", "what it is"]
    lines = [_fit([head, *rows], width)] if rows else ["(no call that matters)"]
    shown = {r.call.index for r in chosen}
    rest = [r for r in outcome.calls if r.call.index not in shown]
    if cut:
        lines.append(wrap(f"... and {plural(cut, 'more row')} of calls that matter (--all-calls shows every call)", width))
    if rest:
        lines.append(wrap(f"{plural(len(rest), 'other call')} not shown: {_rest(rest)} (--all-calls shows them)", width))
    if outcome.calls_dropped:
        lines.append(wrap(f"{plural(outcome.calls_dropped, 'call')} past the first {len(outcome.calls):,} counted, "
                          "not recorded", width))
    return "\n".join(lines)


def _fit(rows: list[list[str]], width: int) -> str:
    """``rows`` as columns; too wide, the last column (the note) wraps, or goes on a line of its own."""
    text = columns(rows)
    if width_of(text) <= width:
        return text
    room = width - width_of(columns([row[:-1] for row in rows])) - 2
    if room >= _NOTE_ROOM:
        return columns([row[:-1] + [textwrap.fill(row[-1], room, break_on_hyphens=False)] for row in rows])
    lines = columns([row[:-1] for row in rows]).splitlines()
    out = [lines[0]]
    for line, row in zip(lines[1:], rows[1:]):
        out.append(line)
        if row[-1]:
            out.append(textwrap.fill(row[-1], width, initial_indent="     ", subsequent_indent="     ",
                                     break_on_hyphens=False))
    return "\n".join(out)


def verdict(outcome: Outcome, width: int) -> str:
    """The run's end in a few lines: succeeded or FAILED, how, the fatal line, what was traced."""
    word = "FAILED" if outcome.failed else "succeeded"
    how = outcome.ended() + (" (timed out)" if outcome.timed_out else "")
    lines = [f"verdict: {word} under adversary {outcome.adversary}: {how} after {outcome.wall_time:.2f} s"]
    if outcome.stopped and not outcome.timed_out:
        lines.append(f"  stopped by the tracer: {outcome.stopped}")
    if outcome.fatal:
        lines.append(f"  {outcome.fatal}")
    n = len(outcome.calls) + outcome.calls_dropped
    extra = f"; {plural(outcome.leftovers, 'process')} still running at the end, killed" if outcome.leftovers else ""
    lines.append(f"  {plural(n, 'call')} traced, {outcome.rewritten:,} rewritten; "
                 f"{plural(outcome.processes, 'process', 'processes')}{extra}")
    lines += [f"  adversary: {note}" for note in outcome.notes]
    return "\n".join(wrap(line, width, "  ").removeprefix("  ") if line.startswith("  ") else wrap(line, width)
                     for line in lines)


def beside_text(b: Beside, width: int) -> str:
    """The model's verdict per rule beside what the program did."""
    lines = [wrap(f"the model, given the same kernel answers: {b.heap.describe()}", width),
             wrap(f"the program: {b.real_words}", width, "  ")]
    rows = [["rule", "the model", "as the program did"]]
    rows += [[r.rule, r.words, "yes" if r.agrees else "no"] for r in b.runs]
    text = columns(rows)
    if width_of(text) > width:
        room = max(width - max(len(r[0]) for r in rows) - len(rows[0][2]) - 8, 30)
        text = columns([[r[0], textwrap.fill(r[1], room, break_on_hyphens=False), r[2]] for r in rows])
    lines += ["  " + line for line in text.splitlines()] if b.runs else []
    lines += [wrap(f"note: {n}", width, "  ") for n in b.notes]
    return "\n".join(lines)


def wrap(text: str, width: int, indent: str = "") -> str:
    """``text`` filled to ``width``, each line after the first indented two more than ``indent``."""
    return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)


# -- demo --real -------------------------------------------------------------------


def _real_short(row: Row) -> str:
    a = row.attempts[-1]
    o = a.outcome
    if o.failed:
        return "died: " + (o.fatal.removeprefix("fatal error: ") if o.fatal else o.ended())
    if a.beside is None:
        return "survived"
    real = a.beside.real
    if real == "released":
        what = ("released its low region" if a.beside.heap.design == LINEAR
                else f"released {plural(sum(not t.at_hint for t in a.beside.heap.role('hint')), 'misplaced heap arena')}")
        return "survived; " + what
    if real == "cursor":
        return "survived; allocated in its low region"
    return "survived"


_MODEL_SHORT = {"lowered": "arena_used lowered", "cursor": "allocates in it; arena_used kept",
                "contiguous": "every growth kept", "at hints": "every arena at its hint", "threw": "throws"}


def _model_short(row: Row) -> str:
    a = row.attempts[-1]
    run = a.beside.run(row.runtime.rule) if a.beside else None
    if run is None:
        return f"{row.runtime.rule}: not run"
    short = _MODEL_SHORT.get(run.verdict) or ("region released" if run.rule != "go1.11" else "misplaced arenas released")
    lost = f", {plural(len(run.outcome.lost), 'allocation')} lost" if run.outcome.lost else ""
    return f"{run.rule}: {short}{lost}"


def demo_table(rows: list[Row], width: int) -> str:
    """The demo's table, a row per runtime, the two verdicts wrapped to fit ``width``; where even that is too
    wide, a block per runtime."""
    head = ["runtime", "program", "the program, its calls rewritten", "the model, same answers", "reproduced"]
    cells = []
    for row in rows:
        rt = row.runtime
        name = rt.name + (f"\n  {row.version}" if row.version else "")
        program = f"{rt.arch}\n{rt.adversary}"
        if row.missing:
            cells.append([name, program, "not run: " + row.missing, "-", "-"])
            continue
        o = row.attempts[-1].outcome
        rewritten = f"{o.rewritten:,} of {plural(len(o.calls) + o.calls_dropped, 'call')} rewritten; "
        cells.append([name, program, rewritten + _real_short(row), _model_short(row), f"{row.reproduced} of {len(row.attempts)}"])
    fixed = width_of(columns([[r[0], r[1], r[4]] for r in [head, *cells]]))
    room = (width - fixed - 4) // 2
    if room >= 20:
        wrapped = [r[:2] + [textwrap.fill(r[2], room, break_on_hyphens=False),
                            textwrap.fill(r[3], room, break_on_hyphens=False), r[4]] for r in cells]
        text = columns([[*head[:2], textwrap.fill(head[2], room), textwrap.fill(head[3], room), head[4]], *wrapped])
        if width_of(text) <= width:
            return text
    blocks = []
    for row, c in zip(rows, cells):
        name = c[0].replace("\n  ", " (") + (")" if row.version else "")
        lines = [wrap(f"{name}, {c[1].replace(chr(10), ', adversary ')}: " +
                      (c[2] if row.missing else f"reproduced {c[4]}"), width)]
        if not row.missing:
            lines += [wrap(f"the program: {c[2]}", width, "  "), wrap(f"the model: {c[3]}", width, "  ")]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def demo_details(rows: list[Row], width: int) -> str:
    """Per runtime that ran: what the program did and what the model said, in full; every run that did not reproduce."""
    lines = []
    for row in rows:
        if not row.attempts:
            continue
        a = row.attempts[-1]
        rt = row.runtime
        lines.append(wrap(f"{rt.name} ({rt.arch}, {rt.adversary}): {a.outcome.describe()}", width))
        if a.beside is not None:
            lines.append(wrap(f"the program: {a.beside.real_words}", width, "  "))
            run = a.beside.run(rt.rule)
            if run is not None:
                lines.append(wrap(f"the model ({rt.rule}): {run.words}", width, "  "))
        for k, failed in enumerate(row.attempts, 1):
            if not failed.reproduced:
                lines.append(wrap(f"run {k} did not reproduce: {failed.why}", width, "  "))
    return "\n".join(lines)
