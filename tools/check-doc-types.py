#!/usr/bin/env python3
"""Type-check the ```python examples of README.md and docs/*.md with mypy --strict against the package (make lint).

Each block is written to a module of its own in a temporary directory and
checked as a user's program would be: strict, with ``arena`` read from this
source tree. A block that is not a program (a signature, say) is preceded by
the line ``<!-- types: skip (why) -->`` and left out. Exits with mypy's
status; the errors name the file and the block's first line there.

    tools/check-doc-types.py [FILE.md ...]      (default: README.md docs/*.md)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = re.compile(r"<!--\s*types:\s*skip\b.*-->")
FENCE = re.compile(r"^```python\s*$")


def blocks(path: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of each ```python block of ``path`` not marked to skip; ``line`` is its first line of code."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        if not FENCE.match(lines[i]):
            i += 1
            continue
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        start = i + 1
        end = next((j for j in range(start, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise SystemExit(f"{path}:{i + 1}: a ```python block that never ends")
        if not SKIP.search(before):
            found.append((start + 1, "\n".join(lines[start:end]) + "\n"))
        i = end + 1
    return found


def main(argv: list[str]) -> int:
    docs = [Path(a).resolve() for a in argv] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    with tempfile.TemporaryDirectory(prefix="arena-doc-types-") as tmp:
        where: dict[str, tuple[str, int]] = {}
        for doc in docs:
            for n, (line, code) in enumerate(blocks(doc), 1):
                name = f"{re.sub(r'[^a-z0-9]+', '_', doc.stem.lower())}_example_{n}.py"
                (Path(tmp) / name).write_text(code, encoding="utf-8")
                where[name] = (str(doc.relative_to(ROOT)), line)
        if not where:
            print("no ```python examples found", file=sys.stderr)
            return 1
        # The project's settings (Python 3.11, strict), the package from this tree, no cache left behind.
        done = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--strict",
             "--no-incremental", "--cache-dir", str(Path(tmp) / ".mypy_cache"), *sorted(where)],
            cwd=tmp, env={**os.environ, "MYPYPATH": str(ROOT)}, capture_output=True, text=True,
        )
        # Each error at the line of the Markdown file it is on, not of the temporary module.
        out = re.sub(r"^(\S+?\.py):(\d+):", lambda m: _place(where, m), done.stdout + done.stderr, flags=re.M)
        print(out.rstrip())
        print(f"checked {len(where)} examples of {len(docs)} files", file=sys.stderr)
        return done.returncode


def _place(where: dict[str, tuple[str, int]], m: re.Match[str]) -> str:
    if m[1] not in where:
        return m[0]
    doc, first = where[m[1]]
    return f"{doc}:{first + int(m[2]) - 1}:"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
