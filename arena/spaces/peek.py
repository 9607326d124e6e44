"""Reading and writing raw addresses without crashing: a range that is not mapped is an error, not a SIGSEGV."""
from __future__ import annotations

import ctypes
import operator
import os
import threading
from collections.abc import Callable
from typing import SupportsIndex, cast

from .. import sysmem
from ..sysmem._ctypes import _libc

# libc's read and write on raw addresses, for peek and poke: the kernel copies
# between a pipe and user memory with checks, so a range not mapped with the
# access asked answers EFAULT where a plain memmove would crash the
# interpreter; and unlike process_vm_readv/writev they need no ptrace
# permission, which a container's seccomp profile withholds.
_read, _write = _libc.read, _libc.write
for _f in (_read, _write):
    _f.restype = ctypes.c_ssize_t
    _f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]

# Bytes moved per write into the pipe: a pipe's default capacity, so that a
# write into the emptied pipe is whole unless it faults. A pipe with less room
# (the kernel gives one page to a user over its pipe quota) only makes the
# copies shorter: the count a write returns is what gets read back.
_CHUNK = 1 << 16


def _arguments(addr: object, size: object) -> tuple[int, int]:
    try:
        # Any object may come: one without __index__ raises TypeError, answered below.
        addr, size = operator.index(cast(SupportsIndex, addr)), operator.index(cast(SupportsIndex, size))
    except TypeError:
        raise TypeError(f"addr and size must be ints, not {type(addr).__name__} and {type(size).__name__}") from None
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}")
    if addr <= 0 or addr + size > 1 << sysmem.NATIVE_BITS:
        raise ValueError(f"addr {addr:#x} is not an address of this process")
    return addr, size


class _Pipe:
    """The pipe peek and poke copy through: one per thread, closed with its last reference."""

    __slots__ = ("r", "w", "pid")
    _idle = threading.local()

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.pid = os.getpid()

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # os.close bound early: at interpreter exit the module may be gone.
        _close(self.r)
        _close(self.w)

    @classmethod
    def take(cls) -> _Pipe:
        """This thread's idle pipe, or a new one; ``keep`` it after a copy that emptied it.

        A copy that fails drops its pipe with whatever bytes were left in it.
        A taken pipe is not idle, so a call made meanwhile on this thread (a
        signal handler) gets a pipe of its own; and a forked child, which
        shares its parent's pipes, makes its own.
        """
        p = getattr(cls._idle, "pipe", None)
        cls._idle.pipe = None
        return p if p is not None and p.pid == os.getpid() else cls()

    def keep(self) -> None:
        self._idle.pipe = self


def _not_mapped(addr: int, size: int, access: str) -> ValueError:
    return ValueError(f"[{addr:#x}, {addr + size:#x}) is not all mapped {access}")


def poke(addr: int, data: bytes) -> None:
    """Write ``data`` at ``addr``: only ever into committed memory you own.

    ``ValueError`` if the range is not all mapped writable, rather than a
    crash, and then no byte of the range has changed. The bytes go through a
    pipe (``read()`` into the range). A ``read()`` that faults part-way keeps
    what it wrote before the fault, so the whole range is first proved
    writable by reading its own bytes out and writing them back unchanged;
    only then is ``data`` written. The guarantee holds unless another thread
    changes the range's mappings or bytes meanwhile (a byte another thread
    writes there during the call may end as its old value before ``data``
    lands). Pages before a failure may become resident, with the same bytes.
    """
    view = memoryview(data).cast("B")
    addr, size = _arguments(addr, len(view))
    if not size:
        return
    pipe = _Pipe.take()
    r, w = pipe.r, pipe.w
    done = 0
    while done < size:
        n = _write(w, addr + done, min(size - done, _CHUNK))
        if n < 0 or _read(r, addr + done, n) != n:
            raise _not_mapped(addr, size, "writable")
        done += n
    done = 0
    while done < size:
        n = os.write(w, view[done:done + _CHUNK])
        if _read(r, addr + done, n) != n:
            # Proved writable above: only a concurrent munmap or mprotect gets here.
            raise _not_mapped(addr, size, "writable")
        done += n
    pipe.keep()


def peek(addr: int, size: int) -> bytes:
    """Read ``size`` bytes at ``addr``: only ever from committed memory you own.

    ``ValueError`` if the range is not all mapped readable, rather than a
    crash. The bytes go through a pipe (``write()`` from the range), 64 KiB at
    a time, so a huge request fails at its first unreadable page having held
    no more than what came before it.
    """
    addr, size = _arguments(addr, size)
    if not size:
        return b""
    pipe = _Pipe.take()
    chunks, done = [], 0
    while done < size:
        n = _write(pipe.w, addr + done, min(size - done, _CHUNK))
        if n < 0:
            raise _not_mapped(addr, size, "readable")
        chunks.append(os.read(pipe.r, n))
        done += n
    pipe.keep()
    return b"".join(chunks)
