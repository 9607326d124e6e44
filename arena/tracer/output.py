"""A traced program's output: bounded capture, and the runtime's fatal line found in its stderr as it streams."""
from __future__ import annotations

import re

# A line longer than this is judged on its first part only.
_LINE_LIMIT = 4096

# The fatal lines, most telling first: the first line of the best kind found is the run's fatal line.
_KINDS = [
    re.compile(rb"^fatal error: "),                 # Go's throw
    re.compile(rb"^panic: "),                       # Go's unrecovered panic
    re.compile(rb"^(malloc|free|realloc|calloc|munmap_chunk|malloc_consolidate|_int_malloc|_int_free|"
               rb"tcache_thread_shutdown|malloc_check|mremap_chunk)\(\): "),   # glibc's malloc checks
    re.compile(rb"^(double free or corruption|corrupted size vs\. prev_size|corrupted double-linked list)"),
    re.compile(rb"^Fatal glibc error: "),
    re.compile(rb": Assertion .* failed\.$"),       # assert(3), then abort
    re.compile(rb"^runtime: "),                     # Go's runtime explaining a throw
]


class FatalScanner:
    """Finds the fatal line in a stream fed in chunks; holds at most one partial line (``_LINE_LIMIT`` bytes)."""

    def __init__(self) -> None:
        self._partial = b""
        self._found: list[bytes | None] = [None] * len(_KINDS)

    def feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()[:_LINE_LIMIT]
        for line in lines:
            self._judge(line[:_LINE_LIMIT])

    def _judge(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        for i, kind in enumerate(_KINDS):
            if self._found[i] is None and kind.search(line):
                self._found[i] = line
                return

    def line(self) -> str | None:
        """The fatal line (the unfinished last line counted), or None."""
        if self._partial:
            self._judge(self._partial)
            self._partial = b""
        found = next((f for f in self._found if f is not None), None)
        return None if found is None else found.decode("utf-8", "replace").strip()


class Capture:
    """The first ``limit`` bytes of a stream, and how many more there were."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._kept = 0
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - self._kept
        if room > 0:
            self._parts.append(chunk[:room])
            self._kept += min(room, len(chunk))
        self.dropped += max(0, len(chunk) - max(room, 0))

    def value(self) -> bytes:
        return b"".join(self._parts)
