"""ctypes primitives: ptrace, waitpid, prctl, and the register layouts a tracer reads a tracee's call through.

Every wrapper raises ``OSError`` with the call's errno; nothing here knows
about programs, adversaries or records. Register access goes through an
``Abi``: which registers hold a call's arguments, number and result, for the
tracee's system-call convention as seen by this (64- or 32-bit) tracer.
"""
from __future__ import annotations

import ctypes
import operator
import os
import struct

TRACER_BITS = struct.calcsize("P") * 8

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202

O_TRACESYSGOOD = 0x1
O_TRACEFORK = 0x2
O_TRACEVFORK = 0x4
O_TRACECLONE = 0x8
O_TRACEEXEC = 0x10
O_TRACESECCOMP = 0x80
O_EXITKILL = 0x100000
OPTIONS = (O_TRACESYSGOOD | O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC
           | O_TRACESECCOMP | O_EXITKILL)

EVENT_FORK = 1
EVENT_VFORK = 2
EVENT_CLONE = 3
EVENT_EXEC = 4
EVENT_SECCOMP = 7

WALL = 0x40000000

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_waitpid = _libc.waitpid
_waitpid.restype = ctypes.c_int
_waitpid.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def ptrace(request: int, pid: int, addr: int | None = None, data: int | ctypes.c_void_p | None = None) -> int:
    """``ptrace(request, pid, addr, data)``; ``OSError`` on failure."""
    # No PEEK request is made, so -1 always means failure.
    r = _ptrace(request, pid, addr, data)
    if r == -1:
        raise _fail(f"ptrace({request:#x}, {pid})")
    return int(r)


def ptrace_ref(request: int, pid: int, obj: ctypes.Structure | ctypes.c_ulong) -> None:
    """``ptrace`` with ``data`` pointing at ``obj`` (registers, an event message)."""
    if _ptrace(request, pid, None, ctypes.addressof(obj)) == -1:
        raise _fail(f"ptrace({request:#x}, {pid})")


class Interrupted(Exception):
    """``waitpid`` was interrupted by a signal (the tracer's timer): look at the clock."""


_status = ctypes.c_int()


def waitpid(pid: int, options: int) -> tuple[int, int]:
    """``(pid, status)`` of the next child or tracee to change state; ``Interrupted`` on EINTR.

    ``ChildProcessError`` when there is none left (ECHILD). Unlike
    ``os.waitpid`` it does not retry after a signal, so a timer can wake it.
    """
    r = _waitpid(pid, ctypes.byref(_status), options)
    if r == -1:
        err = ctypes.get_errno()
        if err == 4:  # EINTR
            raise Interrupted
        if err == 10:  # ECHILD
            raise ChildProcessError(err, "no child processes")
        raise _fail("waitpid")
    return r, _status.value


def prctl(option: int, arg2: int = 0, arg3: int | ctypes.c_void_p | None = None) -> None:
    """``prctl(option, arg2, arg3, 0, 0)``; ``OSError`` on failure."""
    if _prctl(option, arg2, arg3, 0, 0) == -1:
        raise _fail(f"prctl({option})")


class Regs64(ctypes.Structure):
    """x86-64 ``struct user_regs_struct`` (a 64-bit tracer reads 64- and 32-bit tracees through it)."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
        "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")]


class Regs32(ctypes.Structure):
    """i386 ``struct user_regs_struct`` (what a 32-bit tracer reads)."""

    _fields_ = [(name, ctypes.c_ulong) for name in (
        "ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "xds", "xes", "xfs", "xgs", "orig_eax", "eip",
        "xcs", "eflags", "esp", "xss")]


class Abi:
    """Where one system-call convention keeps a call's arguments, number and result, as this tracer reads them."""

    def __init__(self, bits: int, args: tuple[str, ...], number: str, result: str) -> None:
        self.bits = bits
        self._args, self._number, self._result = args, number, result
        self._get = operator.attrgetter(*args)
        self._mask = (1 << bits) - 1

    def args(self, regs: ctypes.Structure) -> tuple[int, ...]:
        """The six arguments, each cut to the tracee's width (unsigned)."""
        a: tuple[int, ...] = self._get(regs)
        if self.bits == 64 or self.bits == TRACER_BITS:
            return a
        m = self._mask
        return tuple(v & m for v in a)

    def number(self, regs: ctypes.Structure) -> int:
        """The call's number (as the tracee's ABI numbers it)."""
        return int(getattr(regs, self._number)) & 0xFFFFFFFF

    def set_hint(self, regs: ctypes.Structure, address: int) -> None:
        """Make the first argument ``address``."""
        setattr(regs, self._args[0], address)

    def skip(self, regs: ctypes.Structure) -> None:
        """Make the kernel skip the call (system-call number -1)."""
        setattr(regs, self._number, -1 & ((1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1))

    def result(self, regs: ctypes.Structure) -> int:
        """The call's result: an address (or 0), or ``-errno`` for a failure."""
        r = int(getattr(regs, self._result)) & self._mask
        # The kernel's error returns are -1..-4095; no mapping starts in that last page.
        return r - (1 << self.bits) if r > self._mask - 4095 else r

    def set_result(self, regs: ctypes.Structure, value: int) -> None:
        setattr(regs, self._result, value & ((1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1))


if TRACER_BITS == 64:
    Regs: type[ctypes.Structure] = Regs64
    X86_64: Abi | None = Abi(64, ("rdi", "rsi", "rdx", "r10", "r8", "r9"), "orig_rax", "rax")
    # A 32-bit call (a 32-bit tracee, or int 0x80) keeps its arguments in the i386 registers.
    I386 = Abi(32, ("rbx", "rcx", "rdx", "rsi", "rdi", "rbp"), "orig_rax", "rax")
else:
    Regs = Regs32
    X86_64 = None
    I386 = Abi(32, ("ebx", "ecx", "edx", "esi", "edi", "ebp"), "orig_eax", "eax")
