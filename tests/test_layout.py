import dataclasses
import struct

import pytest

import arena
from arena import sysmem
from arena.policy.layout import MiB


@pytest.mark.backend_independent
def test_go_constants():
    assert arena.LAYOUT_32.max_mem == 2**32 - 1 and arena.LAYOUT_64.max_mem == 2**39 - 1
    for layout in (arena.LAYOUT_32, arena.LAYOUT_64):
        assert layout.page_size == 8192 and layout.growth_step == 256 * MiB
    assert arena.LAYOUT_32.arena_start_is_zero and not arena.LAYOUT_64.arena_start_is_zero
    assert arena.LAYOUT_32.first_sizes == (512 * MiB, 256 * MiB, 128 * MiB, 0)
    assert arena.LAYOUT_32.metadata_size == 258 * MiB
    assert arena.LAYOUT_32.fallback and not arena.LAYOUT_64.fallback
    hints = arena.LAYOUT_64.first_hints
    assert len(hints) == 0x80 and hints[0] == 0x00C000000000 and hints[1] == 0x01C000000000


@pytest.mark.backend_independent
def test_native_layout_follows_pointer_size():
    expected = arena.LAYOUT_32 if struct.calcsize("P") == 4 else arena.LAYOUT_64
    assert arena.native_layout() is expected


@pytest.mark.backend_independent
def test_layouts_are_frozen_and_replace_makes_variants():
    with pytest.raises(dataclasses.FrozenInstanceError):
        arena.LAYOUT_32.max_mem = 1
    small = dataclasses.replace(arena.LAYOUT_32, growth_step=16 * MiB, first_sizes=(0,))
    assert small.growth_step == 16 * MiB and arena.LAYOUT_32.growth_step == 256 * MiB


@pytest.mark.parametrize(
    "change, exc, words",
    [
        ({"address_bits": 48}, ValueError, "address_bits"),
        ({"address_bits": "32"}, TypeError, "address_bits"),
        ({"max_mem": 0}, ValueError, "max_mem"),
        ({"max_mem": 2**32}, ValueError, "max_mem"),
        ({"page_size": 12288}, ValueError, "page_size"),
        ({"page_size": 2048}, ValueError, "page_size"),
        ({"growth_step": 0}, ValueError, "growth_step"),
        ({"growth_step": 4096}, ValueError, "growth_step"),
        ({"metadata_size": -8192}, ValueError, "metadata_size"),
        ({"first_sizes": ()}, ValueError, "first_sizes"),
        ({"first_sizes": [0]}, TypeError, "first_sizes"),
        ({"first_sizes": (4096,)}, ValueError, "first_sizes"),
        ({"first_hints": (1.5,)}, TypeError, "first_hints"),
        ({"first_hints": (2**32,)}, ValueError, "first_hints"),
        ({"fallback": 1}, TypeError, "fallback"),
        ({"name": None}, TypeError, "name"),
        ({"strand_limit": 2.0}, TypeError, "strand_limit"),
    ],
)
@pytest.mark.backend_independent
def test_invalid_layouts_are_refused(change, exc, words):
    with pytest.raises(exc, match=words):
        dataclasses.replace(arena.LAYOUT_32, **change)


@pytest.mark.backend_independent
def test_fallback_is_32_bit_only():
    with pytest.raises(ValueError, match="fallback"):
        dataclasses.replace(arena.LAYOUT_64, fallback=True)


@pytest.mark.backend_independent
def test_go_1_11_heap_arena_constants():
    assert (arena.LAYOUT_64.heap_arena_size, arena.LAYOUT_32.heap_arena_size) == (64 * MiB, 4 * MiB)
    assert (arena.LAYOUT_64.heap_addr_bits, arena.LAYOUT_32.heap_addr_bits) == (48, 32)
    assert (arena.LAYOUT_64.arena_bits, arena.LAYOUT_32.arena_bits) == (22, 10)
    assert (arena.LAYOUT_64.arena_base_offset, arena.LAYOUT_32.arena_base_offset) == (1 << 47, 0)
    assert (arena.LAYOUT_64.max_alloc, arena.LAYOUT_32.max_alloc) == (1 << 48, (1 << 32) - 1)
    # Left out, they take Go's value for the address bits: older layouts stay valid.
    custom = arena.Layout(name="custom", address_bits=32, max_mem=(1 << 32) - 1)
    assert custom.heap_arena_size == 4 * MiB and custom.heap_addr_bits == 32


@pytest.mark.parametrize(
    "change, exc, words",
    [
        ({"heap_arena_size": 3 * MiB}, ValueError, "heap_arena_size"),
        ({"heap_arena_size": 4096}, ValueError, "heap_arena_size"),
        ({"heap_arena_size": 4.0}, TypeError, "heap_arena_size"),
        ({"heap_addr_bits": 33}, ValueError, "heap_addr_bits"),
        ({"arena_l1_bits": 11}, ValueError, "arena_l1_bits"),
        ({"arena_base_offset": 1 << 32}, ValueError, "arena_base_offset"),
        ({"arena_l1_bits": True}, TypeError, "arena_l1_bits"),
    ],
)
@pytest.mark.backend_independent
def test_invalid_heap_arena_fields_are_refused(change, exc, words):
    with pytest.raises(exc, match=words):
        dataclasses.replace(arena.LAYOUT_32, **change)


@pytest.mark.parametrize(
    "base, change, words",
    [
        # Issue 19, finding 10: an offset that is no multiple of the heap arena size made heap
        # arenas straddle index entries (verify: stray-arena).
        (arena.LAYOUT_32, {"arena_base_offset": 4096}, "arena_base_offset must be a multiple of heap_arena_size"),
        (arena.LAYOUT_64, {"arena_base_offset": (1 << 47) + 8192}, "arena_base_offset must be a multiple"),
        # Finding 11: a 2**35-entry first level of the index was a MemoryError.
        (arena.LAYOUT_64, {"heap_arena_size": 8192, "arena_l1_bits": 35}, "arena_l1_bits must be in \\[0, 16\\]"),
        (arena.LAYOUT_64, {"arena_l1_bits": 17}, "arena_l1_bits must be in \\[0, 16\\]"),
        # A second level of 2**35 entries: Go's practical limit is 22 bits.
        (arena.LAYOUT_64, {"heap_arena_size": 8192}, "arena_l1_bits must be at least 13"),
    ],
)
@pytest.mark.backend_independent
def test_the_arena_index_is_bounded_and_aligned(base, change, words):
    with pytest.raises(ValueError, match=words):
        dataclasses.replace(base, **change)


def test_the_bounds_the_validator_guarantees():
    from arena.policy.layout import L1_BITS_MAX, L2_BITS_MAX

    # The widest valid index: 8 KiB heap arenas over 48 bits need 13 first-level bits.
    wide = dataclasses.replace(arena.LAYOUT_64, heap_arena_size=8192, arena_l1_bits=13)
    assert wide.arena_bits == 35 and wide.arena_bits - wide.arena_l1_bits == L2_BITS_MAX
    assert 2**wide.arena_l1_bits <= 2**L1_BITS_MAX
    if sysmem.NATIVE_BITS == 64:
        with arena.HeapArenas(wide) as h:  # made at once: the first level only
            assert len(h._index) == 2**13


@pytest.mark.backend_independent
def test_check_layout_validates_a_layout_changed_behind_its_back():
    from arena.policy.layout import check_layout

    layout = dataclasses.replace(arena.LAYOUT_32)
    object.__setattr__(layout, "arena_base_offset", 4096)  # frozen, but not against this
    with pytest.raises(ValueError, match="arena_base_offset"):
        check_layout(layout)
    with pytest.raises(ValueError, match="arena_base_offset"):
        arena.HeapArenas(layout)
    with pytest.raises(ValueError, match="arena_base_offset"):
        arena.Arena(layout)
