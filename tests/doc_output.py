"""What a doc shows a command printing, compared with what it prints: the time and rate, machine's own, left out."""
from __future__ import annotations

import re
from pathlib import Path

# "0.4 s, 360 scenarios/s" as a doc shows it: "... s, ... scenarios/s".
TIMING = re.compile(r"\d[\d.,]* s, [\d,]+ scenarios/s")


def shown(path: Path, command: str) -> list[str]:
    """The lines a doc shows after ``    $ COMMAND``, to the next ``$`` line or the end of the block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"    $ {command}") + 1
    out = []
    for line in lines[start:]:
        if line.startswith("    $") or (line and not line.startswith("    ")):
            break
        out.append(line[4:])
    while out and not out[-1]:
        out.pop()
    return out


def assert_shows(doc: list[str], output: str) -> None:
    """``output``, its timing made neutral, is what ``doc`` shows; a ``...`` line of ``doc`` stands for any lines."""
    real = TIMING.sub("... s, ... scenarios/s", output).rstrip("\n").split("\n")
    i, skipping = 0, False
    for line in doc:
        if line == "...":
            skipping = True
            continue
        if skipping:
            assert line in real[i:], f"{line!r} not in the output:\n{output}"
            i = real.index(line, i)
            skipping = False
        assert i < len(real) and real[i] == line, f"line {i}: {real[i] if i < len(real) else None!r} != {line!r}"
        i += 1
    assert skipping or i == len(real), f"the output goes on: {real[i:]}"
