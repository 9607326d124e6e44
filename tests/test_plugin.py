"""The pytest plugin, run in a child pytest (a leaking test must not leak into this process)."""
import pathlib
import re

from arena import sysmem

pytest_plugins = ["pytester"]

# The README's example, as the README shows it.
README_EXAMPLE = next(
    block
    for block in re.findall(r"```python\n(.*?)```", (pathlib.Path(__file__).parent.parent / "README.md").read_text(), re.S)
    if "scripted_memory" in block
)

FIXTURES = '''
import pytest
from arena.harness.check import verify

def test_arena32_is_fixed_by_default(arena32):
    assert arena32.rule == "fixed" and arena32.layout.address_bits == 32
    assert arena32.sys_alloc(1 << 20) is not None and verify(arena32) == []

@pytest.mark.parametrize("arena64", ["legacy", "go1.9"], indirect=True)
def test_arena64_takes_a_rule(arena64):
    assert arena64.rule in ("legacy", "go1.9") and arena64.layout.address_bits == 64

def test_arena_factory_scripts_the_20259_answer(arena_factory):
    a = arena_factory("32", "legacy", answers=[None, 0x10000000], start=0x70000000, initial_size=16 << 20)
    a.sys_alloc(8 << 20)
    a.sys_alloc(16 << 20)
    assert [v.kind for v in verify(a)][0] == "arena_used-decreased"

def test_crowd_occupies_real_space(crowd):
    crowd.occupy(0x30000000, 1 << 20)
    assert crowd.blocks == [(0x30000000, 1 << 20)]
'''

LEAKS = '''
from arena import sysmem

def test_leaks_through_scripted_memory(scripted_memory):
    scripted_memory([0x10000000]).reserve(0x78000000, 1 << 20)

def test_leaks_through_the_os_layer(arena_leak_check):
    sysmem.default(address_bits=32).reserve(0x20000000, 1 << 20)

def test_clean(arena_leak_check, arena32):
    arena32.sys_alloc(1 << 20)
'''


def test_the_readme_example_passes(pytester):
    pytester.makepyfile(README_EXAMPLE)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_the_fixtures_hand_out_arenas_memory_and_crowds(pytester):
    pytester.makepyfile(FIXTURES)
    # arena64 skips in a 32-bit process.
    outcome = {"passed": 3, "skipped": 2} if sysmem.NATIVE_BITS == 32 else {"passed": 5}
    pytester.runpytest_subprocess().assert_outcomes(**outcome)


def test_a_test_that_leaves_a_mapping_behind_fails(pytester):
    pytester.makepyfile(LEAKS)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_leaks_through_scripted_memory*",
        "scripted_memory: reservations never released (released now): [[]0x10000000, 0x10100000)",
        "*ERROR at teardown of test_leaks_through_the_os_layer*",
        "arena: mappings left behind: [[]0x20000000, 0x20100000) ---p",
    ])


NOT_ARENAS = '''
import ctypes
import mmap
import threading

import pytest
from arena import sysmem

libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
MAP_NORESERVE = 0x4000
LAYER = sysmem.default(address_bits=32)  # made before any test runs


def test_a_noreserve_mapping_of_the_tests_own_is_not_blamed_on_arena(arena32):
    arena32.sys_alloc(1 << 20)
    p = libc.mmap(None, 1 << 20, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    assert p not in (None, ctypes.c_void_p(-1).value)


def test_malloc_arenas_of_new_threads_are_not_blamed_on_arena(arena_leak_check):
    # glibc gives threads that malloc at once arenas of their own, reserved with MAP_NORESERVE.
    start = threading.Barrier(8)

    def churn():
        start.wait()
        kept = [bytearray(4096) for _ in range(2000)]
        del kept

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_a_layer_made_before_the_test_is_still_checked(arena_leak_check):
    LAYER.reserve(0x20000000, 1 << 20)


@pytest.mark.no_arena_leak_check
def test_the_marker_turns_the_check_off(arena_leak_check):
    sysmem.default(address_bits=32).reserve(0x21000000, 1 << 20)


def test_released_in_part_is_still_a_leak_of_the_rest(arena_leak_check):
    layer = sysmem.default(address_bits=32)
    p = layer.reserve(0x22000000, 1 << 20)
    layer.release(p, 1 << 19)
'''


def test_only_mappings_made_through_arenas_layers_are_blamed_and_a_marker_opts_out(pytester):
    pytester.makepyfile(NOT_ARENAS)
    result = pytester.runpytest_subprocess("--strict-markers")
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_a_layer_made_before_the_test_is_still_checked*",
        "arena: mappings left behind: [[]0x20000000, 0x20100000) ---p",
        "*ERROR at teardown of test_released_in_part_is_still_a_leak_of_the_rest*",
        "arena: mappings left behind: [[]0x22080000, 0x22100000) ---p",
    ])
