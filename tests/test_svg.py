"""The address-space picture: valid SVG holding the expected elements, small regions visible."""
import xml.etree.ElementTree as ET

import pytest

import arena
from arena.harness.run import observe
from arena.interface import cli, demo, svg

NS = {"svg": "http://www.w3.org/2000/svg"}


def outcomes(layout=arena.LAYOUT_32):
    found = []
    for rule in arena.RULES:
        r = demo.replay_20259(rule, layout)
        with r.arena:
            found.append(observe(r))
    return found


def classes(root, name):
    return [e for e in root.iter() if name in e.get("class", "").split()]


def drawn(root, name):
    """Elements of class ``name`` in the lanes (the legend has a swatch of each)."""
    return [e for lane in root.findall("svg:g[@class='lane']", NS) for e in classes(lane, name)]


@pytest.fixture(scope="module")
def picture():
    return ET.fromstring(svg.draw(outcomes(), "Go issue 20259", "a note"))


@pytest.mark.backend_independent
def test_it_is_svg(picture):
    assert picture.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(picture.get("width")) > 0 and float(picture.get("height")) > 0


@pytest.mark.backend_independent
def test_one_lane_per_rule_with_every_allocation(picture):
    lanes = picture.findall("svg:g[@class='lane']", NS)
    assert [lane.get("id") for lane in lanes] == ["lane-fixed", "lane-legacy", "lane-go1_9", "lane-strict"]
    for lane in lanes:
        assert len(classes(lane, "allocation")) == len(demo.LIVE) + 1


@pytest.mark.backend_independent
def test_allocations_lost_by_legacy_are_marked(picture):
    lost = drawn(picture, "lost")
    assert len(lost) == len(demo.LIVE)
    assert all(e.get("id").startswith("alloc-legacy-") for e in lost)
    assert all("LOST" in e.find("svg:title", NS).text for e in lost)


@pytest.mark.backend_independent
def test_the_low_mapping_is_drawn_in_every_lane_released_where_rejected(picture):
    low = drawn(picture, "low-mapping")
    assert [e.get("id") for e in low] == ["low-fixed-0", "low-legacy-0", "low-go1_9-0", "low-strict-0"]
    assert "released" in low[0].get("class") and "released" not in low[1].get("class")


@pytest.mark.backend_independent
def test_bounds_markers_before_and_after_each_decision(picture):
    legacy = picture.find("svg:g[@id='lane-legacy']", NS)
    for name in ("arena_start", "arena_used", "arena_end"):
        assert len(classes(legacy, name)) == 8  # one per event
    # The growth decision lowers arena_used: a hollow "before" and a thick arrow.
    lowered = legacy.find("svg:g[@id='arena_used-legacy-6']", NS)
    assert classes(lowered, "before") and classes(lowered, "lowered")


@pytest.mark.backend_independent
def test_the_scale_says_it_is_compressed(picture):
    assert len(classes(picture, "gap-break")) >= 3
    scale = picture.find(".//svg:text[@id='scale']", NS)
    assert "not linear" in scale.text and "\u2248" in scale.text
    assert picture.find(".//svg:g[@id='legend']", NS) is not None


@pytest.mark.backend_independent
def test_a_1_mib_allocation_stays_visible_beside_gigabytes(picture):
    first = picture.find(".//svg:rect[@id='alloc-fixed-0']", NS)
    assert float(first.get("width")) >= svg.MIN_SEGMENT


@pytest.mark.needs_64_bit
def test_a_64_bit_picture_has_no_lost_allocations():
    root = ET.fromstring(svg.draw(outcomes(arena.LAYOUT_64), "64-bit"))
    assert drawn(root, "lost") == []
    assert len(drawn(root, "low-mapping")) == len(arena.RULES)


@pytest.mark.parametrize("command", ["demo", "replay"])
def test_svg_flag_writes_the_picture(capsys, tmp_path, command):
    path = tmp_path / "map.svg"
    argv = ["demo", "--rule", "legacy"]
    if command == "replay":
        cli.main([*argv, "--save-trace", str(tmp_path / "t.json")])
        argv = ["replay", str(tmp_path / "t.json")]
    cli.main([*argv, "--svg", str(path)])
    assert str(path) in capsys.readouterr().out
    root = ET.parse(path).getroot()
    assert len(drawn(root, "lost")) == len(demo.LIVE)


def long_legacy_run(commits=3000):
    """The 20259 shape buried in a long run: thousands of 8 KiB commits, the low answer, more commits."""
    from arena.harness.run import Replay
    from arena.spaces import ScriptedMemory

    memory = ScriptedMemory(arena.sysmem.default(address_bits=32), [None, demo.LOW_ANSWER])
    a = arena.Arena(arena.LAYOUT_32, "legacy", memory=memory, start=demo.ARENA_AT, initial_size=128 << 20)
    r = Replay(a, [], [])
    for n in [8192] * commits + [128 << 20] + [8192] * commits:
        r.requests.append(n)
        r.returned.append(a.sys_alloc(n))
    return r


def test_a_long_run_stays_a_picture_and_keeps_the_decision_that_matters():
    r = long_legacy_run()
    with r.arena:
        o = observe(r)
    assert len(o.events) > 6000 and len(o.allocations) > 6000
    text = svg.draw([o], "a long run")
    # Without the limits this one lane made 5.8 MB, 144,000 px tall.
    assert len(text) < 150_000
    root = ET.fromstring(text)
    assert float(root.get("height")) < 2_000
    lane = root.find("svg:g[@id='lane-legacy']", NS)
    rows = [t.text for t in lane.findall("svg:text", NS) if t.text and (":" in t.text) and "not drawn" not in t.text
            and not t.text.startswith(("legacy", "low mmap"))]
    assert len(rows) <= svg.MAX_ROWS
    assert any(row.startswith("grow 128 MiB: accepted 0x10000000") for row in rows)  # the lowering, kept
    left = [t.text for t in lane.findall("svg:text", NS) if t.text and "not drawn" in t.text]
    assert left and all("arena replay lists every one" in t for t in left)
    assert sum(int(t.split()[1].replace(",", "")) for t in left) + len(rows) == len(o.events)
    # Thousands of allocations are a few shapes, the lost ones apart, each saying how many it stands for.
    allocations = classes(lane, "allocation")
    assert len(allocations) <= 4
    lost = [e for e in allocations if "lost" in e.get("class")]
    assert lost and lost[0].find("svg:title", NS).text.startswith(f"{len(o.lost):,} lost allocations in [")
