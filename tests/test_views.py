"""Views of arena memory: writable memoryviews checked against the allocations, alive as long as they are used."""
import ctypes
import gc
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

import arena
from arena import sysmem
from arena.harness.run import drive, mark
from arena.interface import demo
from arena.policy.layout import MiB
from arena.spaces import NO_ROOM, Crowd, ScriptedMemory, reservations

# Several runs place mappings at exact addresses: in a 32-bit process they run
# first, before the interpreter's own memory spreads through the space.
pytestmark = pytest.mark.needs_clean_space

PAGE = arena.LAYOUT_32.page_size
NATIVE = arena.native_layout()
LAYOUTS = [arena.LAYOUT_32, pytest.param(arena.LAYOUT_64, marks=pytest.mark.needs_64_bit)]


def held(a):
    """The arena's regions as mapped now: what close() must leave alone while a view is alive."""
    return {(m.start, m.end) for m in sysmem.mappings() for r in a.regions if m.start < r.end and r.start < m.end}


# -- what a view is ---------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_a_view_reads_and_writes_the_allocation(layout):
    with arena.Arena(layout) as a:
        p = a.sys_alloc(4 * PAGE)
        with a.view(p) as v:
            assert (len(v), v.format, v.itemsize, v.readonly, v.c_contiguous) == (4 * PAGE, "B", 1, False, True)
            v[:5] = b"hello"
            v[-1] = 0xA5
            struct.pack_into("<Q", v, 8, 0x1122334455667788)
            assert bytes(v[:5]) == b"hello" and v[-1] == 0xA5
            assert struct.unpack_from("<Q", v, 8)[0] == 0x1122334455667788
            assert a.address_of(v) == p
        # What the view wrote is the memory at p: read it back through another one.
        with a.view(p + 8, 8) as w:
            assert w.tobytes() == (0x1122334455667788).to_bytes(8, "little")
            assert a.address_of(w) == p + 8
        assert ctypes.string_at(p, 5) == b"hello"


def test_size_none_runs_to_the_end_of_the_allocation_and_a_slice_is_the_same_memory():
    with arena.Arena(NATIVE, initial_size=16 * MiB) as a:
        p = a.sys_alloc(3 * PAGE)
        q = a.sys_alloc(PAGE)
        with a.view(p + 100) as v, a.view(q) as w:
            assert len(v) == 3 * PAGE - 100 and len(w) == PAGE
            part = v[10:20]
            part[:] = b"0123456789"
            assert a.address_of(part) == p + 110
            with a.view(p + 110, 10) as again:
                assert bytes(again) == b"0123456789"
            part.release()


def test_numpy_frombuffer_sees_the_same_bytes():
    np = pytest.importorskip("numpy")
    with arena.Arena(NATIVE) as a:
        v = a.alloc(PAGE)
        x = np.frombuffer(v, dtype=np.uint32)
        x[:4] = [1, 2, 3, 4]
        assert struct.unpack_from("<4I", v) == (1, 2, 3, 4)
        del v
        with pytest.raises(BufferError, match="1 view of arena memory is still alive"):
            a.close()  # the array still holds the view
        del x
    assert a.closed


# -- alloc and address_of -------------------------------------------------------------


def test_alloc_is_sys_alloc_as_a_view():
    with arena.Arena(NATIVE, initial_size=16 * MiB) as a:
        v = a.alloc(2 * PAGE)
        p = a.address_of(v)
        assert a.allocations[-1] == (p, 2 * PAGE) and len(v) == 2 * PAGE
        v[:2] = b"ok"
        assert bytes(a.view(p, 2)) == b"ok"
        v.release()


@pytest.mark.needs_64_bit
def test_alloc_out_of_memory_is_none_as_sys_alloc():
    import dataclasses

    layout = dataclasses.replace(arena.LAYOUT_64, max_mem=256 * MiB - 1)
    with arena.Arena(layout) as a:
        assert a.alloc(200 * MiB) is not None  # released at once: nothing holds it
        assert a.alloc(200 * MiB) is None


@pytest.mark.parametrize("n, exc", [(0, ValueError), (PAGE + 1, ValueError), ("8192", TypeError), (8192.0, TypeError)])
def test_alloc_refuses_what_sys_alloc_refuses(n, exc):
    with arena.Arena(NATIVE) as a:
        with pytest.raises(exc, match="n "):
            a.alloc(n)


def test_address_of_refuses_what_no_view_of_this_arena_is():
    with arena.Arena(NATIVE) as a, arena.Arena(arena.LAYOUT_32, start=0x80000000, initial_size=16 * MiB) as b:
        v, w = a.alloc(PAGE), b.alloc(PAGE)
        with pytest.raises(TypeError, match="memoryview"):
            a.address_of(a.sys_alloc(PAGE))
        with pytest.raises(ValueError, match="not of this arena"):
            a.address_of(w)
        with pytest.raises(ValueError, match="not of this arena"):
            a.address_of(memoryview(bytearray(8)))
        for bad in (v.toreadonly(), v[::2]):
            with pytest.raises(ValueError, match="writable, C-contiguous"):
                a.address_of(bad)
            bad.release()
        v.release()
        with pytest.raises(ValueError, match="released"):
            a.address_of(v)
        w.release()


# -- bad input ----------------------------------------------------------------------


@pytest.fixture
def two():
    """A 32-bit arena at a known place with two adjacent allocations of 2 and 1 pages."""
    with arena.Arena(arena.LAYOUT_32, start=0x80000000, initial_size=16 * MiB) as a:
        yield a, a.sys_alloc(2 * PAGE), a.sys_alloc(PAGE)


@pytest.mark.parametrize("args, name", [(("0x1000",), "addr"), ((1.0,), "addr"), ((None, 8), "addr"), (("p", "8"), "size"), (("p", 8.0), "size")])
def test_a_non_int_is_a_type_error(two, args, name):
    a, p, _ = two
    with pytest.raises(TypeError, match=name):
        a.view(*[p if x == "p" else x for x in args])


def test_an_int_like_index_is_accepted(two):
    class Index:
        def __init__(self, v):
            self.v = v

        def __index__(self):
            return self.v

    a, p, _ = two
    assert len(a.view(Index(p), Index(16))) == 16


@pytest.mark.parametrize(
    "where, size, words",
    [
        (lambda p, q: p - PAGE, None, "in no allocation"),  # the uncommitted metadata below
        (lambda p, q: q + PAGE, None, r"in no allocation of this arena; the nearest allocation below it is \[0x80004000, 0x80006000\)"),
        (lambda p, q: 0, None, "in no allocation of this arena$"),
        (lambda p, q: -1, None, "in no allocation"),
        (lambda p, q: 2**80, None, "in no allocation"),
        (lambda p, q: p, 2 * PAGE + 1, r"runs past the end of the allocation \[0x80000000, 0x80004000\)"),
        (lambda p, q: p + PAGE, 2 * PAGE, r"runs past the end of the allocation \[0x80000000, 0x80004000\)"),  # into the next one
        (lambda p, q: q, 0, "size must be positive"),
        (lambda p, q: q, -1, "size must be positive"),
    ],
)
def test_a_range_outside_one_allocation_is_a_value_error_naming_it(two, where, size, words):
    a, p, q = two
    assert (p, q) == (0x80000000, 0x80004000)
    with pytest.raises(ValueError, match=words):
        a.view(where(p, q), size)


def test_after_close_a_view_is_arena_closed(two):
    a, p, _ = two
    a.close()
    for call in (lambda: a.view(p), lambda: a.view(p, 8), lambda: a.alloc(PAGE)):
        with pytest.raises(arena.ArenaClosed):
            call()


# -- lifetime: as mmap.close() ----------------------------------------------------------


def test_close_with_a_live_view_raises_and_unmaps_nothing():
    a = arena.Arena(NATIVE, initial_size=16 * MiB)
    v = a.alloc(PAGE)
    before_maps, before_reserved = held(a), reservations()
    with pytest.raises(BufferError, match=r"^cannot close: 1 view of arena memory is still alive$"):
        a.close()
    assert not a.closed and held(a) == before_maps and reservations() == before_reserved
    v[:4] = b"live"  # still mapped, still ours
    assert bytes(v[:4]) == b"live" and a.sys_alloc(PAGE) is not None
    v.release()
    a.close()
    assert a.closed


def test_every_kind_of_holder_keeps_its_view_counted():
    a = arena.Arena(NATIVE, initial_size=16 * MiB)
    v1, v2, v3 = a.alloc(PAGE), a.alloc(PAGE), a.view(a.sys_alloc(2 * PAGE), 16)
    slice_of_1 = v1[8:16]
    cast_of_2 = v2.cast("I")
    holder_of_3 = ctypes.c_char.from_buffer(v3)
    exporter_of_3 = v3.obj  # the ctypes array: it reaches the memory too
    del v1, v2, v3

    def refused(n):
        words = "1 view of arena memory is" if n == 1 else f"{n} views of arena memory are"
        with pytest.raises(BufferError, match=f"^cannot close: {words} still alive$"):
            a.close()

    refused(3)
    slice_of_1.release()
    refused(2)
    del cast_of_2
    refused(1)
    del holder_of_3
    refused(1)
    del exporter_of_3
    a.close()
    assert a.closed


def test_garbage_views_no_longer_count_and_cycles_count_until_collected():
    a = arena.Arena(NATIVE)
    for _ in range(1000):
        a.alloc(PAGE)[0] = 1  # made and dropped
    # The collector, left on, may run at any allocation after the del and free the cycle first.
    gc.disable()
    try:
        cycle = [a.alloc(PAGE)]
        cycle.append(cycle)
        del cycle
        with pytest.raises(BufferError, match="1 view of arena memory is still alive"):
            a.close()
    finally:
        gc.enable()
    gc.collect()
    a.close()


def test_views_of_many_sizes_stay_counted():
    # Each size of view has an array type of its own, and only the last 256 are
    # kept: a type still in use must survive that, or its views go uncounted.
    a = arena.Arena(NATIVE, initial_size=16 * MiB)
    p = a.sys_alloc(400 * PAGE)
    kept = [a.view(p, k * PAGE) for k in range(1, 11)]
    for k in range(11, 400):
        a.view(p, k * PAGE)[0] = k % 256
    with pytest.raises(BufferError, match="cannot close: 10 views"):
        a.close()
    kept[0][0] = 1
    del kept
    a.close()


def test_the_context_manager_refuses_too():
    with pytest.raises(BufferError, match="1 view of arena memory is still alive"):
        with arena.Arena(NATIVE) as a:
            v = a.alloc(PAGE)
    assert not a.closed
    v.release()
    with a:
        pass
    assert a.closed


def test_a_view_keeps_its_arena_alive():
    a = arena.Arena(NATIVE)
    ref = weakref.ref(a)
    v = a.alloc(PAGE)[4:8]
    del a
    gc.collect()
    assert ref() is not None  # through the view
    v[:] = b"kept"
    assert bytes(v) == b"kept"
    a = ref()
    v.release()
    a.close()
    del a
    gc.collect()
    assert ref() is None  # and nothing else holds it


def test_views_from_threads_while_another_closes():
    a = arena.Arena(NATIVE, initial_size=64 * MiB)
    stop, errors = threading.Event(), []

    def work(k):
        try:
            while not stop.is_set():
                v = a.alloc(PAGE)
                v[:2] = k.to_bytes(2, "little")
                assert bytes(a.view(a.address_of(v), 2)) == k.to_bytes(2, "little")
                v.release()
        except arena.ArenaClosed:
            pass  # closed under our feet: no view was handed out
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    while True:
        try:
            a.close()
            break
        except BufferError:
            pass
    stop.set()
    for t in threads:
        t.join()
    assert a.closed and errors == []


CHILD = textwrap.dedent("""
    import ctypes, sys
    import arena
    a = arena.Arena(arena.native_layout())
    v = a.alloc(4 * 8192)
    p = a.address_of(v)
    v[:] = b"x" * len(v)
    part, again, holder = v[100:200], memoryview(v), ctypes.c_char.from_buffer(v, 8)
    for _ in range(3):
        try:
            a.close()
            sys.exit("closed under a live view")
        except BufferError:
            pass
        v[0] = 1; part[0] = 2; holder.value = b"h"  # all still mapped
    assert a.view(p, 9)[8] == ord("h")
    del part, again, holder
    v.release()
    a.close()
    for touch in (lambda: v[0], lambda: bytes(v), lambda: v.__setitem__(0, 1), lambda: a.address_of(v)):
        try:
            touch()
            sys.exit("a released view reached memory")
        except ValueError:
            pass
    for call in (lambda: a.view(p), lambda: a.alloc(8192)):
        try:
            call()
            sys.exit("a closed arena made a view")
        except arena.ArenaClosed:
            pass
    if "--control" in sys.argv:
        ctypes.string_at(p, 1)  # what a view must never let happen: the memory is unmapped
    print("ok")
""")


def test_no_public_call_reaches_freed_memory_in_a_subprocess():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stdout + out.stderr


def test_the_subprocess_would_show_the_crash():
    out = subprocess.run([sys.executable, "-c", CHILD, "--control"], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGSEGV, out.stdout + out.stderr


# -- every rule, layout and memory layer ----------------------------------------------


def replay(rule, history=None):
    """Go issue 20259 on the 32-bit layout (as demo.replay_20259), with ``history``."""
    scripted = ScriptedMemory(sysmem.default(address_bits=32), [None, demo.LOW_ANSWER])
    a = arena.Arena(arena.LAYOUT_32, rule, memory=scripted, start=demo.ARENA_AT, initial_size=demo.ARENA_SIZE, history=history)
    return drive(a, [*demo.LIVE, demo.LAST])


@pytest.mark.parametrize("history", [None, 0])
@pytest.mark.parametrize("rule", arena.RULES)
def test_views_of_a_20259_arena_are_of_what_it_holds_whatever_contains_says(rule, history):
    r = replay(rule, history)
    with r.arena as a:
        for i, (p, n) in enumerate(zip(r.returned, r.requests)):
            m = mark(i)
            with a.view(p, n) as v:
                assert v[: len(m)] == m and v[-len(m):] == m
                v[len(m) : len(m) + 4] = b"more"
            if history is None:
                assert len(a.view(p)) == n
        lost = [p for p in r.returned if not a.contains(p)]
        assert (rule == "legacy") == (len(lost) == len(demo.LIVE))
        assert r.intact()


def test_a_32_bit_fallback_mapping_is_viewable():
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, 0x10000000])
    with arena.Arena(arena.LAYOUT_32, "fixed", memory=memory, start=0x80000000, initial_size=0) as a:
        v = a.alloc(MiB)
        assert a.events[-1].verdict == "fallback" and a.address_of(v) == a.allocations[-1][0]
        v[-4:] = b"tail"
        assert bytes(a.view(a.address_of(v) + MiB - 4)) == b"tail"
        v.release()


def test_views_in_a_crowded_space():
    memory = sysmem.default(address_bits=32)
    with arena.Arena(arena.LAYOUT_32, "go1.9", memory=memory, initial_size=0) as a, Crowd(memory) as crowd:
        try:
            crowd.occupy(a.arena_end, 64 * MiB)  # the growth hint is taken: the kernel answers elsewhere
        except RuntimeError:
            pass  # taken already, which does the same
        v = a.alloc(PAGE)
        assert v is not None
        v[:] = bytes(range(256)) * (PAGE // 256)
        assert bytes(a.view(a.address_of(v) + 255, 2)) == b"\xff\x00"
        v.release()


def test_scripted_no_room_gives_no_view():
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, NO_ROOM])
    with arena.Arena(arena.LAYOUT_32, "fixed", memory=memory, initial_size=0) as a:
        assert a.alloc(PAGE) is None


@pytest.mark.skipif(sysmem.NATIVE_BITS != 32, reason="only a 32-bit process has views smaller than an allocation can be")
def test_an_allocation_larger_than_a_view_can_hold_is_viewed_in_parts():
    layout = arena.LAYOUT_32
    with arena.Arena(layout, initial_size=0) as a:
        p = a.sys_alloc(2048 * MiB)
        if p is None:
            pytest.skip("no 2 GiB of room in this process")
        with pytest.raises(ValueError, match="size 0x80000000 is more than one view can hold"):
            a.view(p)
        with a.view(p + 1024 * MiB, MiB) as v:
            v[:4] = b"part"
            assert v[:4] == b"part"


# -- Go 1.11's heap arenas: the same views ------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_heap_arenas_give_views_of_what_they_hand_out(layout):
    from test_heaparenas import free_aligned, heap

    size = layout.heap_arena_size
    (x,) = free_aligned(layout, 4 * size)
    with heap(layout, x) as h:
        v = h.alloc(3 * PAGE)  # one heap arena; the view is of the 3 pages asked for
        p = h.address_of(v)
        q = h.sys_alloc(PAGE)  # the next arena, at the hint: adjacent
        assert (p, q, len(v)) == (x, x + size, 3 * PAGE)
        v[:5] = b"hello"
        v[-1] = 0xA5
        with h.view(p + size - 4, 4) as w:  # the allocation is the whole arena
            w[:] = b"tail"
        assert ctypes.string_at(p, 5) == b"hello" and ctypes.string_at(p + 3 * PAGE - 1, 1) == b"\xa5"
        assert ctypes.string_at(p + size - 4, 4) == b"tail"
        assert len(h.view(p)) == size and len(h.view(q + 8)) == size - 8 and h.address_of(h.view(q + 8)) == q + 8
        with pytest.raises(ValueError, match=rf"runs past the end of the allocation \[{p:#x}, {q:#x}\)"):
            h.view(p + size - 4, 8)  # into the next allocation
        with pytest.raises(ValueError, match=rf"in no allocation of this arena; the nearest allocation below it is \[{q:#x}, "):
            h.view(q + size)
        with pytest.raises(ValueError, match="in no allocation of this arena$"):
            h.view(p - PAGE)
        with pytest.raises(BufferError, match=r"^cannot close: 1 view of arena memory is still alive$"):
            h.close()
        assert not h.closed and ctypes.string_at(p, 5) == b"hello"  # nothing unmapped
        v.release()
    assert h.closed
    for call in (lambda: h.view(p), lambda: h.view(p, 8), lambda: h.alloc(PAGE)):
        with pytest.raises(arena.ArenaClosed):
            call()


@pytest.mark.parametrize("layout", LAYOUTS, ids=["32", "64"])
def test_heap_arenas_views_of_the_20259_scenario(layout):
    # The linear arena's views hold whatever contains says; heap arenas lose nothing either way.
    r = demo.replay_20259("go1.11", layout)
    with r.arena as h:
        for i, (p, n) in enumerate(zip(r.returned, r.requests)):
            m = mark(i)
            with h.view(p, n) as v:
                assert v[: len(m)] == m and v[-len(m):] == m
            assert h.contains(p)
        assert r.intact()


def test_heap_arenas_views_of_the_32_bit_pre_reservation_and_an_aligned_region():
    from test_heaparenas import free_aligned

    layout = arena.LAYOUT_32
    size = layout.heap_arena_size
    x, low = free_aligned(layout, 8 * size, count=2)
    # The pre-reservation (answered aligned: kept whole, two arenas) serves the first request;
    # no room at the hint after it sends the second to an aligned region anywhere, here one
    # answered below, unaligned: it is trimmed.
    memory = ScriptedMemory(sysmem.default(address_bits=32), [None, None, NO_ROOM, low + PAGE])
    with arena.HeapArenas(layout, memory=memory, start=x, initial_size=size) as h, arena.Arena(NATIVE) as other:
        v, w = h.alloc(2 * size), h.alloc(PAGE)
        assert [e.verdict for e in h.events if e.step != "first"] == ["committed", "no-room", "trimmed", "committed"]
        assert (h.address_of(v), h.address_of(w)) == (x, low + size)
        v[:2], w[:2] = b"pr", b"al"
        assert bytes(h.view(x, 2)) == b"pr" and bytes(h.view(low + size, 2)) == b"al"
        with pytest.raises(ValueError, match="not of this arena"):
            other.address_of(w)
        v.release()
        w.release()
