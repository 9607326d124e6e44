"""What a traced program asked (``Call``), what an adversary answers (``Decision``), and what happened (``Record``)."""
from __future__ import annotations

import dataclasses
import errno
import operator
from typing import Literal, NamedTuple

from ..words import size_text

# Flags read from a traced program's own calls, never passed by arena: a call that carries either
# maps at an address the program chose (over what is there, with MAP_FIXED: the program's own
# memory to decide), so no adversary may decide it (adjustable, below) and the tracer passes it
# to the kernel unchanged.
MAP_FIXED = 0x10
MAP_FIXED_NOREPLACE = 0x100000
PROT_NONE = 0
PAGE_SIZE = 4096

SYSCALLS = ("mmap", "mmap2", "old_mmap", "munmap", "mremap")
# The calls whose hint an adversary may move, or which it may fail.
_ADJUSTABLE = ("mmap", "mmap2")


class Call(NamedTuple):
    """One mmap-family call of the traced program, as it asked.

    ``index`` counts every traced call from 0; ``nth`` counts the calls of
    the same ``syscall`` from 0. ``tid`` is the calling thread, ``pid`` its
    process. ``bits`` is the call's ABI (32 for an i386 call). For mmap and
    mmap2: ``hint`` (the address asked for, 0 for none), ``size``, ``prot``,
    ``flags``, ``fd`` (-1 for none) and ``offset`` in bytes (mmap2's page
    offset converted). For munmap: ``hint`` and ``size`` are the range. For
    mremap: ``hint`` is the old address, ``old_size`` the old size, ``size``
    the new one, ``flags`` mremap's flags.
    """

    # Shadows tuple.index: a Call is read by field, never searched.
    index: int  # type: ignore[assignment]
    nth: int
    tid: int
    pid: int
    syscall: str
    bits: int
    hint: int
    size: int
    prot: int = 0
    flags: int = 0
    fd: int = -1
    offset: int = 0
    old_size: int = 0

    @property
    def adjustable(self) -> bool:
        """Whether an adversary may decide this call: an mmap/mmap2 with neither MAP_FIXED nor MAP_FIXED_NOREPLACE.

        A fixed call names the exact range the program owns or means to
        replace; munmap, mremap and the old mmap (arguments in memory, which
        the tracer never writes) are only observed.
        """
        return self.syscall in _ADJUSTABLE and not self.flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)

    @property
    def hinted(self) -> bool:
        return self.hint != 0

    def describe(self) -> str:
        """One line for people, e.g. ``mmap(0xc000000000, 64 MiB, PROT_NONE, 0x22)``."""
        if self.syscall == "munmap":
            return f"munmap({self.hint:#x}, {size_text(self.size)})"
        if self.syscall == "mremap":
            return f"mremap({self.hint:#x}, {size_text(self.old_size)} -> {size_text(self.size)}, {self.flags:#x})"
        prot = "PROT_NONE" if self.prot == PROT_NONE else f"prot {self.prot:#x}"
        return f"{self.syscall}({self.hint:#x}, {size_text(self.size)}, {prot}, flags {self.flags:#x})"


@dataclasses.dataclass(frozen=True)
class Decision:
    """An adversary's answer to an adjustable call: keep it, move its hint to ``address``, or fail it with ENOMEM.

    Make them with ``KEEP``, ``FAIL`` and ``move(address)``.
    """

    action: Literal["keep", "move", "fail"]
    address: int | None = None

    def __post_init__(self) -> None:
        if self.action not in ("keep", "move", "fail"):
            raise ValueError(f"a decision is keep, move or fail, not {self.action!r}")
        if (self.action == "move") != (self.address is not None):
            raise ValueError("a move has an address (use move(address)); keep and fail have none")


KEEP = Decision("keep")
FAIL = Decision("fail")


def move(address: int) -> Decision:
    """Move the call's hint to ``address`` (page-aligned, >= 0; 0 removes the hint); the kernel still places it.

    ``TypeError`` for a non-integer; ``ValueError`` for a negative or unaligned address.
    """
    address = operator.index(address)
    if address < 0 or address % PAGE_SIZE:
        raise ValueError(f"move: the address must be page-aligned and not negative, got {address:#x}")
    return Decision("move", address)


class Record(NamedTuple):
    """A call and what became of it: the ``decision`` applied (``"keep"`` for every observed call),
    ``moved_to`` (the hint given instead, for a move) and ``answer``: the address the kernel returned
    (0 for munmap's success), ``-errno`` for a failure, or ``None`` if the thread died first."""

    call: Call
    decision: str = "keep"
    moved_to: int | None = None
    answer: int | None = None

    @property
    def rewritten(self) -> bool:
        return self.decision != "keep"

    def describe(self) -> str:
        """One line for people: the call, the decision and the answer."""
        text = f"#{self.call.index} {self.call.pid}/{self.call.tid} {self.call.describe()}"
        if self.decision == "move":
            text += f" hint moved to {self.moved_to:#x}"
        elif self.decision == "fail":
            text += " failed on purpose"
        if self.answer is None:
            return text + " -> no answer (the thread ended)"
        if self.answer < 0:
            return text + f" -> {errno.errorcode.get(-self.answer, str(-self.answer))}"
        return text + f" -> {self.answer:#x}"
