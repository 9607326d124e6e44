"""Adversarial address spaces made of real mappings, for tests that provoke placement bugs.

``ScriptedMemory`` answers reservations where a script says, by really mapping
there; ``Crowd`` fills the space with blockers so that the kernel itself
answers low, or (``Crowd.from_maps``) with a real process's mappings.
"""
from __future__ import annotations

import ctypes
import importlib.resources
import operator
import os
import threading
from collections import deque
from typing import Callable, Iterable, NamedTuple, Union

from . import sysmem
from .sysmem._ctypes import _libc
from .words import plural


class _NoRoom:
    def __repr__(self) -> str:
        return "NO_ROOM"


NO_ROOM = _NoRoom()
"""A scripted answer: the kernel has no room (``reserve`` returns ``None``)."""


class Fail(NamedTuple):
    """A scripted answer: the call fails with this errno."""

    errno: int


Answer = Union[None, int, _NoRoom, Fail, Callable[[int, int], object]]


class AnswerTaken(RuntimeError):
    """A scripted address is not free: something else maps part of it."""


class Call(NamedTuple):
    """One call a ``ScriptedMemory`` received: the operation, its arguments and what it returned (or the ``Fail``)."""

    op: str
    addr: int
    size: int
    result: object


class ScriptedMemory:
    """An OS layer whose reservations answer from a script, with real mappings.

    Each ``reserve`` takes the next answer: ``None`` asks the kernel with the
    caller's hint; an address is really mapped exactly there; ``NO_ROOM``
    reports no room; ``Fail(errno)`` raises ``OSError``; a callable
    ``(hint, size) -> answer`` decides when asked. Past the last answer it
    passes through. ``fail_next(op, errno)`` makes a later commit, decommit,
    release or reserve_exact fail once. Every call is recorded in ``calls``.
    """

    def __init__(self, inner: sysmem.Memory, answers: Iterable[Answer] = ()) -> None:
        if not isinstance(inner, sysmem.Memory):
            raise TypeError(f"inner must be an OS layer (sysmem.Memory), not {type(inner).__name__}")
        self.inner = inner
        self.page_size = inner.page_size
        self.address_bits = inner.address_bits
        self.limit = inner.limit
        self.lowest = inner.lowest
        self.calls: list[Call] = []
        self._answers = deque(self._checked(a) for a in answers)
        self._failures: dict[str, deque[int]] = {}

    def _checked(self, answer: object) -> Answer:
        if isinstance(answer, Fail):
            if isinstance(answer.errno, bool) or not isinstance(answer.errno, int) or answer.errno <= 0:
                raise ValueError(f"a scripted failure needs a positive errno, not {answer.errno!r}")
            return answer
        if answer is None or answer is NO_ROOM or callable(answer):
            return answer
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise TypeError(f"a scripted answer must be an address, None, NO_ROOM, Fail or a callable, not {answer!r}")
        if answer % self.page_size:
            raise ValueError(f"scripted answer {answer:#x} is not aligned to the page size {self.page_size:#x}")
        if not self.lowest <= answer < self.limit:
            raise ValueError(f"scripted answer {answer:#x} is outside [{self.lowest:#x}, {self.limit:#x}), "
                             f"the {self.address_bits}-bit space this layer maps in")
        return answer

    @property
    def pending(self) -> int:
        """Answers not used yet."""
        return len(self._answers)

    def fail_next(self, op: str, errno: int) -> None:
        """Make the next ``op`` (commit, decommit, release, reserve_exact) fail with ``errno``."""
        if op not in ("commit", "decommit", "release", "reserve_exact"):
            raise ValueError(f"cannot script a failure of {op!r}")
        code = operator.index(errno)
        if code <= 0:
            raise ValueError(f"errno must be positive, got {code}")
        self._failures.setdefault(op, deque()).append(code)

    def reserve(self, hint: int, size: int) -> int | None:
        """``Memory.reserve``, answered by the next scripted answer (see the class); ``AnswerTaken`` if an
        address it gives is not free, ``OSError`` for a scripted ``Fail``."""
        # Bad arguments fail as they would in the OS layer, whatever the script says.
        hint, size = self.inner.check_hint(hint, size)
        answer = self._answers.popleft() if self._answers else None
        if callable(answer):
            answer = self._checked(answer(hint, size))
        if answer is NO_ROOM:
            result = None
        elif isinstance(answer, Fail):
            self.calls.append(Call("reserve", hint, size, answer))
            raise OSError(answer.errno, f"scripted failure of reserve(hint={hint:#x}, size={size:#x})")
        elif answer is None:
            result = self.inner.reserve(hint, size)
        else:
            result = self._place(answer, size)
        self.calls.append(Call("reserve", hint, size, result))
        return result

    def _place(self, addr: int, size: int) -> int:
        if addr + size > self.limit:
            raise ValueError(f"scripted answer [{addr:#x}, {addr + size:#x}) passes the top {self.limit:#x}")
        p = self.inner.reserve_exact(addr, size)
        if p is None:
            taken = [m for m in sysmem.mappings() if m.start < addr + size and addr < m.end]
            raise AnswerTaken(
                f"scripted answer [{addr:#x}, {addr + size:#x}) is not free: "
                + ", ".join(f"[{m.start:#x}, {m.end:#x}) {m.perms} {m.name}".rstrip() for m in taken)
            )
        return p

    def _passed(self, op: str, addr: int, size: int) -> object:
        addr, size = self.inner.check("addr", addr, size)
        failures = self._failures.get(op)
        if failures:
            code = failures.popleft()
            self.calls.append(Call(op, addr, size, Fail(code)))
            raise OSError(code, f"scripted failure of {op}(addr={addr:#x}, size={size:#x})")
        result = getattr(self.inner, op)(addr, size)
        self.calls.append(Call(op, addr, size, result))
        return result

    def reserve_exact(self, addr: int, size: int) -> int | None:
        """``Memory.reserve_exact`` of the inner layer, unless ``fail_next`` scripted a failure (``OSError``)."""
        return self._passed("reserve_exact", addr, size)

    def commit(self, addr: int, size: int) -> None:
        """``Memory.commit`` of the inner layer, unless ``fail_next`` scripted a failure (``OSError``)."""
        self._passed("commit", addr, size)

    def decommit(self, addr: int, size: int) -> None:
        """``Memory.decommit`` of the inner layer, unless ``fail_next`` scripted a failure (``OSError``)."""
        self._passed("decommit", addr, size)

    def release(self, addr: int, size: int) -> None:
        """``Memory.release`` of the inner layer, unless ``fail_next`` scripted a failure (``OSError``)."""
        self._passed("release", addr, size)

    def __repr__(self) -> str:
        return f"ScriptedMemory({self.inner!r}, {plural(self.pending, 'answer')} pending)"


EXAMPLE_MAPS = ("python3-i386", "python3-x86_64")
"""Maps dumps shipped with the package: real Python 3 processes (i386 and x86-64) with extension modules loaded."""


def example_maps(name: str) -> str:
    """The text of a shipped maps dump (one of ``EXAMPLE_MAPS``), for ``Crowd.from_maps``."""
    if name not in EXAMPLE_MAPS:
        raise ValueError(f"no shipped maps dump {name!r}; there are {', '.join(EXAMPLE_MAPS)}")
    return importlib.resources.files(__package__).joinpath(f"data/maps-{name}.txt").read_text(encoding="utf-8")


class Skipped(NamedTuple):
    """A range of a maps dump that ``Crowd.from_maps`` did not occupy, and why."""

    start: int
    end: int
    why: str


# Room the stack may still grow into below its mapping (8 MiB, the usual
# RLIMIT_STACK, and the kernel's 1 MiB guard gap): a placeholder never goes there.
_STACK_ROOM = 9 << 20


class Crowd:
    """Real blocker mappings (PROT_NONE) that occupy hints or fill ranges; released on exit."""

    def __init__(self, memory: sysmem.Memory | None = None) -> None:
        self.memory = memory if memory is not None else sysmem.default()
        self.blocks: list[tuple[int, int]] = []
        self.skipped: list[Skipped] = []

    @classmethod
    def from_maps(cls, text: str, memory: sysmem.Memory | None = None) -> Crowd:
        """A crowd occupying, with PROT_NONE placeholders, what a /proc/PID/maps dump maps.

        Only what is free here is taken; ``skipped`` lists the rest: ranges
        outside ``memory``'s space (a 64-bit dump on the 32-bit layer, say),
        ranges this process maps itself, and room its stack may grow into.
        ``ValueError`` naming the line if ``text`` has one that is not a maps
        line; nothing is mapped then.
        """
        runs: list[list[int]] = []
        for m in sorted(sysmem.parse_maps(text)):
            # Adjacent and overlapping ranges become one: fewer placeholders, fewer syscalls.
            if runs and m.start <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], m.end)
            else:
                runs.append([m.start, m.end])
        crowd = cls(memory)
        memory, page = crowd.memory, crowd.memory.page_size
        here = sysmem.mappings()
        stacks = [m for m in here if m.name == "[stack]"]
        taken = sorted(here + [sysmem.Mapping(m.start - _STACK_ROOM, m.start, "", "") for m in stacks])
        try:
            for a, b in runs:
                lo, hi = max(a, memory.lowest), min(b, memory.limit)
                if lo >= hi:
                    crowd.skipped.append(Skipped(a, b, f"outside the {memory.address_bits}-bit space"))
                    continue
                if (lo, hi) != (a, b):
                    crowd.skipped.append(Skipped(a, b, f"partly outside the {memory.address_bits}-bit space"))
                cursor = lo
                for ga, gb in sysmem.free_gaps(taken, lo, hi):
                    if cursor < ga:
                        crowd.skipped.append(Skipped(cursor, ga, "mapped here (or room for this process's stack)"))
                    cursor = gb
                    ga, gb = -(-ga // page) * page, gb // page * page
                    if ga < gb and memory.reserve_exact(ga, gb - ga) is not None:
                        crowd.blocks.append((ga, gb - ga))
                    elif ga < gb:
                        crowd.skipped.append(Skipped(ga, gb, "mapped here meanwhile"))
                if cursor < hi:
                    crowd.skipped.append(Skipped(cursor, hi, "mapped here (or room for this process's stack)"))
        except BaseException:
            crowd.release()
            raise
        return crowd

    @property
    def occupied(self) -> int:
        """Bytes held by the placeholders."""
        return sum(size for _, size in self.blocks)

    def occupy(self, addr: int, size: int) -> int:
        """Map exactly ``[addr, addr+size)``; ``RuntimeError`` naming the range if it is not free."""
        p = self.memory.reserve_exact(addr, size)
        if p is None:
            raise RuntimeError(f"cannot occupy [{addr:#x}, {addr + size:#x}): not free")
        self.blocks.append((p, size))
        return p

    def fill(self, low: int, high: int, holes: Iterable[tuple[int, int]] = ()) -> int:
        """Occupy every free byte of ``[low, high)`` except the ``holes`` ``[(start, end), ...]``; returns bytes taken."""
        page = self.memory.page_size
        cuts = sorted(holes)
        taken = 0
        for a, b in sysmem.free_gaps(sysmem.mappings(), low, high):
            pieces = [(a, b)]
            for ha, hb in cuts:
                pieces = [p for lo, hi in pieces for p in ((lo, min(hi, ha)), (max(lo, hb), hi)) if p[0] < p[1]]
            for lo, hi in pieces:
                lo, hi = -(-lo // page) * page, hi // page * page
                if lo < hi:
                    self.occupy(lo, hi - lo)
                    taken += hi - lo
        return taken

    def release(self) -> None:
        """Give back every blocker."""
        while self.blocks:
            p, size = self.blocks.pop()
            self.memory.release(p, size)

    def __enter__(self) -> Crowd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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
        addr, size = operator.index(addr), operator.index(size)
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


def reservations() -> frozenset[tuple[int, int, str]]:
    """Anonymous MAP_NORESERVE mappings (what the OS layer makes), from /proc/self/smaps.

    Python's own allocator never uses MAP_NORESERVE, so a difference between two
    calls is mappings somebody reserved through the OS layer and did not release.
    """
    with open("/proc/self/smaps", "rb") as f:
        text = f.read().decode("utf-8", "replace")
    found = []
    current = None
    for line in text.splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and not head[0].endswith(":"):
            lo, _, hi = head[0].partition("-")
            anonymous = len(head) < 6
            current = (int(lo, 16), int(hi, 16), head[1]) if anonymous else None
        elif head[0] == "VmFlags:" and current is not None and "nr" in line.split():
            found.append(current)
    return frozenset(found)
