"""Calls back into a manager from inside one of its calls: a ReentrantCall, never a deadlock; another thread just waits.

Each case runs in a process of its own with a timeout: a deadlock fails the test instead of hanging pytest.
"""
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from arena import sysmem

LAYOUTS = ["SMALL32"] + (["SMALL64"] if sysmem.NATIVE_BITS == 64 else [])
CALLS = ["sys_alloc", "alloc", "contains", "view", "close", "stats", "committed_runs", "verify", "held", "save_trace"]
# The call the error names: alloc calls sys_alloc first; HeapArenas has arenas where Arena has committed_runs.
NAMED = {"alloc": "sys_alloc", "committed_runs": "(committed_runs|arenas)"}

HEADER = f"""
import ctypes, os, re, sys, threading
ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX: a thread's malloc arena is no leak of ours (see conftest)
sys.path.insert(0, {str(Path(__file__).parent)!r})
import arena
from arena import sysmem
from arena.harness.check import verify
from arena.policy.rules import RuleFailed
from arena.spaces import NO_ROOM, ScriptedMemory, reservations
from hardening_util import SMALL32, SMALL64

def call_back(m, name):
    '''One public call on m, as a callback would make it.'''
    if name == "verify":
        return verify(m)
    if name == "held":
        with m.held():
            return m.regions
    if name == "save_trace":
        return m.save_trace(os.devnull)
    if name == "committed_runs" and isinstance(m, arena.HeapArenas):
        name = "arenas"
    if name in ("stats", "committed_runs", "arenas", "hints"):
        return getattr(m, name)
    args = {{"sys_alloc": (8192,), "alloc": (8192,), "contains": (0,), "view": (0,)}}.get(name, ())
    return getattr(m, name)(*args)

def fill(a):
    '''Allocate what is left of the arena's block: its next sys_alloc grows.'''
    rest = (a.arena_end - a.arena_alloc) // a.layout.page_size * a.layout.page_size
    assert rest == 0 or a.sys_alloc(rest) is not None

def answered_by(kind, answer):
    '''An Arena (its first block full) or HeapArenas (32-bit: no pre-reservation) of this process's
    width, whose next sys_alloc asks the kernel, and answer answers.'''
    layout = arena.native_layout()
    if kind == "Arena":
        m = arena.Arena(SMALL32 if layout.address_bits == 32 else SMALL64,
                        memory=ScriptedMemory(sysmem.default(), [None, answer]))
        fill(m)
        return m
    memory = ScriptedMemory(sysmem.default(), [None, answer] if layout.address_bits == 32 else [answer])
    return arena.HeapArenas(layout, memory=memory, **({{"initial_size": 0}} if layout.address_bits == 32 else {{}}))
"""

# The process each case starts from: HEADER imported once, then a fork per case, which runs it as
# `python -c HEADER+case` would (its output to a file; an exception a traceback and exit status 1; a normal
# end Python's, which waits for the case's threads); the fork's pid, then its exit code, a line each.
FORKS = HEADER + """
import struct, traceback
while True:
    head = sys.stdin.buffer.read(4)
    if not head:
        break
    output, code = sys.stdin.buffer.read(struct.unpack("I", head)[0]).decode().split("\\0", 1)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(0)
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        exec(compile(code, "<case>", "exec"))
        sys.exit(0)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""

FOOTER = """
assert reservations() == before, sorted(reservations() - before)
print("ok")
"""


_forks: list[subprocess.Popen] = []


@pytest.fixture(autouse=True, scope="module")
def forks():
    """The process the cases fork from (FORKS), for this module's tests; gone after them."""
    yield
    for server in _forks:
        server.stdin.close()
        server.wait(timeout=60)
        server.stdout.close()
    _forks.clear()


def run(code: str, timeout: float = 60) -> None:
    if not _forks:
        _forks.append(subprocess.Popen([sys.executable, "-c", FORKS], stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    server = _forks[0]
    with tempfile.TemporaryDirectory() as folder:
        _case(server, code, Path(folder) / "case.txt", timeout)


def _case(server: subprocess.Popen, code: str, output: Path, timeout: float) -> None:
    request = f"{output}\0before = reservations()\n{textwrap.dedent(code)}{FOOTER}".encode()
    server.stdin.write(len(request).to_bytes(4, sys.byteorder) + request)
    server.stdin.flush()
    pid = int(server.stdout.readline())
    if not select.select([server.stdout], [], [], timeout)[0]:
        os.kill(pid, signal.SIGKILL)
        server.stdout.readline()
        pytest.fail(f"no end after {timeout} s (a deadlock?): {output.read_text()}")
    returncode = int(server.stdout.readline())
    text = output.read_text()
    assert returncode >= 0, f"died of {signal.Signals(-returncode).name}: {text}"
    assert returncode == 0 and text.endswith("ok\n"), text


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", CALLS)
def test_a_rule_calling_back_fails_its_sys_alloc_cleanly(layout, name):
    run(f"""
        class CallsBack:
            separate_cursor = fallback_on_no_room = fallback_raises_end = False
            asked = 0
            def refusal(self, bounds, p, p_size, layout):
                self.asked += 1
                if self.asked == 1:  # later growths (the kernel's own answers) are taken
                    call_back(a, {name!r})
                return None

        layout = {layout}
        answered = []
        def away(hint, size):  # the growth in the first free room past arena_end, where every rule is asked
            for lo, hi in sysmem.free_gaps(sysmem.mappings(), hint + layout.page_size, 1 << layout.address_bits):
                lo = -(-lo // layout.page_size) * layout.page_size
                if hi - lo >= size:
                    answered.append(lo)
                    return lo
        memory = ScriptedMemory(sysmem.default(layout.address_bits), [None, away])
        a = arena.Arena(layout, CallsBack(), memory)
        fill(a)
        try:
            a.sys_alloc(8192)  # grows: the region away from arena_end asks the rule
            sys.exit("no error")
        except RuleFailed as exc:  # the rule failed, and says why: the call back it made
            assert isinstance(exc.__cause__, arena.ReentrantCall), repr(exc.__cause__)
            assert re.search("raised ReentrantCall in refusal\\(\\): arena: re-entrant call to {NAMED.get(name, name)} ", str(exc)), exc
        last, (away,) = a.events[-1], answered
        assert (last.returned, last.verdict) == (away, "rejected"), last  # given back, as any failed rule's
        assert not [m for m in sysmem.mappings() if m.start < away + layout.growth_step and away < m.end]
        assert verify(a) == [] and a.sys_alloc(8192) is not None  # the arena goes on
        a.close()
    """)


@pytest.mark.parametrize("manager", ["Arena", "HeapArenas"])
@pytest.mark.parametrize("name", CALLS)
def test_a_scripted_answer_calling_back_fails_the_call_cleanly(manager, name):
    run(f"""
        def answer(hint, size):
            call_back(m, {name!r})
            return None
        m = answered_by({manager!r}, answer)
        regions, allocations = m.regions, m.allocations
        try:
            m.sys_alloc(8192)  # asks the memory layer for a new region: the answer calls back
            sys.exit("no error")
        except arena.ReentrantCall as exc:
            assert re.search("re-entrant call to {NAMED.get(name, name)} ", str(exc)), exc
        assert (m.regions, m.allocations) == (regions, allocations)  # nothing taken
        assert verify(m) == [] and m.sys_alloc(8192) is not None and not m.closed
        m.close()
    """)


@pytest.mark.parametrize("manager", ["arena", "heap"])
@pytest.mark.parametrize("name", ["verify", "held", "save_trace"])
def test_a_read_of_the_whole_manager_from_inside_a_call_on_an_empty_one_is_a_reentrant_call(manager, name):
    # Nothing allocated yet: verify has no allocation to ask contains of, and the check at its door is the only
    # one (finding of the fuzz target: verify returned normally from inside sys_alloc on an empty arena).
    run(f"""
        seen = []
        def answer(hint, size):
            try:
                call_back(m, {name!r})
                seen.append("returned")
            except arena.ReentrantCall as exc:
                seen.append(exc)
            return None
        if {manager!r} == "arena":
            layout = SMALL32 if arena.native_layout().address_bits == 32 else SMALL64
            m = arena.Arena(layout, memory=ScriptedMemory(sysmem.default(layout.address_bits), [None, answer]))
            request = layout.first_sizes[0] * 2  # more than the first block holds: a growth, answered by answer
        else:
            # 64-bit heap arenas reserve nothing when made: their first answer is the first hint's.
            m = answered_by("HeapArenas", answer)
            request = m.layout.heap_arena_size
        assert m.allocations == []
        assert m.sys_alloc(request) is not None  # the kernel's own answer, after the callback
        (exc,) = seen
        assert isinstance(exc, arena.ReentrantCall) and re.search("re-entrant call to {name} ", str(exc)), exc
        assert verify(m) == []
        m.close()
    """)


def test_a_callback_may_catch_the_error_and_the_outer_call_succeeds():
    run("""
        seen = []
        def answer(hint, size):
            try:
                a.close()
            except arena.ReentrantCall as exc:
                seen.append(exc)
            return None
        layout = SMALL32 if arena.native_layout().address_bits == 32 else SMALL64
        a = arena.Arena(layout, memory=ScriptedMemory(sysmem.default(layout.address_bits), [None, answer]))
        fill(a)
        assert a.sys_alloc(8192) is not None and len(seen) == 1 and not a.closed
        a.close()
    """)


@pytest.mark.parametrize("manager", ["Arena", "HeapArenas"])
@pytest.mark.parametrize("name", ["sys_alloc", "contains", "close", "view", "stats"])
def test_an_index_calling_back_runs_before_the_lock(manager, name):
    # Arguments are converted at the door, before the lock: the callback finds the manager free.
    run(f"""
        class N:
            def __index__(self):
                try:
                    call_back(m, {name!r})
                except ValueError:
                    pass  # view(0): no allocation there
                return 8192
        m = arena.{manager}(arena.native_layout())
        try:
            p = m.sys_alloc(N())
            assert {name!r} != "close" and m.contains(p), p
        except arena.ArenaClosed:
            assert {name!r} == "close"  # the callback closed it: the outer call finds it closed
        m.close()
    """)


RELEASE_CALLS_BACK = """
    class CallsBackOnce(ScriptedMemory):
        armed = False
        def release(self, addr, size):
            if self.armed:
                self.armed = False
                a.contains(0)  # inside the manager's call: ReentrantCall
            super().release(addr, size)
    layout = SMALL32 if arena.native_layout().address_bits == 32 else SMALL64
"""


def test_a_memory_layer_calling_back_from_release_in_close_leaves_nothing_behind():
    run(textwrap.dedent(RELEASE_CALLS_BACK) + textwrap.dedent("""
        a = arena.Arena(layout, memory=CallsBackOnce(sysmem.default(layout.address_bits)))
        for _ in range(3):
            a.sys_alloc(layout.growth_step)  # regions to give back
        a.memory.armed = True
        try:
            a.close()
            sys.exit("no error")
        except arena.ReentrantCall:
            pass
        assert a.closed and a.regions == []  # the others were given back; the refused one is kept
        a.close()  # tries it again
    """))


def test_a_memory_layer_calling_back_from_release_in_sys_alloc_keeps_the_region_on_the_books():
    # The fixed rule refuses a growth below arena_end: the region is given back at once.
    run(textwrap.dedent(RELEASE_CALLS_BACK) + textwrap.dedent("""
        def below(hint, size):
            gaps = [(lo, hi) for lo, hi in sysmem.free_gaps(sysmem.mappings(), 1 << 24, a.arena_end) if hi - lo >= size]
            return (gaps[-1][1] - size) // 8192 * 8192
        a = arena.Arena(layout, memory=CallsBackOnce(sysmem.default(layout.address_bits), [None, below]))
        fill(a)
        a.memory.armed = True
        try:
            a.sys_alloc(8192)
            sys.exit("no error")
        except arena.ReentrantCall:
            pass
        assert a.events[-1].verdict == "rejected" and verify(a) == []
        a.close()  # gives back the refused region too
    """))


@pytest.mark.parametrize("manager", ["Arena", "HeapArenas"])
def test_another_thread_waits_for_the_lock_as_before(manager):
    run(f"""
        inside, waiting, results = threading.Event(), threading.Event(), []
        def answer(hint, size):
            inside.set()
            waiting.wait(10)
            return None
        def other():
            inside.wait(10)
            waiting.set()
            results.append(m.contains(0))  # waits for the lock: not a re-entrant call
        m = answered_by({manager!r}, answer)
        t = threading.Thread(target=other)
        t.start()
        assert m.sys_alloc(8192) is not None
        t.join(10)
        assert len(results) == 1 and isinstance(results[0], bool), results
        m.close()
    """)


@pytest.mark.parametrize("manager", ["Arena", "HeapArenas"])
def test_another_threads_verify_waits_and_reads_the_call_done(manager):
    # verify holds the manager for all its checks: from another thread it starts once the call ends, and
    # never reads an allocation list, regions and history of a call half done.
    run(f"""
        inside, waiting, results = threading.Event(), threading.Event(), []
        def answer(hint, size):
            inside.set()
            waiting.wait(10)
            threading.Event().wait(0.2)  # the other thread's verify is at the door meanwhile
            return None
        def other():
            inside.wait(10)
            waiting.set()
            found = verify(m)
            results.append((found, len(m.allocations)))
        m = answered_by({manager!r}, answer)
        made = len(m.allocations)
        t = threading.Thread(target=other)
        t.start()
        assert m.sys_alloc(8192) is not None
        t.join(10)
        assert results == [([], made + 1)], results
        m.close()
    """)
