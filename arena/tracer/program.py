"""Which file a command runs, checked before anything is started: found, executable, an ELF program or a script, traceable here.

A set-user-ID or set-group-ID program is refused when the bit would change
who it runs as: a traced program runs with no_new_privs (the seccomp filter
needs it), and the kernel ignores the bit under tracing anyway, so such a
program would run with the caller's identity and behave differently from
its real runs. Where the bit makes no difference (set-user-ID root run by
root) it is run. Programs it execs later are not checked: the kernel runs
them without their privileges, as it does for any traced program.
"""
from __future__ import annotations

import dataclasses
import grp
import hashlib
import os
import pwd
import shutil
import stat
import struct
from collections.abc import Mapping

from ._ptrace import TRACER_BITS
from .errors import NotExecutable, ProgramNotFound, SetuidProgram, WrongWidth

EM_386, EM_X86_64 = 3, 62
# The kernel follows at most this many #! interpreters (BINPRM's recursion limit).
_SCRIPT_DEPTH = 4
# The kernel reads this much of a file to recognise it.
_HEAD = 256


@dataclasses.dataclass(frozen=True)
class Program:
    """The file a command runs: its absolute ``path``, and ``bits``: the width of the program that runs first
    (for a ``#!`` script, its interpreter's)."""

    path: str
    bits: int


def find(command: str, cwd: str | None, env: Mapping[str, str]) -> Program:
    """The program ``command`` (argv[0]) names, looked up as ``execvp`` would, checked.

    ``ProgramNotFound``: no such file, or not on PATH. ``NotExecutable``: a
    directory, no execute permission, or neither ELF nor ``#!``.
    ``WrongWidth``: 64-bit under a 32-bit Python, or an x32 program.
    ``SetuidProgram``: see the module's docstring.
    """
    base = cwd or os.getcwd()
    if not command:
        raise ProgramNotFound("the program's name is empty: give argv[0], e.g. ['./prog']")
    if "/" in command:
        path = os.path.abspath(os.path.join(base, command))
    else:
        found = shutil.which(command, path=env.get("PATH", os.defpath))
        if found is None:
            raise ProgramNotFound(f"no program {command!r} on PATH: give its path (e.g. ./{command}) "
                                  "or add its directory to PATH")
        path = os.path.abspath(os.path.join(base, found))
    st = _stat(path)
    _refuse_privileges(path, st)
    bits = _width(path, base, _SCRIPT_DEPTH)
    return Program(path, bits)


def _stat(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ProgramNotFound(f"{path}: no such file: check the path") from None
    except OSError as exc:
        raise NotExecutable(f"{path}: cannot be read ({exc.strerror}): check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotExecutable(f"{path} is a directory: give the program inside it")
    if not stat.S_ISREG(st.st_mode):
        raise NotExecutable(f"{path} is not a regular file: give the program's file")
    if not os.access(path, os.X_OK):
        raise NotExecutable(f"{path} is not executable: chmod +x {path}, or run it through its interpreter")
    return st


def _refuse_privileges(path: str, st: os.stat_result) -> None:
    if st.st_mode & stat.S_ISUID and st.st_uid != os.geteuid():
        raise SetuidProgram(f"{path} is set-user-ID {_user(st.st_uid)}: traced, it would run as {_user(os.geteuid())} "
                            "instead and behave differently; trace a copy without the bit (cp it, then chmod u-s)")
    if st.st_mode & stat.S_ISGID and st.st_gid != os.getegid():
        raise SetuidProgram(f"{path} is set-group-ID {_group(st.st_gid)}: traced, it would run as group "
                            f"{_group(os.getegid())} instead and behave differently; trace a copy without the bit (chmod g-s)")
    if os.geteuid() != 0:
        try:
            os.getxattr(path, "security.capability")
        except OSError:
            return
        raise SetuidProgram(f"{path} has file capabilities, which a traced run drops: trace a copy without them "
                            "(cp does not copy them), or trace as root")


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name!r} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def _width(path: str, base: str, depth: int) -> int:
    """The width of the program that runs for ``path``: its own if ELF, its interpreter's for a script."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except OSError as exc:
        raise NotExecutable(f"{path}: cannot be read ({exc.strerror}): check its permissions") from None
    if head[:4] == b"\x7fELF":
        return _elf_width(path, head)
    if head[:2] == b"#!" and depth > 0:
        words = head[2:].split(b"\n", 1)[0].split()
        if not words:
            raise NotExecutable(f"{path}: its #! line names no interpreter: write e.g. #!/bin/sh")
        interpreter = os.path.join(base, os.fsdecode(words[0]))
        if not os.path.isfile(interpreter) or not os.access(interpreter, os.X_OK):
            raise NotExecutable(f"{path}: its interpreter {os.fsdecode(words[0])} is not an executable file: fix the #! line")
        return _width(interpreter, base, depth - 1)
    raise NotExecutable(f"{path} is neither an ELF program nor a script starting with #!: "
                        "add a #! line, or run it through its interpreter (e.g. ['sh', path])")


def _elf_width(path: str, head: bytes) -> int:
    if len(head) < 20 or head[5] != 1:
        raise NotExecutable(f"{path} is not a little-endian ELF program for this machine")
    cls, machine = head[4], struct.unpack_from("<H", head, 18)[0]
    if (cls, machine) == (2, EM_X86_64):
        bits = 64
    elif (cls, machine) == (1, EM_386):
        bits = 32
    elif (cls, machine) == (1, EM_X86_64):
        raise WrongWidth(f"{path} is an x32 program, whose calls the tracer cannot see: build it for x86-64 or i386")
    else:
        raise NotExecutable(f"{path} is an ELF program for another machine (e_machine {machine}): build it for x86")
    if bits > TRACER_BITS:
        raise WrongWidth(f"{path} is a 64-bit program and this Python is 32-bit: trace it from a 64-bit Python")
    return bits


def sha256(fd: int) -> str:
    """The SHA-256 of the file open at ``fd`` (read from where it stands), in hex."""
    h = hashlib.sha256()
    with open(fd, "rb", closefd=False) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def elf_bits(path: str) -> int | None:
    """The width of the ELF program at ``path`` (32 or 64), or None if it is not one this tracer knows."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    return {(2, EM_X86_64): 64, (1, EM_386): 32}.get((head[4], struct.unpack_from("<H", head, 18)[0]))
