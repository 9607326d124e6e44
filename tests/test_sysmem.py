"""The OS memory layer against the real kernel (run once per backend)."""
import errno
import subprocess
import sys

import pytest

from arena import sysmem
from arena.spaces import peek, poke, reservations

MiB = 1 << 20


def perms_of(addr, size):
    """Permissions of every mapping overlapping ``[addr, addr+size)``."""
    return {m.perms for m in sysmem.mappings() if m.start < addr + size and addr < m.end}


def free_spot(memory, size, low=None, high=None):
    """A free, aligned range far from its neighbours, found in this process's own maps."""
    low = memory.lowest if low is None else low
    high = memory.limit if high is None else high
    for a, b in reversed(sysmem.free_gaps(sysmem.mappings(), low, high)):
        if b - a >= 3 * size:
            return a + size
    pytest.fail("no free range")


@pytest.fixture(params=["native", "32"])
def any_memory(request, memory, memory32):
    return memory if request.param == "native" else memory32


def test_free_hint_is_honoured(any_memory):
    hint = free_spot(any_memory, MiB)
    p = any_memory.reserve(hint, MiB)
    try:
        assert p == hint
        assert perms_of(p, MiB) == {"---p"}
    finally:
        any_memory.release(p, MiB)


def test_occupied_hint_is_not_honoured_and_answer_is_a_separate_mapping(any_memory):
    hint = free_spot(any_memory, MiB)
    blocker = any_memory.reserve_exact(hint, MiB)
    assert blocker == hint
    try:
        p = any_memory.reserve(hint, MiB)
        assert p is not None and p != hint
        try:
            assert p + MiB <= hint or p >= hint + MiB
            assert any(m.start <= p and p + MiB <= m.end for m in sysmem.mappings())
        finally:
            any_memory.release(p, MiB)
    finally:
        any_memory.release(blocker, MiB)


def test_reserve_exact_free_and_occupied(any_memory):
    addr = free_spot(any_memory, MiB)
    assert any_memory.reserve_exact(addr, MiB) == addr
    try:
        assert any_memory.reserve_exact(addr, MiB) is None
        # Overlapping only the last page is occupied too.
        assert any_memory.reserve_exact(addr + MiB - any_memory.page_size, MiB) is None
    finally:
        any_memory.release(addr, MiB)


def test_commit_write_read_decommit_zeroes_release_unmaps(any_memory):
    p = any_memory.reserve(0, MiB)
    try:
        assert perms_of(p, MiB) == {"---p"}
        any_memory.commit(p, MiB)
        assert perms_of(p, MiB) == {"rw-p"}
        pattern = bytes(range(256)) * 16
        poke(p, pattern)
        poke(p + MiB - len(pattern), pattern)
        assert peek(p, len(pattern)) == pattern
        assert peek(p + MiB - len(pattern), len(pattern)) == pattern
        any_memory.decommit(p, MiB)
        assert perms_of(p, MiB) == {"---p"}
        any_memory.commit(p, MiB)
        assert peek(p, len(pattern)) == bytes(len(pattern))
    finally:
        any_memory.release(p, MiB)
    assert perms_of(p, MiB) == set()


def test_partial_commit_splits_the_reservation(any_memory):
    page = any_memory.page_size
    p = any_memory.reserve(0, 4 * page)
    try:
        any_memory.commit(p + page, page)
        assert perms_of(p, page) == {"---p"}
        assert perms_of(p + page, page) == {"rw-p"}
        assert perms_of(p + 2 * page, 2 * page) == {"---p"}
    finally:
        any_memory.release(p, 4 * page)


def test_no_room_is_none(any_memory):
    # A blocker in the middle leaves no gap as large as the upper half.
    half = any_memory.limit // 2 // MiB * MiB
    blocker = any_memory.reserve_exact(half, MiB)
    assert blocker == half, "the middle of the address space is taken here"
    try:
        assert any_memory.reserve(0, any_memory.limit - half) is None
        assert any_memory.reserve(half, any_memory.limit - half) is None
    finally:
        any_memory.release(blocker, MiB)


def test_failing_syscall_raises_oserror_with_errno(memory):
    p = memory.reserve(0, MiB)
    memory.release(p, MiB)
    # Nothing is mapped there now: mprotect and madvise answer ENOMEM.
    with pytest.raises(OSError) as info:
        memory.commit(p, MiB)
    assert info.value.errno == errno.ENOMEM
    assert f"{p:#x}" in str(info.value)
    with pytest.raises(OSError) as info:
        memory.decommit(p, MiB)
    assert info.value.errno == errno.ENOMEM


def test_a_commit_outside_a_reservation_says_so_not_out_of_memory(any_memory):
    page = any_memory.page_size
    # free_spot leaves a free MiB on each side: the range runs one page past the reservation into nothing.
    p = any_memory.reserve_exact(free_spot(any_memory, MiB), MiB)
    try:
        for op in ("commit", "decommit"):
            with pytest.raises(OSError) as info:
                getattr(any_memory, op)(p, MiB + page)
            assert info.value.errno == errno.ENOMEM
            assert str(info.value) == (
                f"[Errno 12] {op}(addr={p:#x}, size={MiB + page:#x}): [{p:#x}, {p + MiB + page:#x}) is not inside a "
                f"reservation: nothing is mapped at {p + MiB:#x} (commit only what reserve returned and release has not given back)")
        # Where the whole range is mapped, ENOMEM is the kernel's own shortage (splitting the mapping).
        with pytest.raises(OSError, match=r"\): the kernel is out of memory or of mappings \(vm.max_map_count\)$"):
            any_memory.failed("commit", errno.ENOMEM, "addr", p, MiB)
    finally:
        any_memory.release(p, MiB)


# -- confinement to a 32-bit address space ------------------------------------


def test_confined_results_stay_below_compat_task_size(memory32):
    top = sysmem.COMPAT_TASK_SIZE
    got = []
    try:
        for hint in (0, 0x10000000, top - MiB, 0xFFF00000, 0xFFE00000, 0x10000000):
            p = memory32.reserve(hint, MiB)
            assert p is not None
            got.append(p)
            assert p + MiB <= top
        # An occupied hint is still answered below the limit.
        assert got[1] == 0x10000000 and got[5] != got[1]
        if memory32.confined:
            # The model goes top-down from the limit; a real 32-bit process from below its stack.
            assert got[0] == top - MiB
    finally:
        for p in got:
            memory32.release(p, MiB)
    assert memory32.reserve_exact(top - memory32.page_size, memory32.page_size) == top - memory32.page_size
    memory32.release(top - memory32.page_size, memory32.page_size)


@pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="a 32-bit process uses the real kernel's search, not the model")
def test_occupied_hint_lands_top_down_in_highest_gap_that_fits(memory32):
    top = sysmem.COMPAT_TASK_SIZE
    page = memory32.page_size
    # Occupy the top 64 MiB except a one-page hole, then ask for 1 MiB at an occupied hint.
    block_lo = top - 64 * MiB
    hole = top - 32 * MiB
    made = []
    try:
        for lo, hi in sysmem.free_gaps(sysmem.mappings(), block_lo, top):
            for a, b in ((lo, min(hi, hole)), (max(lo, hole + page), hi)):
                if a < b:
                    assert memory32.reserve_exact(a, b - a) == a
                    made.append((a, b - a))
        expected = max(b for a, b in sysmem.free_gaps(sysmem.mappings(), memory32.lowest, block_lo) if b - a >= MiB)
        p = memory32.reserve(top - 16 * MiB, MiB)
        made.append((p, MiB))
        assert p == expected - MiB
        # A request that fits the hole takes the hole: it is the highest gap.
        q = memory32.reserve(top - 16 * MiB, page)
        made.append((q, page))
        assert q == hole
    finally:
        for a, size in made:
            memory32.release(a, size)


def test_confined_rejects_ranges_past_the_limit(memory32):
    page = memory32.page_size
    with pytest.raises(ValueError, match="passes the top"):
        memory32.reserve_exact(sysmem.COMPAT_TASK_SIZE, page)
    with pytest.raises(ValueError, match="passes the top"):
        memory32.commit(0xFFFFF000, page)
    with pytest.raises(ValueError, match="32-bit address"):
        memory32.reserve(1 << 32, page)
    with pytest.raises(ValueError, match="wraps"):
        memory32.reserve(0xFFFFF000, 2 * page)


# -- bad input: the documented exception, before any syscall -------------------

PAGE = sysmem.default().page_size
BAD_SIZES = [
    (0, ValueError, "positive"),
    (-PAGE, ValueError, "positive"),
    (PAGE + 1, ValueError, "multiple"),
    (1 << 64, ValueError, "does not fit"),
    (1 << 100, ValueError, "does not fit"),
    (4096.0, TypeError, "size must be an int"),
    ("4096", TypeError, "size must be an int"),
    (None, TypeError, "size must be an int"),
]
BAD_ADDRS = [
    (1, ValueError, "aligned"),
    (PAGE + 8, ValueError, "aligned"),
    (-PAGE, ValueError, "negative"),
    (1 << 64, ValueError, "passes the top"),
    (2.0, TypeError, "must be an int"),
    (None, TypeError, "must be an int"),
]
OPS = ["reserve_exact", "commit", "decommit", "release"]


def layout_of(addr, size):
    """``(start, end, perms)`` of every mapping overlapping ``[addr, addr+size)``."""
    return [(m.start, m.end, m.perms) for m in sysmem.mappings() if m.start < addr + size and addr < m.end]


@pytest.mark.parametrize("op", ["reserve", *OPS])
@pytest.mark.parametrize("size, exc, words", BAD_SIZES)
def test_bad_size(any_memory, op, size, exc, words):
    # Before any syscall: the process's mapping count cannot show that (the
    # interpreter maps memory of its own at any moment). A real reservation
    # that the call would change if it reached the kernel can, together with
    # the set of reservations, which only an OS layer makes: commit would make
    # its PROT_NONE half read-write, decommit its read-write half PROT_NONE,
    # release would unmap it, reserve and reserve_exact would add a reservation.
    page = any_memory.page_size
    base = free_spot(any_memory, MiB)
    assert any_memory.reserve_exact(base, 4 * page) == base
    try:
        any_memory.commit(base, 2 * page)
        target = {"reserve": base, "reserve_exact": base + 4 * page, "commit": base + 2 * page}.get(op, base)
        around, reserved = layout_of(base, 8 * page), reservations()
        assert around == [(base, base + 2 * page, "rw-p"), (base + 2 * page, base + 4 * page, "---p")]
        with pytest.raises(exc, match=words) as info:
            getattr(any_memory, op)(target, size)
        assert "size" in str(info.value)
        assert layout_of(base, 8 * page) == around
        assert reservations() == reserved
    finally:
        any_memory.release(base, 4 * page)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("addr, exc, words", BAD_ADDRS)
def test_bad_address(any_memory, op, addr, exc, words):
    with pytest.raises(exc, match=words) as info:
        getattr(any_memory, op)(addr, PAGE)
    assert "addr" in str(info.value)


@pytest.mark.parametrize("hint, exc, words", [(1, ValueError, "aligned"), (-PAGE, ValueError, "address"), (0.0, TypeError, "hint must be an int"), ("0", TypeError, "hint must be an int")])
def test_bad_hint(any_memory, hint, exc, words):
    with pytest.raises(exc, match=words):
        any_memory.reserve(hint, PAGE)


def test_range_that_wraps_is_refused(memory):
    top = 1 << sysmem.NATIVE_BITS
    with pytest.raises(ValueError, match="top of the address space"):
        memory.release(top - PAGE, 2 * PAGE)
    with pytest.raises(ValueError, match="top of the address space"):
        memory.reserve(top - PAGE, 2 * PAGE)


def test_reserve_exact_below_lowest_mappable_address(any_memory):
    with pytest.raises(ValueError, match="lowest mappable"):
        any_memory.reserve_exact(0, PAGE)


@pytest.mark.parametrize("bits, exc", [(16, ValueError), (128, ValueError), ("32", TypeError), (32.0, TypeError)])
def test_bad_address_bits(bits, exc):
    with pytest.raises(exc, match="address_bits"):
        sysmem.default(address_bits=bits)


# -- choosing a backend ---------------------------------------------------------


def test_unknown_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ARENA_BACKEND", "rust")
    with pytest.raises(sysmem.UnknownBackend, match="^ARENA_BACKEND='rust' is not a backend: set it to one of cffi, ctypes, or unset it$"):
        sysmem.default()
    assert issubclass(sysmem.UnknownBackend, ValueError)


@pytest.mark.parametrize("name, cls", [pytest.param("cffi", sysmem.CffiMemory, marks=pytest.mark.needs_shim),
                                       ("ctypes", sysmem.CtypesMemory), ("CTYPES", sysmem.CtypesMemory),
                                       (" Ctypes\n", sysmem.CtypesMemory)])
def test_backend_can_be_forced_in_any_case(monkeypatch, name, cls):
    monkeypatch.setenv("ARENA_BACKEND", name)
    assert type(sysmem.default()) is cls


@pytest.fixture
def no_shim(monkeypatch):
    """As if the install had skipped the shim: importing ``arena._native`` fails."""
    from arena.sysmem import _cffi

    monkeypatch.setitem(sys.modules, "arena._native", None)
    monkeypatch.setattr(_cffi, "_lib", None)


def test_forcing_cffi_without_the_shim_names_the_fix(monkeypatch, no_shim):
    monkeypatch.setenv("ARENA_BACKEND", "cffi")
    with pytest.raises(sysmem.ShimUnavailable) as caught:
        sysmem.default()
    message = str(caught.value)
    assert message.startswith("compiled shim unavailable (import of arena._native halted")
    assert "install a C compiler and reinstall" in message and "ARENA_BACKEND=ctypes" in message
    assert not isinstance(caught.value, ModuleNotFoundError) and isinstance(caught.value, ImportError)
    with pytest.raises(sysmem.ShimUnavailable):
        sysmem.CffiMemory()


def test_without_compiled_module_default_is_ctypes_with_one_warning():
    code = """
import sys, warnings
sys.modules["arena._native"] = None  # as if it was never built
from arena import sysmem
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first, second = sysmem.default(), sysmem.default(32)
print(type(first).__name__, type(second).__name__, len(caught))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "ARENA_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["CtypesMemory", "CtypesMemory", "1"]


def test_mappings_parse_this_process(memory):
    p = memory.reserve(0, MiB)
    try:
        memory.commit(p, memory.page_size)
        maps = sysmem.mappings()
        assert maps == sorted(maps)
        assert sysmem.Mapping(p, p + memory.page_size, "rw-p", "") in maps
        assert any(m.name.endswith("]") for m in maps)  # [stack], [heap], [vdso]
        # Both read the file; the interpreter may map memory between two reads.
        for _ in range(10):
            count, maps = sysmem.mapping_count(), sysmem.mappings()
            if sysmem.mapping_count() == count:
                break
        assert len(maps) == count
    finally:
        memory.release(p, MiB)


# -- what the layers hold (the pytest plugin's leak check) ---------------------------


def test_tracking_notes_what_every_layer_reserves_and_releases_and_costs_nothing_after(any_memory, memory32):
    ops = ("reserve", "reserve_exact", "release")
    calls = {(id(layer), op): getattr(layer, op) for layer in (any_memory, memory32) for op in ops}
    page = any_memory.page_size
    with sysmem.track_reservations() as held:
        p = any_memory.reserve(free_spot(any_memory, MiB), MiB)
        q = memory32.reserve_exact(free_spot(memory32, MiB), MiB)
        fresh = sysmem.default(address_bits=32)  # a layer made meanwhile is noted too
        r = fresh.reserve(0, MiB)
        any_memory.release(p + page, page)  # a hole in the middle
        assert held.spans == sorted([(p, p + page), (p + 2 * page, p + MiB), (q, q + MiB), (r, r + MiB)])
        assert held.overlaps(q + MiB - 1, q + MiB) and not held.overlaps(p + page, p + 2 * page)
        for layer, start in ((any_memory, p), (memory32, q), (fresh, r)):
            layer.release(start, MiB)
        assert held.spans == []
    # Off again: each layer calls what it called before, not a wrapper.
    assert all(getattr(layer, op) == calls[id(layer), op] for layer in (any_memory, memory32) for op in ops)
    assert not any(hasattr(getattr(layer, op), "_unnoted") for layer in (any_memory, memory32, fresh) for op in ops)
