"""verify() on heap arenas finds each kind of violation it names, and the views show them."""
import json
import xml.etree.ElementTree as ET

import pytest

import arena
from arena import sysmem
from arena.harness.check import verify
from arena.harness.run import drive, observe
from arena.interface import cli, svg
from arena.interface.maps import annotate
from arena.policy.layout import MiB

L32 = arena.LAYOUT_32
SIZE = L32.heap_arena_size


@pytest.fixture
def h():
    with arena.HeapArenas(L32, initial_size=16 * MiB) as h:
        h.sys_alloc(MiB)  # from the pre-reservation
        h.sys_alloc(32 * MiB)  # past it: at the hint
        yield h


def kinds(h):
    return [v.kind for v in verify(h)]


def test_sound_heap_arenas_have_no_violation(h):
    assert kinds(h) == [] and [r.role for r in h.regions] == ["metadata", "prereserved", "heap"]


def test_an_allocation_no_longer_read_write_is_found(h):
    p, size = h.allocations[0]
    h.memory.decommit(p, size)  # behind the heap's back
    assert kinds(h) == ["not-mapped", "index-unmapped"]


def test_a_region_unmapped_behind_its_back_is_found(h):
    region = h.regions[-1]
    h.memory.release(region.start, region.size)
    assert set(kinds(h)) == {"not-mapped", "index-unmapped", "unmapped"}


def test_an_unregistered_allocation_is_found(h):
    p, size = h.allocations[-1]
    del h._index[0][h._arena_index(p)]  # tamper: the index forgot an arena
    assert kinds(h) == ["not-heap"]


def test_a_stray_arena_in_the_index_is_found(h):
    p, size = h.allocations[-1]
    h._index[0][h._arena_index(p + size)] = p  # tamper: registered, never handed out
    assert kinds(h) == ["stray-arena"]


def test_overlapping_allocations_are_found(h):
    p, size = h.allocations[-1]
    h._allocations.append((p + size - SIZE, SIZE))  # tamper: a double hand-out
    assert kinds(h) == ["overlap"]


def test_a_region_it_did_not_make_is_found(h):
    memory = sysmem.default(address_bits=32)
    p = memory.reserve(0, MiB)
    try:
        h._regions.append((p, MiB, "heap"))  # tamper
        assert kinds(h) == ["foreign"]
    finally:
        h._regions.pop()
        memory.release(p, MiB)


def test_fewer_registered_arenas_after_an_event_is_found(h):
    last = h._events[-1]
    after = arena.HeapState(*last[7:])
    h._events.append((*last[:7], *after._replace(arenas=after.arenas - 1)))  # tamper
    assert kinds(h) == ["arena-unregistered"]


def test_verify_refuses_closed_heap_arenas():
    h = arena.HeapArenas(L32, initial_size=0)
    h.close()
    with pytest.raises(arena.ArenaClosed):
        verify(h)


def test_maps_and_picture_show_heap_arenas(h):
    o = observe(drive(h, []))
    rows = annotate(h, sysmem.mappings())
    roles = [role for row in rows for role in row["roles"]]
    assert "metadata" in roles and "heap" in roles and any(r.startswith("committed (") for r in roles)
    doc = ET.fromstring(svg.draw([o], "heap arenas"))
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert doc.findall(".//s:rect[@class='heap']", ns)
    assert doc.findall(".//s:g[@class='marker hint']", ns)


def test_the_demo_picture_marks_the_low_answer_to_go1_11s_hint(tmp_path, capsys):
    path = tmp_path / "d.svg"
    assert cli.main(["demo", "--rule", "go1.11", "--svg", str(path)]) == 0
    doc = ET.parse(path).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    low = doc.find(".//s:rect[@id='low-go1_11-0']", ns)
    assert low is not None and "0x10000000: not at its hint, given back" in low.find("s:title", ns).text


def test_the_demo_shows_go1_11_sound(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # each rule's decisions on one line
    assert cli.main(["demo", "--json"]) == 0
    rules = {r["rule"]: r for r in json.loads(capsys.readouterr().out)["rules"]}
    go111 = rules["go1.11"]
    assert go111["violations"] == [] and go111["lost"] == [] and go111["intact"]
    assert go111["returned"][-1] == 0x10000000 and go111["bounds"]["arenas"] == 36
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "go1.11" in out and "asked at 0x78400000, got 0x10000000: released; committed 0x10000000" in out


@pytest.mark.needs_64_bit
def test_the_documented_example_runs(capsys):
    import pathlib
    import re

    doc = pathlib.Path(__file__).parent.parent / "docs" / "heap-arenas.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(doc), "exec"), {})
    assert "('0xc004000000', False)" in capsys.readouterr().out
