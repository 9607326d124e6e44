"""ScriptedMemory and Crowd: adversarial answers made of real mappings."""
import errno

import pytest

from arena import spaces, sysmem
from arena.spaces import NO_ROOM, Crowd, Fail, ScriptedMemory

MiB = 1 << 20


@pytest.fixture
def inner():
    return sysmem.default(address_bits=32)


def mapped(addr, size):
    return any(m.start <= addr and addr + size <= m.end for m in sysmem.mappings())


def test_an_address_answer_is_really_mapped_there(inner):
    s = ScriptedMemory(inner, [0x10000000])
    p = s.reserve(0x70000000, MiB)
    try:
        assert p == 0x10000000 and mapped(p, MiB)
        assert s.calls == [("reserve", 0x70000000, MiB, 0x10000000)]
    finally:
        s.release(p, MiB)
    assert s.calls[-1].op == "release"


def test_an_occupied_answer_is_a_runtime_error_naming_the_range(inner):
    blocker = inner.reserve_exact(0x10000000, MiB)
    try:
        s = ScriptedMemory(inner, [0x10000000])
        with pytest.raises(RuntimeError, match=r"\[0x10000000, 0x10100000\) is not free"):
            s.reserve(0, MiB)
    finally:
        inner.release(blocker, MiB)


def test_none_asks_the_kernel_with_the_callers_hint_and_past_the_end_passes_through(inner):
    s = ScriptedMemory(inner, [None])
    got = [s.reserve(0x20000000, MiB), s.reserve(0x30000000, MiB)]
    try:
        assert got == [0x20000000, 0x30000000]
        assert s.pending == 0
    finally:
        for p in got:
            s.release(p, MiB)


def test_no_room_and_errno_answers(inner):
    s = ScriptedMemory(inner, [NO_ROOM, Fail(errno.EAGAIN)])
    assert s.reserve(0x20000000, MiB) is None
    with pytest.raises(OSError) as info:
        s.reserve(0x20000000, MiB)
    assert info.value.errno == errno.EAGAIN
    assert [c.result for c in s.calls] == [None, Fail(errno.EAGAIN)]


def test_a_callable_answers_when_asked(inner):
    s = ScriptedMemory(inner, [lambda hint, size: hint - 2 * size])
    p = s.reserve(0x40000000, MiB)
    try:
        assert p == 0x40000000 - 2 * MiB
    finally:
        s.release(p, MiB)


def test_fail_next_fails_one_call_with_that_errno(inner):
    s = ScriptedMemory(inner)
    p = s.reserve(0, MiB)
    try:
        s.fail_next("commit", errno.ENOMEM)
        with pytest.raises(OSError) as info:
            s.commit(p, MiB)
        assert info.value.errno == errno.ENOMEM
        s.commit(p, MiB)  # only once
    finally:
        s.release(p, MiB)
    with pytest.raises(ValueError, match="reserve"):
        s.fail_next("reserve", errno.ENOMEM)


@pytest.mark.parametrize(
    "answer, exc",
    [(0x10000001, ValueError), (-4096, ValueError), (2**32, ValueError), (0, ValueError),
     ("0x10000000", TypeError), (1.0, TypeError), (True, TypeError)],
)
def test_invalid_answers_are_refused_up_front(inner, answer, exc):
    with pytest.raises(exc, match="scripted answer"):
        ScriptedMemory(inner, [answer])


def test_an_answer_past_the_top_is_refused(inner):
    s = ScriptedMemory(inner, [sysmem.COMPAT_TASK_SIZE - 4096])
    with pytest.raises(ValueError, match="passes the top"):
        s.reserve(0, MiB)


def test_crowd_occupies_and_releases(inner):
    with Crowd(inner) as crowd:
        crowd.occupy(0x50000000, MiB)
        assert mapped(0x50000000, MiB)
        with pytest.raises(RuntimeError, match="not free"):
            crowd.occupy(0x50000000, MiB)
    assert not mapped(0x50000000, MiB)


@pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="the crowd fills a 64-bit host's 32-bit model; tests/test_i386.py covers the real kernel")
def test_crowd_makes_the_kernel_itself_answer_in_the_hole(inner):
    # Everything from 0x08000000 up is taken but a 64 MiB hole low down: a
    # hint high up is occupied, so the top-down search lands in the hole.
    hole = (0x10000000, 0x14000000)
    with Crowd(inner) as crowd:
        crowd.fill(0x08000000, inner.limit, holes=[hole])
        p = inner.reserve(0xC0000000, 16 * MiB)
        try:
            assert p == hole[1] - 16 * MiB
        finally:
            inner.release(p, 16 * MiB)


# -- a real process's address space ------------------------------------------------

DUMP = """\
# a made-up process: comments and blank lines are skipped

10000000-10400000 r-xp 00000000 08:01 1234    /usr/bin/made-up
10400000-10500000 rw-p 00400000 08:01 1234    /usr/bin/made-up
20000000-20100000 ---p 00000000 00:00 0
7ffff7dd0000-7ffff7df0000 r-xp 00000000 08:01 99  /lib/far-away.so
"""


def test_parse_maps_reads_a_dump_and_names_a_malformed_line():
    maps = sysmem.parse_maps(DUMP)
    assert [(m.start, m.end, m.perms) for m in maps][:3] == [
        (0x10000000, 0x10400000, "r-xp"), (0x10400000, 0x10500000, "rw-p"), (0x20000000, 0x20100000, "---p")]
    assert maps[0].name == "/usr/bin/made-up" and maps[2].name == ""
    for line in ("10000000 r-xp 0 0:0 0", "1000-zz00 r-xp 0 0:0 0", "2000-1000 r-xp 0 0:0 0", "1000-2000",
                 "1000-2000 rwxz 0 0:0 0", "1001-2000 r--p 0 0:0 0"):
        with pytest.raises(ValueError, match=f"line 3 is not a /proc/PID/maps line: '{line[:20]}"):
            sysmem.parse_maps("# a comment\n\n" + line + "\n")


def test_the_shipped_dumps_parse():
    for name in spaces.EXAMPLE_MAPS:
        maps = sysmem.parse_maps(spaces.example_maps(name))
        assert len(maps) > 50 and any(m.name == "[stack]" for m in maps)
        assert all(m.end <= 1 << 32 for m in maps) == name.endswith("i386")
    with pytest.raises(ValueError, match="python3-i386"):
        spaces.example_maps("python2")


@pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="places a dump's fixed addresses in a 64-bit host's 32-bit model")
def test_from_maps_occupies_what_is_free_here_and_reports_the_rest(inner):
    held = inner.reserve_exact(0x10400000, MiB)  # mapped here already: not occupied, reported
    try:
        with Crowd.from_maps(DUMP, inner) as crowd:
            assert sorted(crowd.blocks) == [(0x10000000, 0x400000), (0x20000000, MiB)]
            placeholders = [m for m in sysmem.mappings(below=1 << 32) if m.perms == "---p"]
            assert all(any(m.start <= a and a + n <= m.end for m in placeholders) for a, n in crowd.blocks)
            reasons = {(s.start, s.end): s.why for s in crowd.skipped}
            assert "mapped here" in reasons[(0x10400000, 0x10500000)]
            assert "outside the 32-bit space" in reasons[(0x7FFFF7DD0000, 0x7FFFF7DF0000)]
            # The kernel (here the 32-bit model) now places around the dump's mappings.
            p = inner.reserve(0x10000000, 16 * MiB)
            try:
                assert not 0x10000000 - 16 * MiB < p < 0x10500000
            finally:
                inner.release(p, 16 * MiB)
        assert not any(m.start < 0x10400000 and 0x10000000 < m.end for m in sysmem.mappings(below=1 << 32))
    finally:
        inner.release(held, MiB)


def test_from_maps_never_takes_the_room_this_process_stack_grows_into(memory):
    stack = next(m for m in sysmem.mappings() if m.name == "[stack]")
    below = stack.start - 4 * MiB
    dump = f"{below:x}-{stack.start:x} rw-p 00000000 00:00 0  [stack]\n"
    with Crowd.from_maps(dump, memory) as crowd:
        assert crowd.blocks == [] and "stack" in crowd.skipped[0].why


def test_from_maps_of_a_malformed_dump_maps_nothing(inner):
    before = spaces.reservations()
    with pytest.raises(ValueError, match="line 2"):
        Crowd.from_maps("10000000-10400000 r-xp 0 0:0 0\nnot a maps line\n", inner)
    assert spaces.reservations() == before
