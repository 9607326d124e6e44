"""peek and poke: copies through a pipe that refuse, never crash, and never write half.

Each refused range ends in a page that is unmapped, PROT_NONE or read-only,
after 0, 1 or 20 good pages (20 pages: past the first 64 KiB the copy moves at
a time). A refused poke must leave the good pages' bytes as they were.
"""
import contextlib
import ctypes
import fcntl
import mmap
import os
import random
import threading

import pytest

from arena import sysmem
from arena.spaces.peek import _Pipe, peek, poke
from arena.sysmem._ctypes import _PROT_NONE
from hardening_util import _mmap, _mprotect, _munmap

PAGE = mmap.PAGESIZE
KiB = 1 << 10
RW = mmap.PROT_READ | mmap.PROT_WRITE


# peek/poke over mappings of its own (mmap, not a backend): no memory backend (conftest checks).
pytestmark = pytest.mark.backend_independent


@contextlib.contextmanager
def mapping(size, prot=RW):
    p = _mmap(None, size, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert p not in (None, (1 << sysmem.NATIVE_BITS) - 1)
    try:
        yield p
    finally:
        _munmap(p, size)


def is_mapped(addr):
    return any(m.start <= addr < m.end for m in sysmem.mappings())


def pattern(size, seed):
    return random.Random(seed).randbytes(size)


@contextlib.contextmanager
def good_then_bad(pages, bad):
    """``pages`` read-write pages of known bytes, then one page that is ``bad``; yields (start, bytes)."""
    size = (pages + 1) * PAGE
    with mapping(size) as p:
        data = pattern(size, pages)
        ctypes.memmove(p, data, size)
        last = p + pages * PAGE
        if bad == "unmapped":
            # A one-page hole: nothing this test does maps that small, and is_mapped checks.
            assert _munmap(last, PAGE) == 0
        else:
            assert _mprotect(last, PAGE, mmap.PROT_READ if bad == "read-only" else _PROT_NONE) == 0
        yield p, data
        assert bad != "unmapped" or not is_mapped(last), "the hole was filled: the test proved nothing"


BAD = ["unmapped", "PROT_NONE", "read-only"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("pages", [0, 1, 20])
def test_a_refused_poke_changes_no_byte(pages, bad):
    with good_then_bad(pages, bad) as (p, data):
        size = len(data)
        with pytest.raises(ValueError, match="not all mapped writable"):
            poke(p, b"\xee" * size)
        readable = size if bad == "read-only" else size - PAGE
        assert ctypes.string_at(p, readable) == data[:readable]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("pages", [0, 1, 20])
def test_peek_refuses_what_is_not_readable(pages, bad):
    with good_then_bad(pages, bad) as (p, data):
        if bad == "read-only":
            assert peek(p, len(data)) == data
        else:
            with pytest.raises(ValueError, match="not all mapped readable"):
                peek(p, len(data))
            assert peek(p, len(data) - PAGE) == data[: len(data) - PAGE]


def test_copies_larger_than_a_pipe_at_any_alignment():
    size = 5 * 64 * KiB + 123
    with mapping(size + 2 * PAGE) as p:
        data = pattern(size, 1)
        poke(p + 7, data)
        assert peek(p + 7, size) == data
        assert ctypes.string_at(p, size + 2 * PAGE) == bytes(7) + data + bytes(2 * PAGE - 7)


def test_a_pipe_with_less_room_only_makes_copies_shorter():
    # The kernel gives a user over its pipe quota one-page pipes: a write of
    # 64 KiB then moves 4 KiB, which is not a fault.
    pipe = _Pipe.take()
    fcntl.fcntl(pipe.w, fcntl.F_SETPIPE_SZ, PAGE)
    pipe.keep()
    try:
        with mapping(64 * KiB + 3 * PAGE) as p:
            data = pattern(64 * KiB + 2 * PAGE, 2)
            poke(p + 1, data)
            assert peek(p + 1, len(data)) == data
        assert _Pipe._idle.pipe is pipe and fcntl.fcntl(pipe.r, fcntl.F_GETPIPE_SZ) == PAGE
    finally:
        _Pipe._idle.pipe = None


def test_a_failed_copy_leaves_no_bytes_for_the_next():
    with good_then_bad(1, "read-only") as (p, data):
        with pytest.raises(ValueError):
            poke(p + PAGE, b"\xee" * PAGE)  # the page's bytes went into the pipe, then failed to land
        assert peek(p, 16) == data[:16]


def pipes():
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("pipe:"):
                out.add(target)
    return out


def test_threads_copy_through_pipes_of_their_own_and_close_them():
    before = pipes()
    seen, errors = set(), []

    def work(k):
        with mapping(PAGE) as p:
            for _ in range(50):
                poke(p, bytes([k]) * PAGE)
                if peek(p, PAGE) != bytes([k]) * PAGE:
                    errors.append(k)
            seen.add(id(_Pipe._idle.pipe))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and None not in seen
    assert pipes() <= before, "a thread's pipe outlived it"


def test_a_forked_child_copies_through_a_pipe_of_its_own():
    with mapping(PAGE) as p:
        poke(p, b"parent")
        parent = _Pipe._idle.pipe
        assert parent is not None
        pid = os.fork()
        if pid == 0:  # the child: its own pipe, and the copies still work
            ok = _Pipe.take() is not parent
            poke(p, b"child!")
            os._exit(0 if ok and peek(p, 6) == b"child!" else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert peek(p, 6) == b"parent"
