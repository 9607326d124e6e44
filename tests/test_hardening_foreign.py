"""Foreign memory is untouched: mappings the arena does not own keep their bytes and permissions.

Somebody else's mappings (plain mmap, filled with known bytes, read-write or
read-only) are placed just below the first reservation, at the address each
growth hint prefers (arena_end, so the kernel must answer elsewhere), just
above and below every region the arena gets, and in the gaps between them.
Thousands of random requests later, under every rule and layout, each is
byte-identical and mapped with its original permissions, and the call log
shows every commit inside a reservation the arena held at that moment.
"""
import random
import re
from pathlib import Path

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.spaces import ScriptedMemory, peek, poke
from budget import budget
from hardening_util import LAYOUTS, Foreign, commits_inside_reservations

ROOT = Path(__file__).resolve().parent.parent
# The package under test, wherever it was imported from (a checkout or an install).
PACKAGE = Path(arena.__file__).resolve().parent
OPS = budget(1000)
FOREIGN_SIZE = 64 * 1024


MAX_FOREIGN = 48


def _surround(foreign, a, seed):
    """Foreign mappings just below and above the newest region (its end is the next growth hint)."""
    placed = 0
    for r in a.regions[-1:]:
        if len(foreign.maps) >= MAX_FOREIGN:
            break
        for addr in (r.start - FOREIGN_SIZE, r.end, a.arena_end):
            if addr >= a.memory.lowest and addr + FOREIGN_SIZE <= a.memory.limit:
                placed += foreign.place(addr, FOREIGN_SIZE, writable=(seed + placed) % 2 == 0, seed=seed + placed)
    return placed


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name.replace(" ", "-"))
@pytest.mark.parametrize("rule", arena.RULES)
def test_foreign_mappings_survive_random_operations(rule, layout):
    rng = random.Random(f"{rule}/{layout.name}")
    inner = sysmem.default(address_bits=layout.address_bits)

    def just_past_the_foreign_one(hint, size):
        # Half the time the growth lands one foreign mapping's width above its
        # hint (a gap then holds another foreign mapping); else the kernel answers.
        p = hint + 2 * FOREIGN_SIZE
        if hint and rng.random() < 0.5 and p + size <= inner.limit and any(
            lo <= p and p + size <= hi for lo, hi in sysmem.free_gaps(sysmem.mappings(), inner.lowest, inner.limit)
        ):
            foreign.place(hint + FOREIGN_SIZE, FOREIGN_SIZE, True, size & 0xFF)
            return p
        return None

    memory = ScriptedMemory(inner, [None] + [just_past_the_foreign_one] * OPS)
    foreign = Foreign()
    try:
        # At the first hint the arena would prefer, and just below it.
        if layout.first_hints:
            foreign.place(layout.first_hints[0], FOREIGN_SIZE, True, 1)
        with arena.Arena(layout, rule, memory=memory) as a:
            _surround(foreign, a, 10)
            seen = len(a.regions)
            written = {}
            for i in range(OPS):
                op = rng.random()
                if op < 0.85:
                    n = rng.choice([1, 2, 3, 8, 64, 512]) * layout.page_size * rng.randint(1, 4)
                    p = a.sys_alloc(n)
                    if p is not None:
                        tag = i.to_bytes(4, "little")
                        poke(p, tag)
                        poke(p + n - 4, tag)
                        written[p] = (n, tag)
                    if len(a.regions) != seen:  # a new region: surround it too
                        seen = len(a.regions)
                        _surround(foreign, a, 100 + i)
                elif op < 0.95:
                    addr = rng.choice([0, a.arena_start, a.arena_used, a.arena_end, rng.randrange(1 << layout.address_bits)])
                    assert a.contains(addr) == (a.arena_start <= addr < a.arena_used)
                elif i % 10 == 0:
                    found = verify(a)
                    assert rule == "legacy" or found == [], found
            assert rule == "legacy" or verify(a) == []
            # Every allocation kept its bytes: nothing committed twice or over somebody else.
            for p, (n, tag) in written.items():
                assert peek(p, 4) == tag and peek(p + n - 4, 4) == tag
            assert foreign.damaged() == []
            regions = len(a.regions)
        assert foreign.damaged() == [], "close() touched foreign memory"
        assert commits_inside_reservations(memory.calls) == []
        assert len(foreign.maps) >= 2 and a.stats.reservations >= 1
        print(f"{rule} {layout.name}: {len(written)} allocations, {regions} regions, {len(foreign.maps)} foreign mappings")
    finally:
        foreign.release()


def test_a_commit_outside_the_reservations_would_be_caught():
    # The call-log check is not vacuous: a commit of a released range is reported.
    inner = sysmem.default(address_bits=32)
    memory = ScriptedMemory(inner)
    p = inner.reserve(0, 1 << 20)  # not through the scripted layer: not the arena's
    try:
        memory.commit(p, 1 << 20)
        assert commits_inside_reservations(memory.calls) != []
    finally:
        inner.release(p, 1 << 20)


def _code(text, comment):
    """``text`` without its comments (C or Python)."""
    if comment == "c":
        return re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


@pytest.mark.parametrize("path, comment", [(ROOT / "native/shim.c", "c"), (PACKAGE / "sysmem/_ctypes.py", "py"),
                                           (PACKAGE / "sysmem/_cffi.py", "py"), (PACKAGE / "sysmem/_base.py", "py"),
                                           (PACKAGE / "manager.py", "py")], ids=lambda p: str(p).rsplit("/", 1)[-1])
def test_map_fixed_is_never_used(path, comment):
    # Only MAP_FIXED_NOREPLACE, which fails instead of replacing a mapping.
    code = _code(path.read_text(), comment)
    assert re.findall(r"MAP_FIXED(?!_NOREPLACE)", code) == []
    assert not re.search(r"\b0x10\b", code), "MAP_FIXED's value spelled out"
