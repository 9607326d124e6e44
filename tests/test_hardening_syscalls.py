"""Failing syscalls leave a consistent arena.

Each reserve, commit and release the arena makes is failed in turn with an
errno (``arena.spaces.ScriptedMemory``: ``Fail(errno)`` answers and
``fail_next``). The call raises ``OSError`` with that errno, or returns
``None`` where documented (ENOMEM from a commit: out of memory); the bounds are
exactly as before the call or as after a complete step, never half-updated;
``verify`` is clean; the next call works; ``close`` gives back every mapping,
including one whose release was refused.
"""
import dataclasses
import errno

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.spaces import NO_ROOM, Fail, ScriptedMemory, peek, poke, reservations
from hardening_util import SMALL32, SMALL64, commits_inside_reservations

MiB = 1 << 20
ERRNOS = [errno.EACCES, errno.EAGAIN, errno.EPERM, errno.EIO]
LAYOUTS = [SMALL32] + ([SMALL64] if sysmem.NATIVE_BITS == 64 else [])
ids = lambda layout: layout.name.replace(" ", "-")  # noqa: E731


def state(a):
    return a.arena_start, a.arena_used, a.arena_alloc, a.arena_end, a.regions, a.allocations, a.stats


def still_works(a):
    assert verify(a) == []
    p = a.sys_alloc(a.layout.page_size)
    assert p is not None
    poke(p, b"ok")
    assert peek(p, 2) == b"ok"
    assert verify(a) == []
    assert commits_inside_reservations(a.memory.calls) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
@pytest.mark.parametrize("code", ERRNOS + [errno.ENOMEM])
def test_first_reservation_fails(layout, code):
    before = reservations()
    memory = ScriptedMemory(sysmem.default(address_bits=layout.address_bits), [Fail(code)] * 200)
    with pytest.raises(OSError) as info:
        arena.Arena(layout, memory=memory)
    assert info.value.errno == code
    assert reservations() == before


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
@pytest.mark.parametrize("rule", arena.RULES)
@pytest.mark.parametrize("code", ERRNOS)
def test_growth_reservation_fails(layout, rule, code):
    memory = ScriptedMemory(sysmem.default(address_bits=layout.address_bits), [None, Fail(code)])
    with arena.Arena(layout, rule, memory=memory) as a:
        a.sys_alloc(8 * MiB)
        was = state(a)
        with pytest.raises(OSError) as info:
            a.sys_alloc(32 * MiB)  # needs a new block: its reservation fails
        assert info.value.errno == code
        assert state(a) == was
        still_works(a)
        assert a.sys_alloc(32 * MiB) is not None  # and growing works again


# Growth from 0x80000000 by 0xF0000000 would pass 4 GiB: every request that
# does not fit the first block goes straight to the 32-bit fallback.
FALLBACK32 = dataclasses.replace(SMALL32, growth_step=0xF0000000)
HIGH = 0x80000000


@pytest.mark.parametrize("rule", arena.RULES)
@pytest.mark.parametrize("code", ERRNOS)
def test_fallback_reservation_fails(rule, code):
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, Fail(code)])
    with arena.Arena(FALLBACK32, rule, memory=memory, start=HIGH) as a:
        was = state(a)
        with pytest.raises(OSError) as info:
            a.sys_alloc(32 * MiB)
        assert info.value.errno == code
        assert state(a) == was
        still_works(a)
        assert a.sys_alloc(32 * MiB) is not None and a.stats.fallbacks == 1


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
@pytest.mark.parametrize("rule", arena.RULES)
@pytest.mark.parametrize("code", ERRNOS)
def test_commit_fails(layout, rule, code):
    memory = ScriptedMemory(sysmem.default(address_bits=layout.address_bits))
    with arena.Arena(layout, rule, memory=memory) as a:
        a.sys_alloc(layout.page_size)
        was = state(a)
        memory.fail_next("commit", code)
        with pytest.raises(OSError) as info:
            a.sys_alloc(layout.page_size)
        assert info.value.errno == code
        assert state(a) == was
        still_works(a)


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
def test_commit_enomem_is_out_of_memory(layout):
    # mprotect answers ENOMEM when splitting a mapping would pass vm.max_map_count.
    memory = ScriptedMemory(sysmem.default(address_bits=layout.address_bits))
    with arena.Arena(layout, memory=memory) as a:
        was = state(a)
        memory.fail_next("commit", errno.ENOMEM)
        assert a.sys_alloc(layout.page_size) is None
        assert state(a)[:6] == was[:6] and a.events[-1].verdict == "out-of-memory"
        still_works(a)


@pytest.mark.parametrize("rule", arena.RULES)
@pytest.mark.parametrize("code", ERRNOS + [errno.ENOMEM])
def test_fallback_commit_fails(rule, code):
    memory = ScriptedMemory(sysmem.default(address_bits=32))
    with arena.Arena(FALLBACK32, rule, memory=memory, start=HIGH) as a:
        was, held = state(a), reservations()
        memory.fail_next("commit", code)
        if code == errno.ENOMEM:
            assert a.sys_alloc(32 * MiB) is None
            assert a.events[-1].verdict == "out-of-memory"
            was = was[:6]
        else:
            with pytest.raises(OSError) as info:
                a.sys_alloc(32 * MiB)
            assert info.value.errno == code
        assert state(a)[:len(was)] == was
        assert reservations() == held, "the fallback mapping was not given back"
        still_works(a)


@pytest.mark.parametrize("layout, rule", [(SMALL32, "fixed")] + (
    [(SMALL64, "fixed"), (SMALL64, "go1.9")] if sysmem.NATIVE_BITS == 64 else []), ids=lambda v: v if isinstance(v, str) else v.name.replace(" ", "-"))
@pytest.mark.parametrize("code", ERRNOS)
def test_release_of_a_rejected_region_fails(layout, rule, code):
    # The growth lands below arena_start: rejected, and its release fails.
    inner = sysmem.default(address_bits=layout.address_bits)
    holder = {}

    def below_start(hint, size):
        a = holder["a"]
        gaps = [g for g in sysmem.free_gaps(sysmem.mappings(), inner.lowest, a.regions[0].start) if g[1] - g[0] >= size]
        return gaps[-1][1] - size if gaps else NO_ROOM

    memory = ScriptedMemory(inner, [None, below_start])
    before = reservations()
    a = holder["a"] = arena.Arena(layout, rule, memory=memory, start=HIGH if layout.address_bits == 32 else None)
    try:
        a.sys_alloc(layout.first_sizes[0])
        was = state(a)
        memory.fail_next("release", code)
        try:
            a.sys_alloc(64 * MiB)
        except OSError as exc:
            assert exc.errno == code
            assert state(a)[:6] == was[:6]
        else:
            raise AssertionError(f"not rejected: {a.events[-3:]}")
        assert a.events[-1].verdict == "rejected"
        still_works(a)
        assert len(reservations() - before) > len(a.regions) - 1  # the refused region is still mapped...
    finally:
        a.close()
    assert reservations() == before  # ...and close() gave it back


@pytest.mark.parametrize("layout", LAYOUTS, ids=ids)
@pytest.mark.parametrize("code", ERRNOS)
def test_release_fails_in_close(layout, code):
    before = reservations()
    memory = ScriptedMemory(sysmem.default(address_bits=layout.address_bits))
    a = arena.Arena(layout, memory=memory)
    a.sys_alloc(64 * MiB)  # two regions at least
    memory.fail_next("release", code)
    with pytest.raises(OSError) as info:
        a.close()
    assert info.value.errno == code and a.closed
    assert reservations() != before
    a.close()  # tries the refused one again
    assert reservations() == before
    a.close()  # and is idempotent once all is given back


@pytest.mark.parametrize("code", ERRNOS)
def test_release_fails_for_a_missed_first_hint(code):
    if sysmem.NATIVE_BITS != 64:
        pytest.skip("64-bit hints")
    before = reservations()
    inner = sysmem.default()
    hint = SMALL64.first_hints[0]
    # The first hint is answered elsewhere; releasing that answer fails once.
    memory = ScriptedMemory(inner, [hint + (1 << 32)])
    memory.fail_next("release", code)
    with pytest.raises(OSError) as info:
        arena.Arena(SMALL64, memory=memory)
    assert info.value.errno == code
    assert reservations() == before, "the constructor left the missed region mapped"


@pytest.mark.parametrize("op", ["reserve_exact", "commit", "decommit", "release"])
@pytest.mark.parametrize("code", ERRNOS + [errno.ENOMEM])
def test_os_layer_failures_surface_and_leave_nothing_half_done(op, code):
    # The OS layer itself (the arena never decommits nor reserves exactly).
    inner = sysmem.default(address_bits=32)
    memory = ScriptedMemory(inner)
    p = memory.reserve(0, MiB)
    try:
        memory.commit(p, MiB)
        poke(p, b"kept")
        memory.fail_next(op, code)
        with pytest.raises(OSError) as info:
            memory.reserve_exact(p, MiB) if op == "reserve_exact" else getattr(memory, op)(p, MiB)
        assert info.value.errno == code
        assert peek(p, 4) == b"kept"  # nothing happened
        assert {m.perms for m in sysmem.mappings() if p <= m.start < p + MiB} == {"rw-p"}
        memory.decommit(p, MiB)  # and the next call works
        assert {m.perms for m in sysmem.mappings() if p <= m.start < p + MiB} == {"---p"}
    finally:
        memory.release(p, MiB)


def test_real_failures_of_the_kernel():
    # Not scripted: commit/decommit of an unmapped range (ENOMEM), reserve_exact of a taken one (None).
    mem = sysmem.default(address_bits=32)
    p = mem.reserve(0, MiB)
    assert mem.reserve_exact(p, MiB) is None
    mem.release(p, MiB)
    for op in (mem.commit, mem.decommit):
        with pytest.raises(OSError) as info:
            op(p, MiB)
        assert info.value.errno == errno.ENOMEM


def test_poke_refuses_read_only_and_unmapped_memory():
    from hardening_util import Foreign

    foreign = Foreign()
    mem = sysmem.default(address_bits=32)
    p = mem.reserve(0, MiB)
    mem.release(p, MiB)
    try:
        assert foreign.place(p, 65536, writable=False, seed=3)
        with pytest.raises(ValueError, match="writable"):
            poke(p, b"x")
        assert foreign.damaged() == []
        with pytest.raises(ValueError, match="readable"):
            peek(p + 65536, 1)
    finally:
        foreign.release()
