"""Fuzz target: every public callable with arbitrary arguments, in its own process.

Run by tests/test_hardening_fuzz.py as ``python tests/fuzz_target.py [--examples N]
[GROUP ...]`` so that a segmentation fault fails that test (a negative return
code) instead of killing pytest. Exit status 0: every call answered as
``CONTRACT`` says; 1: a contract was broken (the falsifying example is
printed), or a group hung (a deadlock: every thread's stack is printed).

``CONTRACT`` is the list of documented answers, per public callable: the only
exceptions it may raise. Anything else (AttributeError, OverflowError,
MemoryError, a crash, a foreign mapping changed) breaks it.

Destructive calls (commit, decommit, release) with a range that overlaps a
mapping this target does not own are not made: changing somebody else's memory
through the raw OS layer is outside its contract (the caller must own the
range), and would crash the interpreter rather than test anything.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import errno
import faulthandler
import math
import operator
import os
import pickle
import sys
import threading
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arena
from arena import LAYOUT_32, LAYOUT_64, Arena, ArenaClosed, GoThrow, HeapArenas, Layout, ReentrantCall, ReservationFailed, sysmem
from arena.harness.check import InvariantViolation, verify, verify_or_raise
from arena.policy.rules import RuleFailed
from arena.spaces import NO_ROOM, Crowd, Fail, ScriptedMemory, peek, poke, reservations

# -- the contract -----------------------------------------------------------------
# callable -> (exceptions it may raise, what it returns). Nothing else may escape.
CONTRACT: dict[str, tuple[tuple[type[BaseException], ...], str]] = {
    "sysmem.default(address_bits)": ((TypeError, ValueError), "a Memory"),
    "CffiMemory(address_bits) / CtypesMemory(address_bits)": ((TypeError, ValueError), "a Memory"),
    "Memory.reserve(hint, size)": ((TypeError, ValueError, OSError), "an aligned int address, or None: no room"),
    "Memory.reserve_exact(addr, size)": ((TypeError, ValueError, OSError), "addr, or None: taken or no room"),
    "Memory.commit/decommit/release(addr, size)": ((TypeError, ValueError, OSError), "None"),
    "sysmem.mappings() / mapping_count()": ((), "list of Mapping / int"),
    "sysmem.free_gaps(maps, low, high) / program_extent(maps)": ((TypeError,), "list of gaps / (int, int)"),
    "Layout(**fields)": ((TypeError, ValueError), "a Layout"),
    "Arena(layout, rule, memory, start, initial_size, history)": (
        (TypeError, ValueError, ReservationFailed, OSError), "an Arena"),
    # ReentrantCall: made from inside another call on the same manager (a callback); in the outer
    # call, that error let through by the callback.
    "Arena.sys_alloc(n)": ((TypeError, ValueError, ArenaClosed, ReentrantCall, OSError), "an int address, or None: out of memory"),
    "Arena.contains(addr)": ((TypeError, ArenaClosed, ReentrantCall), "bool"),
    "Arena.view(addr, size) / alloc(n)": (
        (TypeError, ValueError, ArenaClosed, ReentrantCall, OSError),
        "a writable memoryview of format 'B' and the length asked; alloc: or None, out of memory"),
    "Arena.address_of(view)": ((TypeError, ValueError), "the int address of the view's first byte"),
    "Arena.close()": ((OSError, BufferError, ReentrantCall), "None; idempotent; BufferError while a view is alive"),
    "Arena.stats / committed_runs, HeapArenas.stats / arenas / hints / state": ((ReentrantCall,), "a snapshot"),
    "copy.copy/copy.deepcopy/pickle.dumps(a manager, Crowd or ScriptedMemory)": (
        (TypeError,), "never a copy: it would share the mappings, and release them twice"),
    "HeapArenas(layout, memory, start, initial_size)": ((TypeError, ValueError, OSError), "a HeapArenas"),
    "HeapArenas.sys_alloc(n)": (
        (TypeError, ValueError, ArenaClosed, ReentrantCall, OSError, GoThrow),
        "an int address, or None: out of memory; GoThrow where Go throws"),
    # ReentrantCall from inside any call on the manager, whatever it holds (an empty arena too): checked at the door.
    "check.verify(a)": ((TypeError, ArenaClosed, ReentrantCall), "list of Violation"),
    "Arena.held() / HeapArenas.held()": ((ReentrantCall,), "a context manager: the manager held by this thread"),
    "check.verify_or_raise(a)": ((TypeError, ArenaClosed, ReentrantCall, InvariantViolation), "None"),
    "ScriptedMemory(inner, answers)": ((TypeError, ValueError), "a ScriptedMemory"),
    "ScriptedMemory.fail_next(op, errno)": ((TypeError, ValueError), "None"),
    "ScriptedMemory.reserve/reserve_exact/commit/decommit/release": (
        (TypeError, ValueError, OSError, RuntimeError), "as Memory; RuntimeError: a scripted address is taken"),
    "Crowd.occupy(addr, size) / Crowd.fill(low, high, holes)": (
        (TypeError, ValueError, OSError, RuntimeError), "address / bytes taken; RuntimeError: not free"),
    "testing.peek(addr, size) / poke(addr, data)": ((TypeError, ValueError), "bytes / None"),
}


STATS: dict[str, int] = {}


class Broken(Exception):
    """A contract was broken."""


def answered(_name, fn, *args, **kwargs):
    """Call ``fn``; re-raise as ``Broken`` unless it returns or raises what ``CONTRACT[name]`` allows.

    And unless it read each int-like argument at most once (see ``IndexLike``).
    """
    name, allowed = _name, CONTRACT[_name][0]
    likes = [a for a in (*args, *kwargs.values()) if isinstance(a, IndexLike)]
    reads = [a.reads for a in likes]
    try:
        try:
            result = fn(*args, **kwargs)
        finally:
            again = [f"{a!r}: read {a.reads - r} times" for a, r in zip(likes, reads) if a.reads - r > 1]
            if again:
                raise Broken(f"{name}{args!r}: an argument read more than once ({', '.join(again)})")
        key = f"{name} -> {'None' if result is None else type(result).__name__}"
        STATS[key] = STATS.get(key, 0) + 1
        return result, None
    except allowed as exc:
        key = f"{name} -> {type(exc).__name__}"
        STATS[key] = STATS.get(key, 0) + 1
        if isinstance(exc, OSError) and not isinstance(exc, MemoryError) and not (
            isinstance(exc.errno, int) and exc.errno > 0
        ):
            raise Broken(f"{name}: OSError without an errno: {exc!r}") from exc
        return None, exc
    except Exception as exc:
        raise Broken(f"{name}{args!r}: undocumented {type(exc).__name__}: {exc}") from exc


# -- strategies -------------------------------------------------------------------
PAGE = sysmem.default().page_size
MiB = 1 << 20
SPECIAL_INTS = [
    0, 1, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 8192, 0x10000, MiB, 256 * MiB,
    2**31, 2**32 - 2 * PAGE, 2**32 - PAGE, sysmem.COMPAT_TASK_SIZE, 2**32, 2**32 + PAGE,
    2**39 - 1, 2**39, 2**47 - PAGE, 2**47, 2**63, 2**64 - 2 * PAGE, 2**64 - PAGE, 2**64 - 1, 2**64,
    2**64 + PAGE, 2**100, -1, -PAGE, -(2**63), -(2**64), -(2**100),
]


class IndexLike:
    """An int-like object (``__index__``), as numpy integers are; counts its reads.

    ``then``: what every read after the first answers. A callee must read an
    argument once (``answered`` checks it), and use that first answer:
    ``value_of`` is what it used.
    """

    def __init__(self, value: int, then: int | None = None) -> None:
        self.value, self.then, self.reads, self.last = value, then, 0, value

    def __index__(self) -> int:
        self.reads += 1
        self.last = self.value if self.reads == 1 or self.then is None else self.then
        return self.last

    def __repr__(self) -> str:
        return f"IndexLike({self.value:#x}{'' if self.then is None else f', then {self.then:#x}'})"


class CallsBack(IndexLike):
    """An int-like whose ``__index__`` first makes a public call on the manager being exercised (``CURRENT``)."""

    def __init__(self, value: int, action: str) -> None:
        super().__init__(value)
        self.action = action

    def __index__(self) -> int:
        if CURRENT is not None and self.reads == 0:
            call_back(CURRENT, self.action)  # before the manager's lock: it just runs
        return super().__index__()

    def __repr__(self) -> str:
        return f"CallsBack({self.value:#x}, {self.action})"


def value_of(x):
    """What the callee that read ``x`` used: an ``IndexLike``'s last answer (its first, before any), read without counting."""
    return x.last if isinstance(x, IndexLike) else operator.index(x)


# The manager exercise() is working on: callbacks (CallsBack, scripted answers) call into it.
CURRENT = None
ACTIONS = ["sys_alloc", "alloc", "contains", "view", "close", "stats", "verify", "held"]


def hold(m):
    """A block of reads with ``m`` held (what verify does)."""
    with m.held():
        return m.regions


def call_back(m, action):
    """One public call on ``m`` under the contract, as a callback makes it; the error it raised, if any."""
    heap = isinstance(m, HeapArenas)
    calls = {
        "sys_alloc": ("HeapArenas.sys_alloc(n)" if heap else "Arena.sys_alloc(n)", m.sys_alloc, PAGE),
        "alloc": ("Arena.view(addr, size) / alloc(n)", m.alloc, PAGE),
        "contains": ("Arena.contains(addr)", m.contains, 0),
        "view": ("Arena.view(addr, size) / alloc(n)", m.view, m.allocations[-1][0] if m.allocations else 0),
        "close": ("Arena.close()", m.close),
        "stats": ("Arena.stats / committed_runs, HeapArenas.stats / arenas / hints / state", lambda: m.stats),
        "verify": ("check.verify(a)", verify, m),
        "held": ("Arena.held() / HeapArenas.held()", hold, m),
    }
    name, fn, *args = calls[action]
    result, exc = answered(name, fn, *args)
    if isinstance(result, memoryview):
        result.release()
    return exc


class AnswerCallingBack:
    """A scripted answer that first calls into the manager asking it: ``ReentrantCall``, never a hang.

    Then it lets the error through (``propagate``) or answers ``None`` (the
    kernel's own answer): the outer call fails cleanly or goes on.
    """

    def __init__(self, action: str, propagate: bool) -> None:
        self.action, self.propagate = action, propagate

    def __call__(self, hint: int, size: int) -> object:
        if CURRENT is None:
            return None  # asked by a constructor: no manager to call yet
        exc = call_back(CURRENT, self.action)
        expect_ok(isinstance(exc, ReentrantCall), f"{self.action} from inside a call on {CURRENT!r}: {exc!r}, not ReentrantCall")
        if self.propagate:
            raise exc
        return None

    def __repr__(self) -> str:
        return f"AnswerCallingBack({self.action}, {'propagate' if self.propagate else 'answer None'})"


class BadIndex:
    """``__index__`` that raises: conversion fails with TypeError-free noise."""

    def __index__(self) -> int:
        raise TypeError("no index for you")

    def __repr__(self) -> str:
        return "BadIndex()"


def near(values):
    return st.sampled_from(values).flatmap(lambda v: st.integers(-3, 3).map(lambda k: v + k * PAGE))


ints = st.one_of(
    st.sampled_from(SPECIAL_INTS),
    near(SPECIAL_INTS),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**32 // PAGE).map(lambda k: k * PAGE),
    st.integers(0, 2**47 // PAGE).map(lambda k: k * PAGE),
)
anything = st.one_of(
    ints,
    ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 4096.0, -0.0, math.inf, math.nan]),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.binary(max_size=6),
    ints.map(IndexLike),
    st.builds(IndexLike, ints, ints),
    st.just(BadIndex()),
    st.complex_numbers(max_magnitude=1e20),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.just(object()),
)


def mostly(valid, weight=3):
    """``valid`` ``weight`` times in ``weight + 1``, anything else otherwise.

    (``st.one_of`` would flatten ``anything`` into its many branches and drown ``valid``.)
    """
    return st.integers(0, weight).flatmap(lambda k: valid if k else anything)


valid_sizes = st.one_of(
    st.integers(1, 64).map(lambda k: k * PAGE),
    st.integers(1, 256).map(lambda k: k * MiB),
    near([2**32 - 2 * PAGE, sysmem.COMPAT_TASK_SIZE, 2**39, 2**47]).filter(lambda v: v > 0),
)
sizes = mostly(st.one_of(valid_sizes, valid_sizes.map(IndexLike), st.builds(IndexLike, valid_sizes, valid_sizes)), 2)
# Requests an arena must answer with an address or None, never an exception:
# small, large, and the largest its layouts allow (near 4 GiB and 512 GiB).
TOP_REQUESTS = [2**32 - 8192, 2**32 - 2 * 8192, 2**32 - 3 * 8192, 2**32 - 256 * MiB, 2**39 - 8192, 2**31, 2**38, 2**62]
arena_sizes = mostly(st.one_of(
    st.integers(1, 512).map(lambda k: k * 8192),
    st.integers(1, 1024).map(lambda k: k * MiB),
    st.sampled_from(TOP_REQUESTS),
    st.sampled_from(TOP_REQUESTS).map(IndexLike),
    # Read twice, these would lie: 8 KiB, then 1 GiB (finding 2: a 1 GiB view of 8 KiB).
    st.builds(IndexLike, st.integers(1, 64).map(lambda k: k * 8192), st.sampled_from([1 << 30, 8192, 2**64])),
    st.builds(CallsBack, st.integers(1, 64).map(lambda k: k * 8192), st.sampled_from(ACTIONS)),
), 4)
errnos = st.sampled_from([errno.ENOMEM, errno.EACCES, errno.EAGAIN, errno.EINVAL, errno.EPERM, errno.EIO, errno.EFAULT])

SETTINGS = {"deadline": None, "database": None, "derandomize": False, "suppress_health_check": list(HealthCheck)}


# -- ownership: the only memory destructive calls may touch -------------------------


class Owner:
    """What this process's fuzzing owns: a sandbox in each space, plus what it reserved."""

    def __init__(self) -> None:
        self.memory = sysmem.default()
        self.memory32 = sysmem.default(address_bits=32)
        self.sandboxes = []
        # Far from where the kernel places anything on its own (top-down from mmap_base).
        for mem, addr in ((self.memory32, 0x40000000), (self.memory, 0x300000000000 if sysmem.NATIVE_BITS == 64 else 0x50000000)):
            size = 16 * MiB
            if mem.reserve_exact(addr, size) != addr:
                raise SystemExit(f"fuzz_target: cannot place a sandbox at {addr:#x}")
            self.sandboxes.append((addr, size, mem))
        self.taken: list[tuple[int, int, object]] = []
        self.memory.commit(*self.buffer)

    def track(self, mem, p, size) -> None:
        if isinstance(p, int) and p:
            self.taken.append((p, value_of(size), mem))

    def owned(self, addr: int, end: int) -> bool:
        ranges = [(a, a + s) for a, s, _ in self.sandboxes] + [(a, a + s) for a, s, _ in self.taken]
        for m in sysmem.mappings():
            lo, hi = max(m.start, addr), min(m.end, end)
            if lo >= hi:
                continue
            cursor = lo
            for a, b in sorted(ranges):
                if a <= cursor < b:
                    cursor = b
            if cursor < hi:
                return False
        return True

    def may_touch(self, addr, size) -> bool:
        """Whether a destructive call on ``(addr, size)`` stays inside what we own (or fails before any syscall)."""
        try:
            a, s = value_of(addr), value_of(size)
        except Exception:
            return True  # refused as a TypeError before any syscall
        if s <= 0 or a < 0:
            return True
        return self.owned(a, a + s)

    @property
    def buffer(self) -> tuple[int, int]:
        """Read-write memory at the start of the native sandbox, for peek and poke."""
        return self.sandboxes[-1][0], 64 * 1024

    def reset(self) -> None:
        """Give back what an example reserved; restore the sandboxes."""
        while self.taken:
            p, size, mem = self.taken.pop()
            try:
                mem.release(p, size)
            except (ValueError, OSError):
                pass
        for addr, size, mem in self.sandboxes:
            mem.release(addr, size)
            if mem.reserve_exact(addr, size) != addr:
                raise Broken(f"the sandbox at {addr:#x} was taken by somebody else")
        self.memory.commit(*self.buffer)


OWNER: Owner


def memories():
    return st.sampled_from([OWNER.memory, OWNER.memory32] if sysmem.NATIVE_BITS == 64 else [OWNER.memory])


def addresses():
    """Anything, or an address in (or at the edges of) a sandbox."""
    sandbox = st.sampled_from(OWNER.sandboxes).flatmap(
        lambda s: st.integers(-4, s[1] // PAGE + 4).map(lambda k: s[0] + k * PAGE)
    )
    return mostly(st.one_of(sandbox, sandbox.map(IndexLike), st.builds(IndexLike, sandbox, sandbox), sandbox.map(lambda a: a + 1),
                            st.sampled_from(SPECIAL_INTS)), 3)


# -- groups -------------------------------------------------------------------------
GROUPS = {}


def group(fn):
    GROUPS[fn.__name__] = fn
    return fn


def expect_ok(cond, message):
    if not cond:
        raise Broken(message)


@group
def sysmem_constructors(examples):
    classes = [sysmem.CtypesMemory]
    try:
        sysmem.CffiMemory()
        classes.append(sysmem.CffiMemory)
    except ImportError:
        pass

    @settings(max_examples=examples, **SETTINGS)
    @given(mostly(st.sampled_from([None, 32, 64, 16, 128]), 1), st.sampled_from(classes), anything, anything, st.lists(st.tuples(anything, anything), max_size=4))
    def prop(bits, cls, low, high, fake):
        m, _ = answered("sysmem.default(address_bits)", sysmem.default, bits)
        expect_ok(m is None or isinstance(m, sysmem.Memory), f"default({bits!r}) returned {m!r}")
        m, _ = answered("CffiMemory(address_bits) / CtypesMemory(address_bits)", cls, bits)
        expect_ok(m is None or m.address_bits in (32, 64), f"{cls.__name__}({bits!r}) -> {m!r}")
        maps = answered("sysmem.mappings() / mapping_count()", sysmem.mappings)[0]
        answered("sysmem.mappings() / mapping_count()", sysmem.mapping_count)
        name = "sysmem.free_gaps(maps, low, high) / program_extent(maps)"
        answered(name, sysmem.free_gaps, maps, low, high)
        answered(name, sysmem.free_gaps, [sysmem.Mapping(*t, "---p", "") for t in fake], low, high)
        answered(name, sysmem.free_gaps, fake, low, high)
        answered(name, sysmem.free_gaps, low, low, high)
        answered(name, sysmem.program_extent, maps)
        answered(name, sysmem.program_extent, fake)
        answered(name, sysmem.program_extent, low)

    prop()


def _memory_op(mem, op, addr, size):
    """One OS-layer call under the contract; its result checked and tracked."""
    if op in ("commit", "decommit", "release") and not OWNER.may_touch(addr, size):
        return
    if op == "reserve":
        p, exc = answered("Memory.reserve(hint, size)", mem.reserve, addr, size)
        expect_ok(exc is not None or p is None or (isinstance(p, int) and p % mem.page_size == 0 and 0 < p < mem.limit),
                  f"reserve({addr!r}, {size!r}) -> {p!r}")
        OWNER.track(mem, p, size)
        if isinstance(p, int):
            expect_ok(p + value_of(size) <= mem.limit, f"reserve answered {p:#x} past the limit")
    elif op == "reserve_exact":
        p, exc = answered("Memory.reserve_exact(addr, size)", mem.reserve_exact, addr, size)
        expect_ok(p is None or p == value_of(addr), f"reserve_exact({addr!r}, {size!r}) -> {p!r}")
        OWNER.track(mem, p, size)
    else:
        r, exc = answered("Memory.commit/decommit/release(addr, size)", getattr(mem, op), addr, size)
        expect_ok(r is None, f"{op} returned {r!r}")
    if isinstance(exc, (TypeError, ValueError)):
        words = {"reserve": ("hint", "size")}.get(op, ("addr", "size"))
        expect_ok(any(w in str(exc) for w in words), f"{op}({addr!r}, {size!r}): {exc!r} names no argument")


@group
def sysmem_calls(examples):
    ops = st.sampled_from(["reserve", "reserve_exact", "commit", "decommit", "release"])

    @settings(max_examples=examples, **SETTINGS)
    @given(memories(), st.lists(st.tuples(ops, addresses(), sizes), min_size=1, max_size=12))
    def prop(mem, calls):
        try:
            for op, addr, size in calls:
                _memory_op(mem, op, addr, size)
        finally:
            OWNER.reset()

    prop()


layouts_valid = st.sampled_from([
    LAYOUT_32,
    dataclasses.replace(LAYOUT_32, first_sizes=(0,)),
    dataclasses.replace(LAYOUT_32, metadata_size=0, first_sizes=(16 * MiB,), growth_step=16 * MiB),
    *([LAYOUT_64, dataclasses.replace(LAYOUT_64, first_sizes=(16 * MiB,), growth_step=16 * MiB),
       dataclasses.replace(LAYOUT_64, max_mem=2**63, first_sizes=(8192,), growth_step=8192)]
      if sysmem.NATIVE_BITS == 64 else []),
])
LAYOUT_FIELDS = [f.name for f in dataclasses.fields(Layout)]


def field_values(name):
    base = getattr(LAYOUT_32, name)
    if name in ("first_hints", "first_sizes"):
        pages = st.lists(st.integers(0, 2**12).map(lambda k: k * MiB), min_size=1, max_size=3).map(tuple)
        return st.one_of(st.just(base), pages, st.lists(ints, max_size=3).map(tuple))
    valid = {
        "page_size": st.sampled_from([4096, 8192, 65536, MiB]),
        "growth_step": st.sampled_from([8192, MiB, 256 * MiB, 2**31]),
        "metadata_size": st.sampled_from([0, 8192, 258 * MiB]),
        "strand_limit": st.sampled_from([0, 16 * MiB]),
        "max_mem": st.sampled_from([2**32 - 1, 2**31, 64 * MiB]),
    }.get(name, st.just(base))
    return st.one_of(st.just(base), valid)


def layout_fields():
    """Valid-ish values for every field, then one or two of them replaced by anything."""
    valid = st.fixed_dictionaries({n: field_values(n) for n in LAYOUT_FIELDS if n not in ("name", "address_bits", "max_mem")})
    broken = st.lists(st.tuples(st.sampled_from(LAYOUT_FIELDS), st.one_of(anything, ints)), max_size=2)
    return st.tuples(valid, broken).map(lambda vb: {**vb[0], **dict(vb[1])})


@group
def layouts(examples):
    @settings(max_examples=examples, **SETTINGS)
    @given(layout_fields(), st.sampled_from(arena.RULES),
           st.lists(arena_sizes, max_size=6))
    def prop(fields, rule, requests):
        fields.setdefault("name", "fuzz")
        fields.setdefault("address_bits", 32)
        fields.setdefault("max_mem", 2**32 - 1)
        layout, exc = answered("Layout(**fields)", Layout, **fields)
        if layout is None or layout.address_bits > sysmem.NATIVE_BITS:
            return
        # Whatever the layout says, an arena over it answers as documented.
        a, _ = answered("Arena(layout, rule, memory, start, initial_size, history)", Arena, layout, rule)
        if a is not None:
            exercise(a, requests, [])

    prop()


def exercise(a, requests, probes, spans=(), allocs=()):
    """sys_alloc, contains, views, verify and close on ``a`` under the contract; closes ``a``.

    ``spans``: ``(offset, size)`` of views asked for around the allocations
    made; ``allocs``: requests of ``alloc``. Callbacks (``CallsBack``, a
    scripted ``AnswerCallingBack``) call into ``a`` meanwhile.
    """
    global CURRENT
    made = []
    heap = isinstance(a, HeapArenas)
    # Go 1.11 bounds a request by maxAlloc, the linear arena by max_mem.
    limit = a.layout.max_alloc if heap else a.layout.max_mem
    # A copy would share the mappings: closing it would unmap what the original hands out (finding 1).
    for how in (copy.copy, copy.deepcopy, pickle.dumps):
        twin, exc = answered("copy.copy/copy.deepcopy/pickle.dumps(a manager, Crowd or ScriptedMemory)", how, a)
        expect_ok(isinstance(exc, TypeError), f"{how.__name__}({a!r}) made {twin!r}")
    CURRENT = a
    try:
        for n in requests:
            p, exc = answered("HeapArenas.sys_alloc(n)" if heap else "Arena.sys_alloc(n)", a.sys_alloc, n)
            if isinstance(exc, (TypeError, ValueError)):
                # Only for a bad n: never for a valid request the space cannot hold (that is None).
                try:
                    k = value_of(n)
                    bad = k <= 0 or k % a.layout.page_size or k > limit
                except Exception:
                    bad = True
                expect_ok(bad and " n " in f" {exc} ", f"sys_alloc({n!r}) on {a!r}: {exc!r}, but n is valid (or unnamed)")
            if p is not None:
                expect_ok(isinstance(p, int) and p % (a.layout.heap_arena_size if heap else a.layout.page_size) == 0,
                          f"sys_alloc({n!r}) -> {p!r}")
                expect_ok(a.contains(p), f"sys_alloc({n!r}) -> {p:#x}, not heap")
                poke(p, b"\xa5" * 8)
                expect_ok(peek(p, 8) == b"\xa5" * 8, "allocated memory does not keep its bytes")
                made.append((p, value_of(n)))
        for addr in probes:
            r, _ = answered("Arena.contains(addr)", a.contains, addr)
            expect_ok(r is None or isinstance(r, bool), f"contains({addr!r}) -> {r!r}")
        views = exercise_views(a, made, probes, spans, allocs)
        found, _ = answered("check.verify(a)", verify, a)
        # A Go throw is reported by verify (the manager stays usable); only legacy may be unsound otherwise.
        expect_ok(a.rule == "legacy" or all(v.kind == "throw" for v in found or ()), f"{a!r}: {found}")
        answered("check.verify_or_raise(a)", verify_or_raise, a)
        if views:
            # As mmap: no close while a view is alive, and nothing unmapped.
            _, exc = answered("Arena.close()", a.close)
            expect_ok(isinstance(exc, BufferError) and not a.closed, f"close() with {len(views)} live views: {exc!r}")
            for v in views:
                v[0] = v[-1] = 0x3C
            for v in views:
                v.release()
    finally:
        CURRENT = None
        answered("Arena.close()", a.close)
    answered("Arena.close()", a.close)
    for call, args in (("HeapArenas.sys_alloc(n)" if heap else "Arena.sys_alloc(n)", (a.sys_alloc, PAGE)), ("Arena.contains(addr)", (a.contains, 0)),
                       ("check.verify(a)", (verify, a)), ("Arena.view(addr, size) / alloc(n)", (a.view, made[0][0] if made else 0)),
                       ("Arena.view(addr, size) / alloc(n)", (a.alloc, PAGE))):
        _, exc = answered(call, *args)
        expect_ok(isinstance(exc, ArenaClosed), f"{call} after close: {exc!r}")


def exercise_views(a, made, probes, spans, allocs=()):
    """Views at the probes and around the allocations, and ``alloc``'s, written at both ends; returns those made."""
    name = "Arena.view(addr, size) / alloc(n)"
    asked = [(addr, None) for addr in probes]
    asked += [(made[i % len(made)][0] + offset, size) for i, (offset, size) in enumerate(spans) if made and isinstance(offset, int)]
    views = []
    for addr, size in asked:
        v, exc = answered(name, a.view, addr, size)
        if v is None:
            if isinstance(exc, (TypeError, ValueError)):
                expect_ok(any(w in str(exc) for w in ("addr", "size", "allocation", "committed")), f"view({addr!r}, {size!r}): {exc!r}")
            continue
        addr, size = value_of(addr), None if size is None else value_of(size)
        expect_ok(isinstance(v, memoryview) and v.format == "B" and not v.readonly and len(v) > 0 and size in (None, len(v)),
                  f"view({addr:#x}, {size!r}) -> {v!r}")
        # Inside what the manager handed out (HeapArenas rounds a request up to whole heap arenas).
        expect_ok(any(p <= addr and addr + len(v) <= p + n for p, n in a.allocations) or getattr(a, "history", None) is not None,
                  f"view({addr:#x}, {size!r}) -> {len(v):#x} bytes, outside every allocation {made}")
        q, _ = answered("Arena.address_of(view)", a.address_of, v)
        expect_ok(q == addr, f"address_of(view({addr:#x})) -> {q!r}")
        v[0] = v[-1] = 0x5A
        views.append(v)
    for n in (PAGE, *allocs):
        v, _ = answered(name, a.alloc, n)
        if v is not None:
            # As long as the n it read (finding 2: read twice, a 1 GiB view of 8 KiB); its last byte is written.
            expect_ok(len(v) == value_of(n), f"alloc({n!r}) -> a view of {len(v):#x} bytes")
            v[0] = v[-1] = 0x5A
            views.append(v)
    for bad in (0, b"x", memoryview(bytearray(1))):
        answered("Arena.address_of(view)", a.address_of, bad)
    return views


def manager_memories():
    """A memory layer for a manager: None (the default), a layer, or one scripted with answers."""
    return mostly(st.one_of(
        st.just(None), memories(),
        st.builds(lambda m, ans: ("scripted", m, ans), memories(),
                  st.lists(st.one_of(st.none(), st.just(NO_ROOM), errnos.map(Fail),
                                     st.builds(AnswerCallingBack, st.sampled_from(ACTIONS), st.booleans())), max_size=6)),
    ), 6)


def view_spans():
    """``(offset, size)`` of views asked for around a manager's allocations."""
    return st.lists(st.tuples(mostly(st.one_of(st.integers(0, 64), st.integers(-2 * PAGE, 4 * PAGE)), 6),
                              mostly(st.one_of(st.none(), st.integers(-1, 4 * PAGE)), 6)), max_size=4)


def managed(name, memory, make, requests, probes, spans, allocs=()):
    """Make a manager with ``make(memory)`` under the contract ``name``, exercise it, and check it left no mapping."""
    if isinstance(memory, tuple) and memory[:1] == ("scripted",):
        memory = ScriptedMemory(memory[1], memory[2])
    before = reservations()
    m, _ = answered(name, make, memory)
    if m is not None:
        exercise(m, requests, probes, spans, allocs)
    leaked = reservations() - before
    expect_ok(not leaked, f"mappings left behind: {sorted(leaked)}")


@group
def arenas(examples):
    memory_choice = manager_memories()
    layout_choice = mostly(layouts_valid, 6)
    start_choice = st.integers(0, 8).flatmap(lambda k: st.none() if k > 2 else anything if k == 0 else st.sampled_from(
        [0x40000000, 0x80000000, 0xC0000000, 0xF0000000, 0xFFE00000, 0x3000000000]))
    size_choice = st.integers(0, 8).flatmap(lambda k: st.none() if k > 2 else anything if k == 0 else st.sampled_from(
        [0, 8192, 16 * MiB, 128 * MiB, 2**32 - 8192, 2**39 - 8192]))

    history_choice = mostly(st.sampled_from([None, None, 0, 1, 5]), 6)
    spans = view_spans()

    @settings(max_examples=examples, **SETTINGS)
    @given(layout_choice, mostly(st.sampled_from(arena.RULES), 6), memory_choice, start_choice, size_choice,
           history_choice, st.lists(arena_sizes, max_size=12), st.lists(addresses(), max_size=4), spans,
           st.lists(arena_sizes, max_size=2))
    def prop(layout, rule, memory, start, initial_size, history, requests, probes, spans, allocs):
        managed("Arena(layout, rule, memory, start, initial_size, history)", memory,
                lambda m: Arena(layout, rule, m, start, initial_size, history), requests, probes, spans, allocs)

    prop()


@group
def heap_arenas(examples):
    memory_choice = manager_memories()
    start_choice = st.integers(0, 8).flatmap(lambda k: st.none() if k > 2 else anything if k == 0 else st.sampled_from(
        [0x400000, 0x40000000, 0x80000000, 0xFFC00000, 0xC000000000, 0x7FC000000000, 0x7FFFFFFFF000]))
    size_choice = st.integers(0, 8).flatmap(lambda k: st.none() if k > 2 else anything if k == 0 else st.sampled_from(
        [0, 4 * MiB, 128 * MiB, 2**32 - 4 * MiB]))
    spans = view_spans()

    @settings(max_examples=examples, **SETTINGS)
    @given(mostly(st.sampled_from([LAYOUT_32, LAYOUT_64] if sysmem.NATIVE_BITS == 64 else [LAYOUT_32]), 6),
           memory_choice, start_choice, size_choice, st.lists(arena_sizes, max_size=8), st.lists(addresses(), max_size=4),
           spans, st.lists(arena_sizes, max_size=2))
    def prop(layout, memory, start, initial_size, requests, probes, spans, allocs):
        managed("HeapArenas(layout, memory, start, initial_size)", memory,
                lambda m: HeapArenas(layout, m, start, initial_size), requests, probes, spans, allocs)

    prop()


THREAD_VIEWS = 300  # views per thread and example: more sizes than the shared cache of view types keeps


@group
def threads(examples):
    """Several managers on several threads at once (two threads may share one), each call under the contract.

    Views of hundreds of sizes churn the cache of view types every manager
    shares (finding 5: evicted without a lock, a bare KeyError within a
    second); threads switch as often as the interpreter allows.
    """
    kinds = st.sampled_from(["arena"] + ["heap"] + (["arena64", "heap64"] if sysmem.NATIVE_BITS == 64 else []))

    @settings(max_examples=max(1, examples // 10), **SETTINGS)
    @given(st.lists(kinds, min_size=2, max_size=4), st.integers(2, 4), st.integers(1, 2**16))
    def prop(kinds, count, step):
        makers = {"arena": lambda: Arena(LAYOUT_32 if sysmem.NATIVE_BITS == 32 else dataclasses.replace(
                      LAYOUT_32, first_sizes=(64 * MiB,))),
                  "heap": lambda: HeapArenas(LAYOUT_32, initial_size=0),
                  "arena64": lambda: Arena(LAYOUT_64), "heap64": lambda: HeapArenas(LAYOUT_64)}
        managers = [answered("Arena(layout, rule, memory, start, initial_size, history)", makers[k])[0] for k in kinds]
        managers = [m for m in managers if m is not None]
        errors: list[BaseException] = []

        def work(k: int, m) -> None:
            try:
                p, _ = answered("HeapArenas.sys_alloc(n)", m.sys_alloc, 16 * MiB)
                for i in range(THREAD_VIEWS if p is not None else 0):
                    size = (1 + (i * step + k * 104729) % 2048) * 8192
                    v, _ = answered("Arena.view(addr, size) / alloc(n)", m.view, p, size)
                    expect_ok(v is not None and len(v) == size, f"view({p:#x}, {size:#x}) -> {v!r}")
                    v[-1] = k
                    v.release()
                    if i % 64 == 0:
                        answered("Arena.contains(addr)", m.contains, p)
                        w, _ = answered("Arena.view(addr, size) / alloc(n)", m.alloc, 8192)
                        if w is not None:
                            w.release()
            except BaseException as exc:  # reported below
                errors.append(exc)

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            workers = [threading.Thread(target=work, args=(k, managers[k % len(managers)]))
                       for k in range(max(count, len(managers)))]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
        finally:
            sys.setswitchinterval(interval)
            for m in managers:
                answered("Arena.close()", m.close)
        for exc in errors:
            raise exc if isinstance(exc, Broken) else Broken(f"a thread raised {exc!r}") from exc

    prop()


@group
def testing_helpers(examples):
    ops = st.sampled_from(["reserve", "reserve_exact", "commit", "decommit", "release"])

    @settings(max_examples=examples, **SETTINGS)
    @given(st.one_of(memories(), anything), st.lists(anything, max_size=3), st.sampled_from(["scripted", "crowd", "peek"]),
           st.lists(st.tuples(ops, addresses(), sizes), max_size=4), mostly(ops, 2), mostly(errnos, 2),
           st.one_of(addresses(), st.integers(-16, 80).map(lambda k: OWNER.buffer[0] + k * 1024)),
           st.one_of(sizes, st.integers(0, 64), st.integers(0, 2**17)), mostly(st.binary(max_size=2048)))
    def prop(inner, answers, what, calls, fail_op, code, addr, size, data):
        try:
            if what == "scripted":
                s, _ = answered("ScriptedMemory(inner, answers)", ScriptedMemory, inner, answers)
                if s is None:
                    s, _ = answered("ScriptedMemory(inner, answers)", ScriptedMemory, OWNER.memory32 if sysmem.NATIVE_BITS == 64 else OWNER.memory)
                answered("ScriptedMemory.fail_next(op, errno)", s.fail_next, fail_op, code)
                twin, exc = answered("copy.copy/copy.deepcopy/pickle.dumps(a manager, Crowd or ScriptedMemory)", copy.copy, s)
                expect_ok(isinstance(exc, TypeError), f"copy.copy({s!r}) made {twin!r}")
                name = "ScriptedMemory.reserve/reserve_exact/commit/decommit/release"
                for op, a, n in calls:
                    if op in ("commit", "decommit", "release") and not OWNER.may_touch(a, n):
                        continue
                    p, _ = answered(name, getattr(s, op), a, n)
                    if op.startswith("reserve"):
                        OWNER.track(s, p, n)
            elif what == "crowd":
                mem = OWNER.memory32 if sysmem.NATIVE_BITS == 64 else OWNER.memory
                crowd = Crowd(mem)
                try:
                    twin, exc = answered("copy.copy/copy.deepcopy/pickle.dumps(a manager, Crowd or ScriptedMemory)", copy.copy, crowd)
                    expect_ok(isinstance(exc, TypeError), f"copy.copy(a Crowd) made {twin!r}")
                    name = "Crowd.occupy(addr, size) / Crowd.fill(low, high, holes)"
                    answered(name, crowd.occupy, addr, size)
                    # What release gives back is what was mapped: sizes read once, kept as ints.
                    expect_ok(all(type(p) is int and type(n) is int for p, n in crowd.blocks), f"Crowd.blocks {crowd.blocks!r}")
                    low = addr if not isinstance(addr, int) else max(addr, 0x40000000 - 64 * MiB)
                    answered(name, crowd.fill, low, low if not isinstance(low, int) else min(low + 64 * MiB, 0x40000000 + 64 * MiB), answers)
                finally:
                    crowd.release()
            else:
                # peek/poke: any argument, since they now refuse what is not mapped.
                r, _ = answered("testing.peek(addr, size) / poke(addr, data)", peek, addr, size)
                expect_ok(r is None or (isinstance(r, bytes) and len(r) == value_of(size)), f"peek -> {r!r}")
                if OWNER.may_touch(addr, len(data) if isinstance(data, bytes) else 1):
                    answered("testing.peek(addr, size) / poke(addr, data)", poke, addr, data)
        finally:
            OWNER.reset()

    prop()


# -- a user's rule whose parts change between reads ------------------------------------------
# An arena reads its rule once and decides by the values it checked. A rule that answers
# differently each time a part is read must never get past the check with the pair it forbids
# (a separate cursor with a fallback that raises arena_end): that pair commits memory between the
# arena's block and a fallback mapping far above, memory the arena does not own.

CONTRACT.update({
    "Arena(layout, shifting_rule, memory, start, initial_size)": (
        (TypeError, ValueError, ReservationFailed, OSError, RuleFailed, RuntimeError),
        "an Arena; ValueError for the forbidden pair; RuleFailed if a part raises; RuntimeError: an answer's spot is taken"),
    "Arena.sys_alloc(n) under a shifting rule": (
        (ArenaClosed, OSError, RuleFailed, RuntimeError), "an address or None; RuleFailed if refusal answers neither None nor a str"),
})
RULE_PARTS = ("separate_cursor", "fallback_on_no_room", "fallback_raises_end")


class ShiftingRule(arena.Rule):
    """Each part read from a script, one value per read (the last one repeats)."""

    def __init__(self, script):
        self.script, self.reads = script, {}

    def _next(self, part):
        i = self.reads.get(part, 0)
        self.reads[part] = i + 1
        values = self.script[part]
        return values[min(i, len(values) - 1)]

    separate_cursor = property(lambda self: self._next("separate_cursor"))
    fallback_on_no_room = property(lambda self: self._next("fallback_on_no_room"))
    fallback_raises_end = property(lambda self: self._next("fallback_raises_end"))

    def refusal(self, bounds, p, p_size, layout):
        return self._next("refusal")

    def __repr__(self):
        return f"ShiftingRule({self.script})"


def shifting_scripts():
    """Each part: a value that holds, or turns after 1-4 reads; refusal: what it answers, call by call."""
    part = st.tuples(st.booleans(), st.integers(0, 4)).map(lambda vk: [vk[0]] * vk[1] + [not vk[0]] if vk[1] else [vk[0]])
    refusals = st.lists(st.sampled_from(["no", "no", "no", None, 0, b"no"]), min_size=1, max_size=3)
    return st.fixed_dictionaries({**dict.fromkeys(RULE_PARTS, part), "refusal": refusals})


@group
def shifting_rules(examples):
    """The arena's first block ends where the 32-bit sandbox (owned by this process, PROT_NONE) starts; its
    growth is answered low, its fallback high. Whatever the rule says, and however often, the sandbox stays
    PROT_NONE and verify finds no allocation in memory the arena did not make."""
    layout = dataclasses.replace(LAYOUT_32, metadata_size=8192, first_sizes=(16 * MiB,), growth_step=16 * MiB)
    mem = OWNER.memory32 if sysmem.NATIVE_BITS == 64 else OWNER.memory
    sandbox, size, _ = OWNER.sandboxes[0]

    page = layout.page_size

    @settings(max_examples=examples, **SETTINGS)
    # A page, then a request the block cannot hold (growth answered low, refused: a fallback high),
    # then one that the forbidden pair would commit from the block's end into the sandbox; then any.
    @given(shifting_scripts(), st.lists(st.sampled_from([page, 16 * MiB, 16 * MiB + page]), max_size=2).map(
        lambda more: [page, 16 * MiB, 16 * MiB, *more]))
    def prop(script, requests):
        from arena.harness.hunt import free_spot

        before = reservations()
        low = free_spot(mem, 0x10000000, sandbox - 64 * MiB, 32 * MiB, 0.0)
        high = free_spot(mem, 0xB0000000, 0xF0000000, 32 * MiB, 0.0)
        memory = ScriptedMemory(mem, [None, low, high])
        try:
            a, _ = answered("Arena(layout, shifting_rule, memory, start, initial_size)", Arena, layout,
                            ShiftingRule(script), memory, sandbox - 16 * MiB, 16 * MiB)
            if a is None:
                return
            try:
                for n in requests:
                    answered("Arena.sys_alloc(n) under a shifting rule", a.sys_alloc, n)
                foreign = [v for v in verify(a) if v.kind == "foreign"]
                expect_ok(not foreign, f"{script}: {foreign}")
                touched = [m for m in sysmem.mappings() if m.start < sandbox + size and sandbox < m.end and m.perms != "---p"]
                expect_ok(not touched, f"{script}: the sandbox it does not own became {touched}")
            finally:
                a.close()
            leaked = reservations() - before
            expect_ok(not leaked, f"mappings left behind: {sorted(leaked)}")
        finally:
            OWNER.reset()

    prop()


def selftest_crash(examples):
    """Proof the harness sees a crash: read an unmapped page."""
    import ctypes

    ctypes.string_at(4096, 1)  # page 1: never mapped


def main(argv=None) -> int:
    global OWNER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--selftest-crash", action="store_true")
    parser.add_argument("--stats", action="store_true", help="count the answers of each callable")
    parser.add_argument("--hang-seconds", type=float, default=180,
                        help="a group still running after this long is a hang (a deadlock, say): every thread's stack, exit 1")
    parser.add_argument("groups", nargs="*", default=list(GROUPS))
    args = parser.parse_args(argv)
    if args.selftest_crash:
        selftest_crash(0)
    OWNER = Owner()
    print(f"backend {type(OWNER.memory).__name__}; contract: {len(CONTRACT)} callables", flush=True)
    failed = False
    for name in args.groups:
        faulthandler.dump_traceback_later(args.hang_seconds, exit=True)
        try:
            GROUPS[name](args.examples)
            print(f"{name}: ok", flush=True)
        except Exception:
            failed = True
            print(f"{name}: CONTRACT BROKEN", flush=True)
            traceback.print_exc()
        finally:
            faulthandler.cancel_dump_traceback_later()
    for addr, size, mem in OWNER.sandboxes:
        mem.release(addr, size)
    if args.stats:
        for key in sorted(STATS):
            print(f"  {STATS[key]:6d}  {key}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
