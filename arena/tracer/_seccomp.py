"""The seccomp-BPF filter that stops a traced program at its mmap-family calls only, and a small assembler for it.

The filter answers ``SECCOMP_RET_TRACE`` for mmap, munmap and mremap in the
x86-64 ABI and for mmap2, the old mmap, munmap and mremap in the i386 ABI (a
64-bit program may exec a 32-bit one, and a 64-bit program may make a 32-bit
call), and ALLOW for everything else, x32 calls included. The traced numbers
of the two ABIs are disjoint, so the call's number alone (``orig_rax``) tells
the tracer which call of which ABI it stopped at.
"""
from __future__ import annotations

import ctypes

from . import _ptrace

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_TRACE = 0x7FF00000
RET_ERRNO = 0x00050000
SECCOMP_MODE_FILTER = 2

# The traced calls by number, in each ABI; no number is in both.
X86_64_CALLS = {9: "mmap", 11: "munmap", 25: "mremap"}
I386_CALLS = {192: "mmap2", 90: "old_mmap", 91: "munmap", 163: "mremap"}

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
NR, ARCH = 0, 4
_LD_ABS_W = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


# An instruction: (code, k, jump-if-true label, jump-if-false label); None goes to the next one.
Insn = tuple[int, int, "str | None", "str | None"]


def load(offset: int) -> Insn:
    return (_LD_ABS_W, offset, None, None)


def jeq(k: int, true: str | None, false: str | None = None) -> Insn:
    return (_JEQ_K, k, true, false)


def jge(k: int, true: str | None, false: str | None = None) -> Insn:
    return (_JGE_K, k, true, false)


def ret(k: int) -> Insn:
    return (_RET_K, k, None, None)


def assemble(code: list[Insn | str]) -> ctypes.Array[SockFilter]:
    """A BPF program from instructions and label names (a str marks the next instruction)."""
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = (SockFilter * len(insns))()
    for i, (op, k, true, false) in enumerate(insns):
        # BPF jumps only forward, by an offset from the next instruction.
        jt = labels[true] - i - 1 if true else 0
        jf = labels[false] - i - 1 if false else 0
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError(f"BPF instruction {i}: jump out of range")
        out[i] = SockFilter(op, jt, jf, k)
    return out


def mmap_filter() -> ctypes.Array[SockFilter]:
    """The tracer's filter (see the module's docstring)."""
    code: list[Insn | str] = [load(ARCH), jeq(AUDIT_ARCH_X86_64, "x86_64"), jeq(AUDIT_ARCH_I386, "i386", "allow"),
                              "x86_64", load(NR), jge(X32_SYSCALL_BIT, "allow")]
    code += [jeq(nr, "trace") for nr in X86_64_CALLS]
    code += [ret(RET_ALLOW), "i386", load(NR)]
    code += [jeq(nr, "trace") for nr in I386_CALLS]
    code += ["allow", ret(RET_ALLOW)]
    code += ["trace", ret(RET_TRACE)]
    return assemble(code)


def install(program: ctypes.Array[SockFilter]) -> None:
    """Set no_new_privs and install ``program`` on the calling thread (and what it execs); ``OSError`` if refused."""
    _ptrace.prctl(_ptrace.PR_SET_NO_NEW_PRIVS, 1)
    fprog = SockFprog(len(program), ctypes.cast(program, ctypes.POINTER(SockFilter)))
    _ptrace.prctl(_ptrace.PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
