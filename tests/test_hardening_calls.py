"""Public calls at the door: no copies of what owns mappings, every argument read once, clear errors for wrong things."""
import copy
import ctypes
import dataclasses
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

import arena
from arena import sysmem
from arena.harness import hunt
from arena.spaces import Crowd, ScriptedMemory, example_maps, peek, poke, reservations
from hardening_util import SMALL32, SMALL64

NATIVE = arena.native_layout()
MANAGERS = [lambda: arena.Arena(SMALL32), lambda: arena.HeapArenas(arena.LAYOUT_32, initial_size=0)]
if sysmem.NATIVE_BITS == 64:
    MANAGERS += [lambda: arena.Arena(SMALL64), lambda: arena.HeapArenas(arena.LAYOUT_64)]
MANAGER_IDS = ["arena-32", "heap-32", "arena-64", "heap-64"][: len(MANAGERS)]


def probe(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter, so that a crash is a return code and a hang a timeout, not a dead pytest."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


# -- 1. copies ---------------------------------------------------------------------


@pytest.mark.parametrize("make", MANAGERS, ids=MANAGER_IDS)
@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"])
def test_a_manager_cannot_be_copied(make, how):
    with make() as m:
        with pytest.raises(TypeError, match="owns its mappings"):
            how(m)


COPY_PROBE = """
    import copy, sys
    import arena
    for make in (lambda: arena.Arena(arena.native_layout()), lambda: arena.HeapArenas(arena.native_layout())):
        a = make()
        v = a.alloc(8192)
        try:
            twin = copy.copy(a)
        except TypeError:
            print("refused")
        else:
            twin.close()  # the twin shares the regions: this unmaps what v still reaches
        v[-1] = 1
        v.release()
        a.close()
"""


def test_a_copy_could_not_unmap_memory_the_original_still_hands_out():
    out = probe(COPY_PROBE)
    assert out.returncode >= 0, f"died of {signal.Signals(-out.returncode).name}: {out.stderr}"
    assert out.returncode == 0 and out.stdout == "refused\nrefused\n", out.stdout + out.stderr


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy, pickle.dumps], ids=["copy", "deepcopy", "pickle"])
def test_a_crowd_and_a_scripted_layer_cannot_be_copied(how):
    with Crowd() as crowd:
        with pytest.raises(TypeError, match="Crowd"):
            how(crowd)
    with pytest.raises(TypeError, match="ScriptedMemory"):
        how(ScriptedMemory(sysmem.default()))


@pytest.mark.parametrize("bits", [32, 64] if sysmem.NATIVE_BITS == 64 else [32])
def test_a_copy_of_a_memory_layer_is_a_new_layer_of_the_same_width(bits):
    memory = sysmem.default(address_bits=bits)
    for twin in (copy.copy(memory), copy.deepcopy(memory), pickle.loads(pickle.dumps(memory))):
        assert type(twin) is type(memory) and twin is not memory and twin.address_bits == bits
        assert (twin.limit, twin.lowest, twin.page_size) == (memory.limit, memory.lowest, memory.page_size)
        with sysmem.track_reservations() as held:  # the copy is a layer the leak check knows
            p = twin.reserve(0, 8192)
            assert held.spans == [(p, p + 8192)]
            twin.release(p, 8192)
            assert held.spans == []


# -- 2. every argument read once ----------------------------------------------------


class Flip:
    """An int-like whose ``__index__`` answers each of ``values`` in turn, then the last again; counts the reads."""

    def __init__(self, *values: int) -> None:
        self.values, self.reads = values, 0

    def __index__(self) -> int:
        self.reads += 1
        return self.values[min(self.reads, len(self.values)) - 1]

    def __repr__(self) -> str:
        return f"Flip{self.values}"


def read_once(call, *values):
    """Call with a Flip per value (its first answer the value, then 1 GiB); the Flips, each checked read once."""
    flips = [Flip(v, 1 << 30) for v in values]
    try:
        call(*flips)
    except (ValueError, OSError):
        pass  # what the first answer asks may fail; it must still be read once
    assert [f.reads for f in flips] == [1] * len(flips), f"reads: {[f.reads for f in flips]}"
    return flips


@pytest.mark.parametrize("make", MANAGERS, ids=MANAGER_IDS)
def test_a_manager_reads_each_argument_once(make):
    with make() as m:
        read_once(m.sys_alloc, 8192)
        read_once(m.contains, 8192)
        v = m.alloc(Flip(8192, 1 << 30))
        assert len(v) == 8192
        p = m.address_of(v)
        read_once(m.view, p, 4096)
        read_once(m.view, p)
        v.release()
    layout = m.layout
    kind = type(m)
    start = 0x40000000 if layout.address_bits == 32 else 0x3000000000
    if kind is arena.Arena:
        read_once(lambda s, n: kind(layout, start=s, initial_size=n).close(), start, 16 << 20)
    else:
        read_once(lambda s: kind(layout, start=s, initial_size=0 if layout.address_bits == 32 else None).close(), start)


ALLOC_PROBE = """
    import sys
    import arena
    class Flip:
        def __init__(self): self.reads = 0
        def __index__(self):
            self.reads += 1
            return 8192 if self.reads == 1 else 1 << 30
    for make in (lambda: arena.Arena(arena.native_layout()), lambda: arena.HeapArenas(arena.native_layout())):
        with make() as a:
            v = a.alloc(Flip())
            v[-1] = 1  # a view longer than the allocation ends in memory never committed
            print(len(v))
            v.release()
"""


def test_alloc_gives_a_view_as_long_as_the_allocation_it_read():
    out = probe(ALLOC_PROBE)
    assert out.returncode >= 0, f"died of {signal.Signals(-out.returncode).name}: {out.stderr}"
    assert out.returncode == 0 and out.stdout == "8192\n8192\n", out.stdout + out.stderr


@pytest.mark.parametrize("backend", ["CffiMemory", "CtypesMemory"])
@pytest.mark.parametrize("bits", [32, 64] if sysmem.NATIVE_BITS == 64 else [32])
def test_a_memory_layer_reads_each_argument_once(backend, bits):
    try:
        memory = getattr(sysmem, backend)(bits)
    except ImportError:
        pytest.skip("the shim was not built")
    p = memory.reserve(0, 16 * 8192)
    try:
        read_once(memory.reserve_exact, p, 8192)  # taken: None, after one read
        read_once(memory.commit, p, 8192)
        read_once(memory.decommit, p, 8192)
        scripted = ScriptedMemory(memory)
        read_once(scripted.commit, p, 8192)
        read_once(lambda e: scripted.fail_next("commit", e), 12)
    finally:
        memory.release(p, 16 * 8192)
    read_once(lambda a, n: memory.release(memory.reserve(a, n), 8192), 0, 8192)
    read_once(lambda a, n: scripted.release(scripted.reserve(a, n), 8192), 0, 8192)


class Liar(int):
    """An int whose own comparisons and arithmetic lie: only its value may be used."""

    def __lt__(self, other):
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def __mod__(self, other):
        return 0

    def __add__(self, other):
        return 0


def test_an_int_subclass_is_used_by_its_value():
    memory = sysmem.default()
    with pytest.raises(ValueError, match="below the lowest"):
        memory.reserve_exact(Liar(4096), 8192)  # its "<" says it is not below lowest
    with pytest.raises(ValueError, match="aligned"):
        ScriptedMemory(memory, [Liar(memory.lowest + 1)])
    layout = dataclasses.replace(SMALL32, strand_limit=Liar(8192))
    assert type(layout.strand_limit) is int
    with arena.Arena(SMALL32, history=Liar(3)) as a:
        assert type(a.history) is int and a.history == 3


def test_a_crowd_reads_its_range_once_and_gives_back_what_it_mapped():
    memory = sysmem.default(address_bits=32) if sysmem.NATIVE_BITS == 64 else sysmem.default()
    before = reservations()
    with Crowd(memory) as crowd:
        addr = memory.reserve(0, 4 * 8192)
        memory.release(addr, 4 * 8192)
        size = Flip(8192, 4 * 8192)
        assert crowd.occupy(addr, size) == addr and size.reads == 1
        assert crowd.blocks == [(addr, 8192)] and type(crowd.blocks[0][1]) is int
    assert reservations() == before


def test_peek_and_poke_read_each_argument_once():
    buffer = (ctypes.c_char * 64)()
    addr = ctypes.addressof(buffer)
    read_once(lambda a: poke(a, b"xy"), addr)
    read_once(peek, addr, 2)
    assert buffer.raw[:2] == b"xy"


# -- 15, 16, 17: wrong things at the door -------------------------------------------------


@pytest.mark.parametrize("text", [None, 123, ["00400000-00401000 r-xp 00000000 00:00 0"], b"x"])
def test_crowd_from_maps_needs_text(text):
    with pytest.raises(TypeError, match="maps dump"):
        Crowd.from_maps(text)


@pytest.mark.parametrize("memory", ["cffi", 5, object(), ScriptedMemory])
def test_a_crowd_needs_a_memory_layer(memory):
    with pytest.raises(TypeError, match="memory layer"):
        Crowd(memory)
    with pytest.raises(TypeError, match="memory layer"):
        Crowd.from_maps(example_maps("python3-i386"), memory=memory)


class Duck:
    """A memory layer of one's own: the native layer's methods, and whatever attributes a test gives."""

    def __init__(self, **attributes):
        inner = sysmem.default()
        for op in ("reserve", "reserve_exact", "commit", "decommit", "release"):
            setattr(self, op, getattr(inner, op))
        self.address_bits = inner.address_bits
        for name in ("page_size", "limit", "lowest"):
            setattr(self, name, getattr(inner, name))
        for name, value in attributes.items():
            if value is None:
                delattr(self, name)
            else:
                setattr(self, name, value)


USERS = [
    ("Arena", lambda m: arena.Arena(NATIVE, memory=m)),
    ("HeapArenas", lambda m: arena.HeapArenas(NATIVE, memory=m)),
    ("Crowd", lambda m: Crowd(m)),
    ("layer", lambda m: sysmem.layer(m, None)),
]


@pytest.mark.parametrize("user", [u for _, u in USERS], ids=[n for n, _ in USERS])
@pytest.mark.parametrize("attributes, exc, words", [
    ({"page_size": None}, TypeError, "page_size"),
    ({"limit": None}, TypeError, "limit"),
    ({"lowest": None}, TypeError, "lowest"),
    ({"address_bits": None}, TypeError, "address_bits"),
    ({"page_size": 0}, ValueError, "page_size"),
    ({"page_size": 3000}, ValueError, "page_size"),
    ({"page_size": 4096.0}, TypeError, "page_size"),
    ({"address_bits": 16}, ValueError, "address_bits|-bit layout needs"),
    ({"lowest": 0}, ValueError, "lowest"),
    ({"limit": 4096}, ValueError, "limit"),
], ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{k}={v[k]}" for k in v))
def test_a_memory_layer_of_ones_own_is_checked_whole(user, attributes, exc, words):
    before = reservations()
    with pytest.raises(exc, match=words):
        user(Duck(**attributes))
    assert reservations() == before


def test_a_memory_layer_of_ones_own_with_every_part_works():
    with arena.Arena(NATIVE, memory=Duck()) as a:
        assert a.sys_alloc(8192) is not None


@pytest.mark.parametrize("layout", ["32", None, 5, arena.LAYOUT_32.__dict__])
def test_hunt_needs_a_layout(layout):
    with pytest.raises(TypeError, match="layout must be a Layout"):
        hunt.hunt(layout=layout, examples=1)


@pytest.mark.parametrize("target", ["x", 5, hunt.arena_target])
def test_hunt_needs_a_target(target):
    with pytest.raises(TypeError, match="target must be a Target"):
        hunt.hunt(target=target, layout=arena.LAYOUT_32, examples=1)
