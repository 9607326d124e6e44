"""The tracer's exceptions: each message is one line that names the fix."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .outcome import Outcome


class TracerError(Exception):
    """Base of every error the tracer raises about a program or a run.

    ``outcome``: the run so far, when the error stopped a run that had started (else None).
    """

    def __init__(self, message: str, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class ProgramError(TracerError, ValueError):
    """The program cannot be run as given (the message says why and what to do)."""


class ProgramNotFound(ProgramError, FileNotFoundError):
    """No such program: not on PATH, or no file at the path given."""


class NotExecutable(ProgramError):
    """The path is a directory, lacks execute permission, or is neither an ELF program nor a ``#!`` script."""


class SetuidProgram(ProgramError):
    """A set-user-ID/set-group-ID program whose privileges a traced run would drop (so it would behave differently)."""


class WrongWidth(ProgramError):
    """A program this tracer cannot read: a 64-bit (or x32) program under a 32-bit Python."""


class PtraceRefused(TracerError, PermissionError):
    """The kernel refused to let the tracer trace its own child (Yama, a container's seccomp profile)."""


class AdversaryError(TracerError):
    """The adversary raised, or returned something that is not an allowed decision; the run was stopped."""


class AdversarySpecError(ValueError):
    """An adversary spec (``name,key=value,...`` or ``module:attr``) that names no adversary or has a bad parameter."""


class TracerFailed(TracerError):
    """The tracer process itself failed (a bug, or it was killed); the program was killed with it."""
