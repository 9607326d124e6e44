"""The built-in adversaries against real tracees, their spec syntax, user adversaries, and Space on real maps."""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena import sysmem, tracer
from arena.tracer import Below, Displace, Enomem, Gap, Observe, Space
from budget import budget

# Fixtures for the test programs: tests/tracees.py.
pytest_plugins = ["tracees"]
WIDTHS = [64, 32] if sysmem.NATIVE_BITS == 64 else [32]

# Real programs under the tracer: no memory backend (conftest checks), one run of make test.
pytestmark = [pytest.mark.usefixtures("no_leftover_processes"), pytest.mark.backend_independent]

FATAL = "fatal error: heapBitsForSpan: base out of range"
MiB = 1 << 20


def landed_at(o: tracer.Outcome, hint: int) -> int:
    """Where the mapper says its mapping hinted at ``hint`` landed."""
    assert o.stdout is not None
    (found,) = re.findall(rf"map \d+ \d+ {hint:#x} 0x[0-9a-f]+ (0x[0-9a-f]+)", o.stdout.decode())
    return int(found, 16)


def growths(o: tracer.Outcome) -> list[str]:
    assert o.stdout is not None
    return re.findall(r"growth \d+: .*", o.stdout.decode())


# -- specs ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, n", [("4096", 4096), ("0x3000", 0x3000), ("12K", 12 << 10), ("256M", 256 << 20),
                                     ("1G", 1 << 30), ("-64K", -(64 << 10)), ("2MiB", 2 << 20), (" 8k ", 8 << 10)])
def test_sizes(text, n):
    assert tracer.parse_size(text) == n


@pytest.mark.parametrize("text", ["", "12Q", "K", "1.5M", "0x", "--1"])
def test_bad_sizes(text):
    with pytest.raises(tracer.AdversarySpecError, match="is not a size"):
        tracer.parse_size(text)


@pytest.mark.parametrize("spec, cls, attrs", [
    (None, Observe, {}),
    ("observe", Observe, {}),
    ("below", Below, {"at": 1, "calls": None, "min": 0, "align": None}),
    ("below,calls=2,min=1M,align=2M", Below, {"calls": 2, "min": MiB, "align": 2 * MiB}),
    ("gap", Gap, {"min": 16 * MiB, "at": 1}),
    ("gap,min=64M,at=2", Gap, {"min": 64 * MiB, "at": 2}),
    ("displace,by=12K", Displace, {"by": 12 << 10, "calls": None}),
    ("Displace, by=-4K, calls=all", Displace, {"by": -4096, "calls": None}),
    ("enomem", Enomem, {"at": 1, "calls": 1}),
    ("enomem,at=3,calls=2,min=0x1000", Enomem, {"at": 3, "calls": 2, "min": 4096}),
])
def test_specs(spec, cls, attrs):
    adv = tracer.resolve(spec)
    assert type(adv) is cls
    for k, v in attrs.items():
        assert getattr(adv, k) == v
    # The name is a spec that makes the same adversary again.
    again = tracer.resolve(adv.name)
    assert type(again) is cls and again.name == adv.name


@given(by=st.integers(-(1 << 30), 1 << 30).filter(lambda n: n != 0).map(lambda n: n * 4096),
       at=st.integers(1, 1000), calls=st.one_of(st.none(), st.integers(1, 1000)), low=st.integers(0, 1 << 40))
def test_names_round_trip(by, at, calls, low):
    for adv in (Displace(by=by, at=at, calls=calls, min=low), Below(at=at, calls=calls, min=low),
                Enomem(at=at, calls=calls, min=low)):
        assert vars(tracer.resolve(adv.name)) == vars(adv)


@pytest.mark.parametrize("spec, words", [
    ("sideways", "not an adversary: use one of observe, below, gap, displace, enomem, scripted"),
    ("displace", "displace needs by, e.g. displace,by=12K"),
    ("displace,by=1000", "non-zero multiple of the page"),
    ("displace,by=12K,by=4K", "by given twice"),
    ("displace,bye=12K", "'bye=12K' is not a parameter .it takes by, at, calls, min"),
    ("displace,by", "'by' is not a parameter"),
    ("below,at=0", "at must be a count from 1"),
    ("below,calls=none", "is not a whole number"),
    ("below,align=12K", "align must be a power of two"),
    ("below,align=2K", "align must be at least 0x1000"),
    ("gap,min=0", "min must be at least"),
    ("enomem,min=lots", "is not a size"),
    ("observe,x=1", "it takes none"),
    ("scripted", "scripted needs file"),
    ("scripted,file=/no/such/run.json", "scripted: cannot read /no/such/run.json .No such file or directory.: give"),
    ("scripted,file=/proc/self/status", "scripted: /proc/self/status is not a saved run: .*not UTF-8 JSON"),
    ("os:path,x=1", "module:attr takes no parameters"),
    (":x", "write module:attr"),
    ("no_such_module_here:X", "cannot import no_such_module_here"),
    ("os:no_such_attr", "os has no no_such_attr"),
    ("os:getcwd", "is not an Adversary"),
    ("collections:OrderedDict", "is not an Adversary: subclass arena.tracer.Adversary"),
    (7, "not int"),
])
def test_bad_specs(spec, words):
    with pytest.raises(tracer.AdversarySpecError, match=words):
        tracer.resolve(spec)


def test_user_adversaries_load_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "my_adversaries.py").write_text(
        "from arena import tracer\n"
        "class Fail1(tracer.Adversary):\n"
        "    def decide(self, call, space):\n"
        "        return tracer.FAIL\n"
        "instance = Fail1()\n"
        "class NotOne:\n"
        "    def decide(self, call, space):\n"
        "        return tracer.KEEP\n"
        "class NeedsArgs(tracer.Adversary):\n"
        "    def __init__(self, x):\n"
        "        self.x = x\n"
        "    def decide(self, call, space):\n"
        "        return tracer.KEEP\n")
    monkeypatch.chdir(tmp_path)
    assert type(tracer.resolve("my_adversaries:Fail1")).__name__ == "Fail1"
    assert tracer.resolve("my_adversaries:instance").name == "my_adversaries:Fail1"
    with pytest.raises(tracer.AdversarySpecError, match="NotOne is not an Adversary"):
        tracer.resolve("my_adversaries:NotOne")
    with pytest.raises(tracer.AdversarySpecError, match=r"NeedsArgs\(\) failed"):
        tracer.resolve("my_adversaries:NeedsArgs")
    # Loaded by spec, it decides a real run: the first adjustable call (ld.so's first mmap) fails.
    o = tracer.run(["true"], "my_adversaries:Fail1", capture=True, timeout=60)
    assert o.failed and o.adversary == "my_adversaries:Fail1"
    assert o.calls[0].decision == "fail" and o.calls[0].answer == -12


# -- Space, on this process's real maps ------------------------------------------------


@settings(max_examples=budget(60), deadline=None)
@given(where=st.integers(0, (1 << sysmem.NATIVE_BITS) - 1), pages=st.integers(1, 1 << 16), shift=st.integers(12, 30))
def test_free_ranges_of_a_real_process(where, pages, shift):
    space = Space(os.getpid(), sysmem.NATIVE_BITS)
    size, align = pages * 4096, 1 << shift
    below = space.free_below(where, size, align)
    if below is not None:
        assert below % align == 0 and below + size <= where and below >= space.bottom
        assert space.is_free(below, size)
        # The highest: the next aligned start up does not fit below ``where`` in free space.
        up = below + align
        assert up + size > where or not space.is_free(up, size)
    above = space.free_above(where, size, align)
    if above is not None:
        assert above % align == 0 and above >= where and above + size <= space.top
        assert space.is_free(above, size)
        down = above - align
        assert down < where or not space.is_free(down, size)
    # Nothing mapped is free.
    for m in space.mappings[:20]:
        assert not space.is_free(m.start, m.size)
        assert space.mapping_at(m.start) == m
    assert space.ending_at(space.mappings[0].end) == space.mappings[0]


def test_space_of_a_process_that_ended():
    with pytest.raises(ProcessLookupError):
        _ = Space(2**22 + 1, 64).mappings


# -- the built-ins against real programs ------------------------------------------------


@pytest.mark.parametrize("bits", WIDTHS)
def test_observe_keeps_everything(build, bits):
    o = tracer.run([str(build("linear_arena", bits)), "go1.8", "3"], "observe", capture=True, timeout=60)
    assert o.exit_status == 0 and o.rewritten == 0 and o.stdout.endswith(b"ok\n")
    assert all(g.endswith("contiguous") for g in growths(o))


@pytest.mark.parametrize("bits", WIDTHS)
def test_gap_breaks_go18s_arena_and_not_the_fixed_one(build, bits):
    program = str(build("linear_arena", bits))
    broken = tracer.run([program, "go1.8", "4"], "gap", capture=True, timeout=60)
    assert broken.fatal == FATAL and broken.exit_status == 2 and broken.failed
    first, second = [r for r in broken.calls if r.rewritten]
    size = 16 * MiB
    # Step 1: the first growth moved up by its own length, leaving a hole at its hint.
    assert first.call.size == size and first.call.prot == 0
    assert first.moved_to == first.answer == first.call.hint + size
    # Step 2: the next growth, hinted at the end of the moved one, placed in the hole: below the previous end.
    assert second.call.hint == first.answer + size
    assert second.moved_to == second.answer == first.call.hint
    assert growths(broken)[1] == f"growth 2: {first.call.hint:#x} accepted, used was {first.answer + size:#x}"
    fixed = tracer.run([program, "fixed", "4"], "gap", capture=True, timeout=60)
    assert fixed.exit_status == 0 and not fixed.failed and fixed.rewritten == 2
    assert growths(fixed)[1] == f"growth 2: {first.call.hint:#x} below the arena, refused"


@pytest.mark.parametrize("bits", WIDTHS)
def test_below_answers_low(build, bits):
    o = tracer.run([str(build("mapper", bits)), "-n", "3"], "below,min=1M", capture=True, timeout=60)
    assert o.exit_status == 0
    # The first hint (0x200000000, or 0x20000000 on 32-bit) is aligned so high that only 0 is below it: kept.
    first, *moved = [r for r in o.calls if r.call.adjustable and r.call.hint and r.call.size == MiB]
    assert first.decision == "keep" and o.notes == [f"call #{first.call.index}: no free 1 MiB below {first.call.hint:#x} "
                                                    f"aligned to {first.call.hint >> 30 or first.call.hint >> 20} "
                                                    f"{'GiB' if first.call.hint >> 30 else 'MiB'}; kept"]
    assert len(moved) == 2
    for r in moved:
        align = r.call.hint & -r.call.hint
        assert r.answer == r.moved_to < r.call.hint and r.moved_to % align == 0
        assert landed_at(o, r.call.hint) == r.answer
    # With a smaller alignment every one goes below.
    low = tracer.run([str(build("mapper", bits)), "-n", "3"], "below,min=1M,align=1M", capture=True, timeout=60)
    assert [r.answer < r.call.hint for r in low.calls if r.rewritten] == [True] * 3
    # On Go 1.8's arena the first growth answered below is the crash.
    arena = tracer.run([str(build("linear_arena", bits)), "go1.8", "3"], "below,min=16M,at=2", capture=True, timeout=60)
    assert arena.fatal == FATAL


@pytest.mark.parametrize("bits", WIDTHS)
def test_displace_misaligns(build, bits):
    o = tracer.run([str(build("mapper", bits)), "-n", "4"], "displace,by=-12K,at=2,calls=2,min=1M", capture=True,
                   timeout=60)
    assert o.exit_status == 0
    hinted = [r for r in o.calls if r.call.adjustable and r.call.hint and r.call.size >= MiB]
    assert [r.decision for r in hinted] == ["keep", "move", "move", "keep"]
    for r in hinted[1:3]:
        assert r.answer == r.call.hint - 12 * 1024


@pytest.mark.parametrize("bits", WIDTHS)
def test_enomem_fails_the_kth_call(build, bits):
    o = tracer.run([str(build("mapper", bits)), "-n", "4", "-s", "0x300000"], "enomem,at=3,calls=2,min=3M",
                   capture=True, timeout=60)
    big = [r for r in o.calls if r.call.size == 3 * MiB]
    assert [r.answer == -12 for r in big] == [False, False, True, True]
    assert o.stdout.decode().count("failed 12") == 2 and o.exit_status == 3


@pytest.mark.parametrize("bits", WIDTHS)
def test_scripted_replays_a_recorded_run(build, bits, tmp_path):
    program = str(build("linear_arena", bits))
    first = tracer.run([program, "go1.8", "4"], "gap", capture=True, timeout=60)
    tracer.save(first, tmp_path / "run.json")
    again = tracer.replay(tmp_path / "run.json", capture=True, timeout=60)
    assert again.repeats and not again.differences and again.outcome.fatal == FATAL
    assert again.outcome.adversary == f"scripted,file={tmp_path / 'run.json'}"
    assert [r.moved_to for r in again.outcome.calls if r.rewritten] == [r.moved_to for r in first.calls if r.rewritten]
    assert again.outcome.notes == []


@pytest.mark.parametrize("bits", WIDTHS)
def test_scripted_moves_relative_to_a_new_hint(build, bits):
    program = str(build("linear_arena", bits))
    base = 0x200000000 if bits == 64 else 0x10000000
    first = tracer.run([program, "go1.8", "3", "0x1000000", hex(base)], "gap", capture=True, timeout=60)
    assert first.fatal == FATAL
    # The same program starting elsewhere (as Go 1.9's arena does from run to run): the same displacements apply.
    shifted = tracer.run([program, "go1.8", "3", "0x1000000", hex(base + 0x4000000)], tracer.Scripted(first),
                         capture=True, timeout=60)
    assert shifted.fatal == FATAL and shifted.notes == []
    for old, new in zip([r for r in first.calls if r.rewritten], [r for r in shifted.calls if r.rewritten], strict=True):
        assert new.call.hint == old.call.hint + 0x4000000
        assert new.moved_to - new.call.hint == old.moved_to - old.call.hint


def test_scripted_reports_mismatches(build):
    recorded = tracer.run([str(build("linear_arena")), "go1.8", "3"], "gap", capture=True, timeout=60)
    other = tracer.run([str(build("mapper"))], tracer.Scripted(recorded), capture=True, timeout=60)
    assert other.rewritten == 0
    assert any("order of calls differs from the trace" in n for n in other.notes)
    missed = [n for n in other.notes if n.startswith("not replayed")]
    assert len(missed) == 2 and "was moved" in missed[0]
    with pytest.raises(TypeError, match="Scripted needs an Outcome"):
        tracer.Scripted("run.json")


# -- a real Go runtime ----------------------------------------------------------------


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("spec", ["observe", "gap", "below", "displace,by=12K"])
def test_go_survives_placement_adversaries(go_alloc, bits, spec):
    # Go 1.19's heap arenas check every answer and take another hint when one is not where they asked.
    o = tracer.run([str(go_alloc(bits)), "200"], spec, capture=True, timeout=120)
    assert (o.exit_status, o.stdout, o.fatal) == (0, b"ok 200 MiB\n", None), o.describe()
    assert {r.call.syscall for r in o.calls} == {"mmap" if bits == 64 else "mmap2"} | ({"munmap"} if o.rewritten else set())
    if spec == "displace,by=12K":
        # Where the displaced range is free the kernel maps there; elsewhere it places the call as it would.
        assert o.rewritten >= 1 and any(r.answer == r.moved_to for r in o.calls if r.rewritten)


@pytest.mark.parametrize("bits", WIDTHS)
def test_go_reports_its_failure(go_alloc, bits):
    o = tracer.run([str(go_alloc(bits)), "200"], "enomem,calls=all", capture=True, timeout=120)
    assert o.failed and o.fatal is not None and o.fatal.startswith(("fatal error:", "runtime:")), o.describe()
