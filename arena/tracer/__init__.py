"""Run a real program with its mmap answers made adversarial by the real kernel.

    from arena import tracer
    outcome = tracer.run(["./prog"], "displace,by=12K", timeout=60, capture=True)
    outcome.failed, outcome.fatal, outcome.calls[0].describe()
    tracer.save(outcome, "run.json")
    tracer.replay("run.json").repeats

The program runs under ptrace with a seccomp filter, so only its mmap-family
calls stop it (mmap, munmap, mremap; i386: mmap2, the old mmap, munmap,
mremap), in every thread and every process it starts. An adversary may only
move the hint of an mmap without MAP_FIXED/MAP_FIXED_NOREPLACE (the kernel
still places the mapping, for real) or fail such a call with ENOMEM; it never
writes the program's memory. Linux x86-64 (or i386) only.
"""
from __future__ import annotations

from .adversaries import Adversary, Below, Displace, Enomem, Gap, Observe, Scripted
from .calls import FAIL, KEEP, Call, Decision, Record, move
from .errors import (
    AdversaryError,
    AdversarySpecError,
    NotExecutable,
    ProgramError,
    ProgramNotFound,
    PtraceRefused,
    SetuidProgram,
    TracerError,
    TracerFailed,
    WrongWidth,
)
from .outcome import Outcome
from .process import run
from .procmaps import Space
from .record import TraceFileError, dump, load, parse, save
from .replay import Replay, replay
from .spec import NAMES, parse_size, resolve

__all__ = [
    "NAMES", "Adversary", "Below", "Displace", "Enomem", "Gap", "Observe", "Scripted", "parse_size", "resolve",
    "FAIL", "KEEP", "Call", "Decision", "Record", "move",
    "AdversaryError", "AdversarySpecError", "NotExecutable", "ProgramError", "ProgramNotFound", "PtraceRefused",
    "SetuidProgram", "TracerError", "TracerFailed", "WrongWidth",
    "Outcome", "Space", "run",
    "TraceFileError", "dump", "load", "parse", "save",
    "Replay", "replay",
]
