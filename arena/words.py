"""Words for people: a count with its noun, a size in its unit."""
from __future__ import annotations

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``n`` and the noun it counts, singular for exactly one: ``1 violation``, ``6 violations``, ``1,000 scenarios``.

    ``nouns`` is the plural where adding an ``s`` is wrong.
    """
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def size_text(n: int) -> str:
    """A byte count for people, always with its unit: ``16 MiB``, ``8 KiB``, else ``0 bytes``, ``1,234 bytes``."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if n and n % unit == 0:
            return f"{n // unit} {name}"
    return plural(n, "byte")
