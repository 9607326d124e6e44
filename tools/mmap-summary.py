#!/usr/bin/env python3
"""Summarise the mmap calls in `strace -f -e trace=mmap,mmap2,munmap -o FILE` output.

    tools/mmap-summary.py FILE...

Per file: how many calls of each kind (file mappings, which the dynamic
loader makes, apart; anonymous ones by MAP_FIXED, hinted or unhinted and by
protection), then every anonymous call that is not MAP_FIXED and maps at
least 1 MiB or is PROT_NONE, with its flags beyond MAP_PRIVATE|MAP_ANONYMOUS,
and every munmap, in order. A run of calls with one
protection, each hinted at the end of the one before and either of the same
size or all under 16 MiB, prints as one line.
"""
from __future__ import annotations

import collections
import re
import sys

CALL = re.compile(r"(?:\d+\s+)?(mmap2?|munmap)\((.*)\)\s+=\s+(\S+)")
# strace -f splits a call another thread interrupts: "PID call(args <unfinished ...>"
# then "PID <... call resumed>) = answer".
UNFINISHED = re.compile(r"(\d+)\s+(.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"(\d+)\s+<\.\.\. \w+ resumed>(.*)$")
MiB = 1 << 20


def mib(n: int) -> str:
    return f"{n / MiB:g} MiB" if n % 4096 == 0 else f"{n} B"


def summarise(path: str) -> None:
    kinds: collections.Counter[str] = collections.Counter()
    lines: list[str] = []
    run: list[tuple[int, int, int, str]] = []  # (hint, size, answer, protection and flags)

    def flush() -> None:
        if len(run) == 1:
            hint, size, got, prot = run[0]
            lines.append(f"  hint {hint:#x} {mib(size)} {prot} -> {got:#x}" if hint else
                         f"  no hint {mib(size)} {prot} -> {got:#x}")
        elif run:
            sizes = sorted({size for _, size, _, _ in run})
            each = mib(sizes[0]) if len(sizes) == 1 else f"{mib(sizes[0])} to {mib(sizes[-1])}"
            honoured = all(h == g for h, _, g, _ in run)
            lines.append(f"  {len(run)} x {each} {run[0][3]}, each hinted at the previous end, "
                         f"{run[0][0]:#x}..{run[-1][0] + run[-1][1]:#x}"
                         + (", all placed at their hint" if honoured else ""))
        run.clear()

    pending: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if u := UNFINISHED.match(line):
                pending[u.group(1)] = u.group(2)
                continue
            if r := RESUMED.match(line):
                line = pending.pop(r.group(1), "") + r.group(2)
            m = CALL.match(line)
            if not m or m.group(3) == "?":
                continue
            name, args, ret = m.groups()
            a = [x.strip() for x in args.split(",")]
            if name == "munmap":
                kinds["munmap"] += 1
                flush()
                lines.append(f"  munmap {a[0]} {mib(int(a[1]))}")
                continue
            hint = 0 if a[0] == "NULL" else int(a[0], 16)
            size, prot, flags = int(a[1]), a[2], a[3]
            if "MAP_ANONYMOUS" not in flags:
                kinds[f"{name} of a file"] += 1
                continue
            fixed = "MAP_FIXED" in flags.split("|")  # MAP_FIXED_NOREPLACE is a hint that must hold
            kinds[f"{name} {'MAP_FIXED' if fixed else 'hinted' if hint else 'unhinted'} {prot}"] += 1
            extra = "|".join(f for f in flags.split("|") if f not in ("MAP_PRIVATE", "MAP_ANONYMOUS"))
            prot = f"{prot} {extra}" if extra else prot
            if fixed or not (prot == "PROT_NONE" or size >= MiB) or not ret.startswith("0x"):
                continue
            got = int(ret, 16)
            last = run[-1] if run else None
            if last and not (prot == last[3] and hint and hint == last[0] + last[1]
                             and (size == last[1] or max(size, last[1]) < 16 * MiB)):
                flush()
            run.append((hint, size, got, prot))
    flush()
    print(f"{path}: {sum(kinds.values())} calls")
    for kind, n in sorted(kinds.items()):
        print(f"  {n:6d}  {kind}")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        summarise(p)
