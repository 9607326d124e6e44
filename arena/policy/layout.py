"""Address-space layouts: the constants of Go's arena on 32- and 64-bit.

Where a default differs from Go it says so and why.
"""
from __future__ import annotations

import dataclasses
import operator
import struct
from typing import cast

from ..words import GiB as GiB  # KiB, MiB and GiB are imported from here too ("as": re-exported)
from ..words import KiB as KiB
from ..words import MiB as MiB
from ..words import plural, size_text


@dataclasses.dataclass(frozen=True, repr=False)
class Layout:
    """What an arena assumes about its address space; ``dataclasses.replace`` makes variants.

    ``LAYOUT_32`` and ``LAYOUT_64`` are Go's; each field below says what it
    is in Go. ``TypeError`` for a field of the wrong type, ``ValueError``
    for a value out of range (naming the field): ``validate`` lists the bounds.
    """

    name: str
    address_bits: int
    # The heap may span at most max_mem + 1 bytes from arena_start (Go's _MaxMem).
    max_mem: int
    # The arena's page (Go's _PageSize), larger than the OS page.
    page_size: int = 8 * KiB
    # Growth reserves round(n + page_size, growth_step) bytes at a time.
    growth_step: int = 256 * MiB
    # 32-bit Go sets arena_start to 0 so reservations anywhere count as heap.
    arena_start_is_zero: bool = False
    # First-reservation hints tried in order, each taken only if honoured exactly;
    # empty means Go's 32-bit rule: just above the binary and the program break.
    first_hints: tuple[int, ...] = ()
    # Arena sizes tried for the first reservation, largest first (Go's 32-bit ladder).
    first_sizes: tuple[int, ...] = (256 * MiB,)
    # Heap metadata (bitmap and spans) reserved below the arena in the first reservation.
    metadata_size: int = 0
    # Whether a small mapping anywhere may serve a request the reservation cannot (32-bit only in Go).
    fallback: bool = False
    # go1.9 rule: strand at most this much of the current block to jump to a new one.
    strand_limit: int = 16 * MiB
    # Go 1.11's sparse heap (``HeapArenas``); None takes Go 1.11's value for
    # address_bits on Linux (x86-64 and 386), malloc.go lines 161-298.
    # heapArenaBytes: the heap is made of aligned arenas of this size (64 MiB; 4 MiB on 32-bit).
    heap_arena_size: int | None = None
    # heapAddrBits: the arena index covers addresses of this many bits (48; 32 on 32-bit).
    heap_addr_bits: int | None = None
    # arenaL1Bits: bits of an arena number taken by the first level of the index (0 on Linux).
    arena_l1_bits: int | None = None
    # arenaBaseOffset: added to an address before indexing (1 << 47 on amd64, so that
    # sign-extended "negative" addresses index too; 0 on 386).
    arena_base_offset: int | None = None

    def __post_init__(self) -> None:
        validate(self)

    def __repr__(self) -> str:
        hints = self.first_hints
        where = f"{plural(len(hints), 'hint')} from {hints[0]:#x}" if hints else "first hint above the program break"
        return (f"<Layout {self.name!r}: {self.address_bits} address bits, max_mem {self.max_mem:#x}, "
                f"page {size_text(self.page_size)}, growth step {size_text(self.growth_step)}, {where}>")

    @property
    def arena_bits(self) -> int:
        """Bits of an arena number (Go's arenaBits): the index has ``2**arena_bits`` entries."""
        bits, size = self.heap_addr_bits, self.heap_arena_size
        assert bits is not None and size is not None  # validate filled them in
        return bits - (size.bit_length() - 1)

    @property
    def max_alloc(self) -> int:
        """Go 1.11's maxAlloc: the largest allocation, ``2**heap_addr_bits`` (less one on 32-bit, so it fits a uintptr)."""
        bits = self.heap_addr_bits
        assert bits is not None  # validate filled it in
        return (1 << bits) - (self.address_bits == 32)


# Bounds on Go 1.11's arena index (see validate).
L1_BITS_MAX = 16
L2_BITS_MAX = 22


def validate(layout: Layout) -> None:
    """Check every field of ``layout`` against what Go allows; one ``TypeError`` or ``ValueError`` naming the field.

    The one check of a layout: ``Layout`` runs it when made, ``check_layout``
    again on every layout a manager is given (a frozen dataclass can still be
    changed with ``object.__setattr__``). It fills the Go 1.11 fields left
    ``None`` with Go's values, and makes an int of a subclass of int a plain
    int (read once, here). What it guarantees, so that any valid layout is
    cheap to use (a trace's included):

    - ``address_bits`` is 32 or 64; ``page_size`` a power of two of at least
      4 KiB; ``max_mem``, ``growth_step`` (positive), ``metadata_size``,
      ``strand_limit``, every ``first_hints`` and ``first_sizes`` entry lie in
      ``[0, 2**address_bits)``, all but ``max_mem`` multiples of ``page_size``.
    - ``heap_addr_bits`` in ``[12, address_bits]``; ``heap_arena_size`` a power
      of two, at least ``page_size``, below ``2**heap_addr_bits``;
      ``arena_base_offset`` a multiple of ``heap_arena_size`` below
      ``2**address_bits`` (Go's are 0 and 2**47: else heap arenas straddle
      index entries).
    - The arena index is bounded: ``arena_l1_bits <= L1_BITS_MAX`` (16; Go's L1
      map is a static array: 0 bits, 6 on 64-bit Windows), so ``HeapArenas``
      makes at most 2**16 first-level entries at once; ``arena_bits -
      arena_l1_bits <= L2_BITS_MAX`` (22, "about the practical threshold" in
      Go's malloc.go), so a second-level map has at most 2**22 entries, and
      the index at most 2**38. The 32-bit metadata reservation is then
      ``2**arena_bits`` <= 2**20 arenas' worth.
    """
    for field in dataclasses.fields(layout):
        value = getattr(layout, field.name)
        if field.type == "bool" and not isinstance(value, bool):
            raise TypeError(f"Layout.{field.name} must be a bool, got {value!r}")
        if field.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"Layout.{field.name} must be an int, got {value!r}")
        if isinstance(value, int) and type(value) not in (int, bool):
            object.__setattr__(layout, field.name, operator.index(value))  # a subclass's own methods are never asked again
    if not isinstance(layout.name, str):
        raise TypeError(f"Layout.name must be a str, got {layout.name!r}")
    if layout.address_bits not in (32, 64):
        raise ValueError(f"Layout.address_bits must be 32 or 64, got {layout.address_bits}")
    top = 1 << layout.address_bits
    if layout.page_size < 4 * KiB or layout.page_size & (layout.page_size - 1):
        raise ValueError(f"Layout.page_size must be a power of two of at least 4 KiB, got {layout.page_size:#x}")
    if not 0 < layout.max_mem < top:
        raise ValueError(f"Layout.max_mem must be in (0, 2**{layout.address_bits}), got {layout.max_mem:#x}")
    for name in ("growth_step", "metadata_size", "strand_limit"):
        value = getattr(layout, name)
        if value < 0 or value % layout.page_size or value >= top:
            raise ValueError(f"Layout.{name} must be a multiple of page_size below 2**{layout.address_bits}, got {value:#x}")
    if layout.growth_step == 0:
        raise ValueError("Layout.growth_step must be positive")
    for name in ("first_hints", "first_sizes"):
        values = getattr(layout, name)
        if not isinstance(values, tuple) or not all(type(v) is int for v in values):
            raise TypeError(f"Layout.{name} must be a tuple of ints, got {values!r}")
        for v in values:
            if not 0 <= v < top:
                raise ValueError(f"Layout.{name} holds {v:#x}: outside [0, 2**{layout.address_bits})")
            if v % layout.page_size:
                raise ValueError(f"Layout.{name} holds {v:#x}: not a multiple of page_size {layout.page_size:#x}")
    if not layout.first_sizes:
        raise ValueError("Layout.first_sizes must name at least one size")
    if layout.fallback and layout.address_bits != 32:
        raise ValueError("Layout.fallback is Go's 32-bit path: a 64-bit arena's reservation is all it has")
    _validate_heap_arena_fields(layout)


def _validate_heap_arena_fields(layout: Layout) -> None:
    """Fill the sparse-heap fields left None with Go 1.11's values (malloc.go lines 161-298) and check them."""
    wide = layout.address_bits == 64
    go = {
        "heap_arena_size": 64 * MiB if wide else 4 * MiB,
        "heap_addr_bits": 48 if wide else 32,
        "arena_l1_bits": 0,
        "arena_base_offset": 1 << 47 if wide else 0,
    }
    for name, value in go.items():
        given = getattr(layout, name)
        if given is None:
            object.__setattr__(layout, name, value)
        elif isinstance(given, bool) or not isinstance(given, int):
            raise TypeError(f"Layout.{name} must be an int or None, got {given!r}")
    # Filled in above: ints from here on.
    size, bits, l1, offset = (cast(int, getattr(layout, name)) for name in go)
    if not 12 <= bits <= layout.address_bits:
        raise ValueError(f"Layout.heap_addr_bits must be in [12, {layout.address_bits}], got {bits}")
    if size < layout.page_size or size & (size - 1) or size >= 1 << bits:
        raise ValueError(
            f"Layout.heap_arena_size must be a power of two of at least page_size below 2**heap_addr_bits, got {size:#x}"
        )
    arena_bits = bits - (size.bit_length() - 1)
    l1_max = min(arena_bits, L1_BITS_MAX)
    if not 0 <= l1 <= l1_max:
        raise ValueError(f"Layout.arena_l1_bits must be in [0, {l1_max}] (the first level of the arena index has "
                         f"2**arena_l1_bits entries, at most 2**{L1_BITS_MAX}), got {l1}")
    if arena_bits - l1 > L2_BITS_MAX:
        raise ValueError(
            f"Layout.arena_l1_bits must be at least {arena_bits - L2_BITS_MAX} with heap_arena_size {size:#x} and "
            f"heap_addr_bits {bits}: an arena number has {arena_bits} bits, and the second level of the index "
            f"covers at most {L2_BITS_MAX} of them (Go's practical limit), got {l1}")
    if not 0 <= offset < 1 << layout.address_bits or offset % size:
        raise ValueError(f"Layout.arena_base_offset must be a multiple of heap_arena_size {size:#x} below "
                         f"2**{layout.address_bits} (Go's are 0 and 2**47), got {offset:#x}")


def check_layout(value: object) -> Layout:
    """``value``, checked by ``validate``, if it is a ``Layout``; else ``TypeError`` saying which one to pass
    (``"32"`` is ``LAYOUT_32``)."""
    if isinstance(value, Layout):
        validate(value)
        return value
    named = isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) in ("32", "64")
    fix = (f"use arena.LAYOUT_{value} (the command line and traces name it {str(value)!r})" if named
           else "use arena.LAYOUT_32, arena.LAYOUT_64, or a variant made with dataclasses.replace")
    raise TypeError(f"layout must be a Layout, not {type(value).__name__} ({value!r}): {fix}")


LAYOUT_32 = Layout(
    name="32-bit",
    address_bits=32,
    max_mem=(1 << 32) - 1,
    arena_start_is_zero=True,
    first_sizes=(512 * MiB, 256 * MiB, 128 * MiB, 0),
    # bitmap: 2 bits per 4-byte word of 4 GiB; spans: one pointer per 8 KiB page.
    metadata_size=256 * MiB + 2 * MiB,
    fallback=True,
)

LAYOUT_64 = Layout(
    name="64-bit",
    address_bits=64,
    max_mem=(1 << 39) - 1,
    first_hints=tuple(i << 40 | 0x00C0 << 32 for i in range(0x80)),
    # Differs from Go, which reserved all 512 GiB (and 16.5 GiB of metadata) up
    # front: that would leave the growth path, the one Go commit e5a5c03 guards, idle.
    # The first arena is one growth step; metadata is not modelled on 64-bit.
    first_sizes=(256 * MiB,),
)


def native_layout() -> Layout:
    """The layout of this process: ``LAYOUT_32`` with 4-byte pointers, else ``LAYOUT_64``."""
    return LAYOUT_32 if struct.calcsize("P") == 4 else LAYOUT_64
