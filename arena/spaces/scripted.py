"""Scripted kernel answers: a memory layer whose reservations land where a test says, by really mapping there."""
from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple, NoReturn

from .. import sysmem
from ..words import plural


class _NoRoom:
    def __repr__(self) -> str:
        return "NO_ROOM"


NO_ROOM = _NoRoom()
"""A scripted answer: the kernel has no room (``reserve`` returns ``None``)."""


class Fail(NamedTuple):
    """A scripted answer: the call fails with this errno."""

    errno: int


Answer = None | int | _NoRoom | Fail | Callable[[int, int], object]


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

    An answer callable runs inside the manager's call: calling back into that
    manager raises ``ReentrantCall`` there. A scripted layer cannot be copied
    or pickled (``TypeError``): two layers would answer from one script.
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
        answer = operator.index(answer)  # a subclass of int: its own methods are never asked
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
        if isinstance(answer, _NoRoom):  # NO_ROOM: _checked lets no other _NoRoom through
            result = None
        elif isinstance(answer, Fail):
            self.calls.append(Call("reserve", hint, size, answer))
            raise OSError(answer.errno, f"scripted failure of reserve(hint={hint:#x}, size={size:#x})")
        elif answer is None:
            result = self.inner.reserve(hint, size)
        elif callable(answer):
            # A callable answered with another callable: an answer, not an address.
            raise TypeError(f"a scripted answer's callable must return an address, None, NO_ROOM or Fail, not {answer!r}")
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

    def _passed(self, op: str, addr: int, size: int) -> int | None:
        addr, size = self.inner.check("addr", addr, size)
        failures = self._failures.get(op)
        if failures:
            code = failures.popleft()
            self.calls.append(Call(op, addr, size, Fail(code)))
            raise OSError(code, f"scripted failure of {op}(addr={addr:#x}, size={size:#x})")
        call: Callable[[int, int], int | None] = getattr(self.inner, op)
        result = call(addr, size)
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

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("cannot copy or pickle a ScriptedMemory: a copy would answer from the same script (make a new one)")

    def __repr__(self) -> str:
        return f"ScriptedMemory({self.inner!r}, {plural(self.pending, 'answer')} pending)"
