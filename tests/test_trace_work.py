"""A trace's limits bound the work of replaying it, not only its bytes: every list, every layout field
that sizes work, every request's cost (docs/trace-format.md). A hostile trace of a few hundred bytes is
one line and exit 2, at once; the largest trace the limits accept replays under every rule in seconds."""
import json
import os
import resource
import time

import pytest

import arena
from arena.harness import trace
from arena.policy.layout import MiB
from commands import arena_cmd

GOOD64 = {"format": "arena-trace", "version": 2, "rule": "go1.11", "answers": [],
          "layout": {"address_bits": 64, "max_mem": "0x7fffffffff", "first_hints": ["0x100000000000"]}}


# The command's own peak memory, written last on its stderr: RUSAGE_CHILDREN's ru_maxrss
# is the largest of every child this test process ever waited for (a Go program of another
# test, say), not this command's.
PEAK = ("import atexit, resource, sys; atexit.register(lambda: sys.stderr.write("
        "'\\npeak KiB %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); ")


def hostile(layout=None, **fields):
    """A small go1.11 trace: GOOD64 with ``layout`` fields and top-level ``fields`` changed."""
    return {**GOOD64, "layout": {**GOOD64["layout"], **(layout or {})}, "requests": [8192], **fields}


# Each, before the limits: a traceback and exit 1 (MemoryError), or minutes and gigabytes.
HOSTILE = {
    # Item 12: an index of 2**35 first-level entries, made before the first request.
    "l1-bits": (hostile({"heap_arena_size": 8192, "arena_l1_bits": 35}),
                "layout.arena_l1_bits: must be in [0, 16] (the first level of the arena index has 2**arena_l1_bits entries"),
    # Item 13: one request and 150,000 first hints, each a reservation tried in turn.
    "hints": (hostile({"first_hints": [hex(0x100000000000 + (i << 30)) for i in range(150_000)]}, rule="fixed"),
              f"layout.first_hints: 150,000 entries, more than the {trace.MAX_HINTS:,} a trace's layout may hold"),
    # Item 14: 8 KiB heap arenas and one 2**38-byte request: 2**25 heap arenas to register.
    # (arena_l1_bits 13: the index of 8 KiB heap arenas a Layout allows, 2**22 entries per second level.)
    "arenas": (hostile({"heap_arena_size": 8192, "arena_l1_bits": 13}, requests=[hex(1 << 38)]),
               f"requests[0]: up to here the requests need 33,554,433 heap arenas of 8 KiB, more than the "
               f"{trace.MAX_HEAP_ARENAS:,} a replay under go1.11 may register"),
}


@pytest.mark.needs_64_bit
@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("argv", [["replay"], ["replay", "--rule", "all"], ["maps", "--rule", "all", "--trace"]],
                         ids=["replay", "replay-all", "maps"])
def test_a_small_hostile_trace_is_one_line_and_exit_2_at_once(tmp_path, name, argv):
    data, message = HOSTILE[name]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data, separators=(",", ":")))
    t0 = time.monotonic()
    done = arena_cmd(*argv, str(path))
    assert time.monotonic() - t0 < 30
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"arena {argv[0]}: {path}: {message}"), done.stderr


@pytest.mark.parametrize("change, message", [
    ({"layout": {**GOOD64["layout"], "first_sizes": [8192] * (trace.MAX_HINTS + 1)}},
     f"layout.first_sizes: {trace.MAX_HINTS + 1:,} entries, more than the {trace.MAX_HINTS:,}"),
    ({"recorded": [{"step": "commit", "verdict": "committed"}] * (trace.MAX_EVENTS + 1)},
     f"recorded: {trace.MAX_EVENTS + 1:,} decisions, more than the {trace.MAX_EVENTS:,}"),
])
@pytest.mark.backend_independent
def test_every_list_is_bounded(change, message):
    with pytest.raises(trace.TraceError) as err:
        trace.parse({**GOOD64, "requests": [8192], **change})
    assert str(err.value).startswith(message)


@pytest.mark.backend_independent
def test_the_limits_are_inclusive():
    at = trace.parse(hostile({"first_hints": [hex(0x100000000000 + (i << 30)) for i in range(trace.MAX_HINTS)],
                              "arena_l1_bits": trace.MAX_L1_BITS},
                             recorded=[{"step": "commit", "verdict": "committed"}] * trace.MAX_EVENTS))
    assert len(at.layout.first_hints) == trace.MAX_HINTS and at.layout.arena_l1_bits == trace.MAX_L1_BITS


@pytest.mark.needs_64_bit
def test_the_heap_arena_bound_is_checked_under_go1_11_only_and_before_anything_is_mapped():
    # One heap arena less than the bound's worth of requests, then one that passes it.
    t = trace.parse(hostile({"heap_arena_size": 8192, "arena_l1_bits": 13}, requests=[hex(8192 * (trace.MAX_HEAP_ARENAS - 1))] + [8192]))
    with pytest.raises(trace.TraceError, match=r"^requests\[1\]: up to here the requests need 262,146 heap arenas"):
        trace.replay(t)
    # A linear arena registers no heap arenas: the same requests are its to replay, one reservation each.
    r = trace.replay(t, "fixed")
    with r.arena:
        assert len(r.returned) == 2


@pytest.mark.needs_64_bit
def test_a_layout_a_trace_cannot_hold_is_not_saved(tmp_path):
    import dataclasses

    layout = dataclasses.replace(arena.LAYOUT_64, first_hints=tuple(0x100000000000 + (i << 30) for i in range(trace.MAX_HINTS + 1)))
    with arena.HeapArenas(layout, start=0x100000000000) as h:
        with pytest.raises(ValueError, match=f"a trace's layout holds at most {trace.MAX_HINTS:,} first_hints"):
            h.save_trace(tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


# -- the worst trace the limits accept ------------------------------------------------------

# Far from anything the kernel places on its own, in every 64-bit process.
FAR = 0x300000000000


def worst_heap():
    """go1.11 at every limit: 8 KiB heap arenas, MAX_HINTS first hints all answered "no room", MAX_STEPS
    requests registering MAX_HEAP_ARENAS heap arenas between them, MAX_STEPS answers scattering the
    aligned reservations so that each is a mapping of its own."""
    size = 8192
    per = trace.MAX_HEAP_ARENAS // trace.MAX_STEPS - 1  # n / heap_arena_size + 1 heap arenas each
    answers = ["no-room"] * trace.MAX_HINTS + [None]
    k = 0
    while len(answers) < trace.MAX_STEPS:
        answers += ["no-room", "no-room", hex(FAR + k * 64 * MiB)]  # the two new hints fail, the aligned one lands apart
        k += 1
    return {"format": "arena-trace", "version": 2, "rule": "go1.11", "requests": [per * size] * trace.MAX_STEPS,
            "answers": answers[:trace.MAX_STEPS],
            "layout": {"address_bits": 64, "max_mem": "0x7fffffffff", "heap_arena_size": size, "arena_l1_bits": 13,
                       "first_hints": [hex(0x100000000000 + (i << 32)) for i in range(trace.MAX_HINTS)]}}


def worst_linear():
    """The linear arena at every limit: MAX_STEPS requests each needing a new block, every block answered
    apart above arena_end (taken by fixed, refused by strict, which then falls back)."""
    return {"format": "arena-trace", "version": 1, "rule": "fixed", "layout": "64", "start": None,
            "initial_size": 256 * MiB, "requests": [256 * MiB - 8192] * trace.MAX_STEPS,
            "answers": [hex(FAR + i * 512 * MiB) for i in range(trace.MAX_STEPS)]}


def _cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.needs_64_bit
@pytest.mark.parametrize("make, argv", [
    (worst_heap, ["replay", "--rule", "all"]),
    (worst_heap, ["maps", "--rule", "all", "--trace"]),
    (worst_linear, ["replay", "--rule", "all"]),
], ids=["heap-replay", "heap-maps", "linear-replay"])
def test_the_largest_accepted_trace_replays_under_every_rule_in_seconds(tmp_path, make, argv):
    data = make()
    t = trace.parse(data)
    assert len(t.requests) == len(t.answers) == trace.MAX_STEPS
    path = tmp_path / "worst.json"
    path.write_text(json.dumps(data))
    assert os.path.getsize(path) < trace.MAX_BYTES
    cpu, t0 = _cpu_of_children(), time.monotonic()
    done = arena_cmd(*argv, str(path), timeout=600, prelude=PEAK)
    cpu, wall = _cpu_of_children() - cpu, time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== go1.11" in done.stdout and "== strict" in done.stdout
    # About 2.5-3 s of CPU on the project's machine (docs/trace-format.md), 6 s before the tables were measured
    # a column at a time, 25 s before the limits bounded work; the bound is in CPU time,
    # which a busy machine does not stretch, with room for a slow one.
    assert cpu < 15, f"{cpu:.1f} s of CPU ({wall:.1f} s)"
    peak = int(done.stderr.rsplit("peak KiB ", 1)[1])
    assert peak < 600 * 1024, f"{peak} KiB"
