"""A long command's progress on stderr: one line redrawn on a terminal; in a file or a pipe, a line a minute.

A log of a ten-minute hunt gets ten lines and one per change of phase (searching,
shrinking...), not one a second: what pip and pytest do when not on a terminal.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

# In a file, a line at most this often (seconds), besides one per change of phase.
EVERY = 60.0


class Progress:
    """Shows ``show(phase, line)`` calls on ``stream`` (default: stderr), redrawn or sparse as above.

    ``done()`` ends a redrawn line, so that what follows starts on a line of its own.
    A reader gone away (``2>&1 | head``) stops nothing.
    """

    def __init__(self, stream: TextIO | None = None, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.width = width
        self.shown = 0  # the length of the line on the terminal now
        self.phase: str | None = None
        self.last = 0.0

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass

    def show(self, phase: str, line: str) -> None:
        """Show ``line``, the progress of ``phase``."""
        if self.tty:
            # One line, never wrapped (\r returns to the start of the last screen line only).
            line = line[:self.width - 1] if self.width else line
            self._write("\r" + line.ljust(self.shown))
            self.shown = len(line)
            return
        now = time.monotonic()
        if phase != self.phase or now - self.last >= EVERY:
            self.phase, self.last = phase, now
            self._write(line + "\n")

    def done(self) -> None:
        """End the redrawn line, if there is one."""
        if self.tty and self.shown:
            self._write("\n")
            self.shown = 0
