"""A manager dropped without close(): the collector gives its mappings back, as mmap's are, never under a live view.

What could crash or hang runs in a subprocess (a crash is a return code, a deadlock a timeout).
"""
import gc
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import arena
from arena import sysmem
from arena.spaces import reservations
from hardening_util import SMALL32, SMALL64

MANAGERS = {
    "arena-32": lambda: arena.Arena(SMALL32),
    "heap-32": lambda: arena.HeapArenas(arena.LAYOUT_32, initial_size=0),
}
if sysmem.NATIVE_BITS == 64:
    MANAGERS.update({"arena-64": lambda: arena.Arena(SMALL64), "heap-64": lambda: arena.HeapArenas(arena.LAYOUT_64)})

HEADER = f"""
import gc, sys, warnings
sys.path.insert(0, {str(Path(__file__).parent)!r})
import arena
from arena import sysmem
from arena.spaces import reservations
from hardening_util import SMALL32, SMALL64
warnings.simplefilter("always")
MAKE = {{
    "arena-32": lambda: arena.Arena(SMALL32),
    "heap-32": lambda: arena.HeapArenas(arena.LAYOUT_32, initial_size=0),
    "arena-64": lambda: arena.Arena(SMALL64),
    "heap-64": lambda: arena.HeapArenas(arena.LAYOUT_64),
}}
before = reservations()
def mapped(regions):
    '''Whether every byte of the regions is still mapped.'''
    maps = sysmem.mappings()
    return all(sum(min(m.end, r.end) - max(m.start, r.start) for m in maps if m.start < r.end and r.start < m.end) == r.size
               for r in regions)
"""


def run(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", HEADER + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode >= 0, f"died of {signal.Signals(-out.returncode).name}: {out.stderr}"
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.mark.parametrize("make", MANAGERS.values(), ids=MANAGERS.keys())
def test_a_dropped_manager_is_given_back_with_a_resource_warning(make):
    before = reservations()
    m = make()
    m.sys_alloc(8192)
    name = type(m).__name__
    with pytest.warns(ResourceWarning, match=f"unclosed <{name}"):
        del m
        gc.collect()
    assert reservations() == before


@pytest.mark.parametrize("make", MANAGERS.values(), ids=MANAGERS.keys())
def test_a_closed_manager_warns_nothing(make):
    m = make()
    m.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        del m
        gc.collect()


@pytest.mark.parametrize("name", MANAGERS.keys())
def test_nothing_is_given_back_while_a_view_is_alive(name):
    out = run(f"""
        m = MAKE[{name!r}]()
        v = m.alloc(8192)
        regions = m.regions
        del m
        for _ in range(3):
            gc.collect()
            assert mapped(regions), "released under a live view"
            v[0] = v[-1] = 7  # still mapped, still read-write
        del v
        gc.collect()
        assert reservations() == before, "not given back once the view went"
        print("ok")
    """)
    assert out.stdout == "ok\n" and out.stderr.count("ResourceWarning: unclosed") == 1, out.stderr


@pytest.mark.parametrize("name", MANAGERS.keys())
def test_a_cycle_through_the_manager_and_its_views_is_given_back(name):
    run(f"""
        m = MAKE[{name!r}]()
        m.me, m.views = m, [m.alloc(8192), m.alloc(8192)[100:200]]
        del m
        gc.collect()  # one collection: the manager, its views and the cycle go together
        assert reservations() == before
    """)


@pytest.mark.parametrize("name", MANAGERS.keys())
def test_a_finalizer_in_the_same_garbage_may_still_use_a_view(name):
    # The collector runs every finalizer of a garbage cycle, in an order of its
    # own, before it frees any of it; one may write through a view, or even
    # keep it: the mappings stay as long as the view does.
    out = run(f"""
        kept = []
        class Keeper:
            def __del__(self):
                self.view[0] = self.view[-1] = 1
                kept.append(self.view)
        first = Keeper()
        m = MAKE[{name!r}]()
        last = Keeper()
        first.view = last.view = m.alloc(8192)
        first.manager, m.keepers = m, [first, last]
        del m, first, last
        gc.collect()
        kept[0][1] = kept[0][-2] = 2  # still mapped, still read-write
        print(len(kept))
        kept.clear()
        gc.collect()
        assert reservations() == before
    """)
    assert out.stdout == "2\n"


def test_interpreter_exit_with_unclosed_managers_and_live_views_is_quiet():
    out = run("""
        kept = [MAKE["arena-32"](), MAKE["heap-32"]()]
        views = [m.alloc(8192) for m in kept]
        cyclic = MAKE["arena-32"]()
        cyclic.me, cyclic.view = cyclic, cyclic.alloc(8192)
        del cyclic
        print("exiting")
    """)
    assert out.stdout == "exiting\n" and "Exception ignored" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_collection_inside_a_memory_layers_code_does_not_deadlock():
    # The confined 32-bit layers share a lock, which they hold while they
    # allocate: a collection can start there. Giving back a dropped
    # manager's mappings then would wait on this same thread for ever, so it
    # waits for a collection outside that code instead.
    out = run("""
        from arena.managers import lifetime
        memory = sysmem.default(address_bits=32)
        warnings.simplefilter("ignore")
        gc.set_threshold(1, 1, 1)  # a collection at almost every allocation
        for _ in range(200):
            m = arena.HeapArenas(arena.LAYOUT_32, initial_size=0, memory=memory)
            m.sys_alloc(8192)
            m.me = m
            del m
            ps = [memory.reserve(0, 8192) for _ in range(20)]
            for p in ps:
                memory.release(p, 8192)
        gc.set_threshold(700, 10, 10)
        gc.collect()
        assert reservations() == before and lifetime._doomed == []
        print("ok")
    """, timeout=120)
    assert out.stdout == "ok\n"
