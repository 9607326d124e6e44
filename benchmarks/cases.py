"""Every benchmark case, as one pyperf script; run.py runs it once per round.

Names are ``group/layout/case/variant``: group is os, growth, alloc, history,
view, scale or hunt; layout 32 or 64; variant C (the C limit), shim (the
compiled shim's functions called from a bare Python loop: no layer, no checks,
the floor any Python caller starts from), cffi, ctypes, mmap (the standard
library), arena-cffi/arena-ctypes, go1.11-cffi/go1.11-ctypes (growth: Go 1.11's
heap arenas, ``HeapArenas``, a new heap arena per call), history-on/history-off (sys_alloc keeping
every decision or none), floor (view: ``memoryview`` of a ctypes array, the
least a Python view of an address costs) or arena/arena-history-off
(``Arena.view``); for hunt, maps or no-maps (with or without verify's read of
/proc/self/maps). Each worker process runs one case: all
set-up (memory layers, hints, ballast) happens lazily in the worker, and
everything a Python case does untimed (arena creation, close()) its C twin
also does untimed.

    python benchmarks/cases.py [--quick] [pyperf options] -o out.json
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import mmap
import os
import subprocess
import sys
from pathlib import Path
from time import perf_counter

# The work tree's package, not whatever an older editable install points at.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import pyperf

import climit
import space
from arena import LAYOUT_32, LAYOUT_64, Arena, HeapArenas, __version__, sysmem
from arena._native import lib as shim
from arena.harness import hunt

KiB, MiB = 1 << 10, 1 << 20
LAYOUTS = {32: LAYOUT_32, 64: LAYOUT_64}
BACKENDS = {"cffi": sysmem.CffiMemory, "ctypes": sysmem.CtypesMemory}
OS_SIZES = (64 * KiB, 256 * MiB)
ALLOC_SIZES = {False: (8 * KiB, 64 * KiB, 1 * MiB), True: (8 * KiB, 1 * MiB)}
SCALE_LEVELS = {False: (100, 1_000, 10_000, 60_000), True: (100, 10_000)}
# sys_alloc(16 KiB) on the fallback path maps round(n, 8K) + 8K = 24 KiB; the
# spare 8 KiB is too small for the next 16 KiB request, so every call falls back.
SCALE_ALLOC = 16 * KiB
SCALE_SIZE = SCALE_ALLOC + 8 * KiB
# LAYOUT_32 in which every sys_alloc takes the fallback path: no arena after the
# metadata, and a growth step so large that growing always passes the top of
# the space ("beyond-max-mem"), the one refusal after which Go 1.8 falls back.
LAYOUT_32_FALLBACK = dataclasses.replace(
    LAYOUT_32, name="32-bit fallback-only", first_sizes=(0,), growth_step=0xFFF00000
)

_memories: dict = {}


def memory(bits: int, backend: str) -> sysmem.Memory:
    key = (bits, backend)
    if key not in _memories:
        _memories[key] = BACKENDS[backend](bits)
    return _memories[key]


def size_name(size: int) -> str:
    return f"{size // MiB}MiB" if size >= MiB else f"{size // KiB}KiB"


# -- 1. OS layer: reserve + release pairs with a hint --------------------------

def os_layer(loops, bits, backend, size):
    mem = memory(bits, backend)
    hint = space.free_hint(mem, size)
    space.check_hint_taken(mem, hint, size)
    reserve, release = mem.reserve, mem.release
    t0 = perf_counter()
    for _ in range(loops):
        release(reserve(hint, size), size)
    return perf_counter() - t0


def os_shim(loops, bits, size):
    mem = memory(bits, "cffi")
    hint = space.free_hint(mem, size)
    # The syscall the C limit makes: a plain hint, or MAP_FIXED_NOREPLACE when confined.
    reserve = shim.shim_reserve_exact if mem.confined else shim.shim_reserve
    release = shim.shim_release
    t0 = perf_counter()
    for _ in range(loops):
        release(reserve(hint, size), size)
    return perf_counter() - t0


def os_mmap(loops, size):
    # Exactly what a user of the standard library writes; it takes no hint and
    # its default flags are MAP_SHARED, so the kernel also sets up a shmem file.
    new = mmap.mmap
    t0 = perf_counter()
    for _ in range(loops):
        new(-1, size, prot=0).close()
    return perf_counter() - t0


def os_c(loops, bits, size):
    mem = memory(bits, "cffi")
    hint = space.free_hint(mem, size)
    # The confined layer takes a hint with MAP_FIXED_NOREPLACE: the same syscall.
    return climit.pair(loops, hint, size, mem.confined)


# -- 2. Arena growth: each sys_alloc needs a new contiguous reservation --------

def _fill(a: Arena) -> int:
    """Use up the arena's first block so the next sys_alloc of a growth step must grow."""
    layout = a.layout
    rest = a.arena_end - a.arena_alloc - layout.page_size
    if rest > 0 and a.sys_alloc(rest) is None:
        raise RuntimeError("cannot fill the first block")
    return layout.growth_step - layout.page_size  # n: p_size = round(n + page, step) = step


_growth_plan: dict = {}


def growth_plan(bits: int) -> tuple[int, int]:
    """``(batch, base)``: contiguous growths one arena can make (at most 16) and where C may redo them."""
    if bits not in _growth_plan:
        layout, mem = LAYOUTS[bits], memory(bits, "cffi")
        with Arena(layout, memory=mem) as a:
            n = _fill(a)
            end, batch = a.arena_end, 0
            while batch < 16 and a.sys_alloc(n) is not None and a.stats.contiguous == batch + 1:
                batch += 1
        if batch < 2:
            raise RuntimeError(f"a {layout.name} arena can grow contiguously only {batch} times here")
        # Leave one step of room, as the arena's own first block did.
        _growth_plan[bits] = (batch - 1, end - layout.growth_step)
    return _growth_plan[bits]


def growths(loops, batch, make, ready):
    """``loops`` sys_alloc calls, each a contiguous growth, in batches of ``batch`` on a new manager
    from ``make()``; ``ready(manager)`` prepares it and returns n. Making, preparing and closing are not timed."""
    total, done = 0.0, 0
    while done < loops:
        k = min(batch, loops - done)
        a = make()
        n = ready(a)
        sys_alloc = a.sys_alloc
        t0 = perf_counter()
        for _ in range(k):
            sys_alloc(n)
        total += perf_counter() - t0
        grown = a.stats.contiguous
        a.close()
        if grown != k:
            raise RuntimeError(f"expected {k} contiguous growths, {a!r} made {grown}")
        done += k
    return total


def growth_arena(loops, bits, backend):
    layout, mem = LAYOUTS[bits], memory(bits, backend)
    batch, _ = growth_plan(bits)
    return growths(loops, batch, lambda: Arena(layout, memory=mem), _fill)


def growth_shim(loops, bits):
    """climit_growth's loop, calling the shim from Python."""
    layout, mem = LAYOUTS[bits], memory(bits, "cffi")
    batch, base = growth_plan(bits)
    step, commit = layout.growth_step, layout.growth_step - layout.page_size
    reserve = shim.shim_reserve_exact if mem.confined else shim.shim_reserve
    protect = shim.shim_commit
    total, done = 0.0, 0
    while done < loops:
        k = min(batch, loops - done)
        if reserve(base, step) != base:
            raise RuntimeError(f"the growth base {base:#x} is taken")
        end = base + step
        cursor = end - commit
        t0 = perf_counter()
        for _ in range(k):
            # As in C: each reservation must be contiguous.
            if reserve(end, step) != end:
                break
            end += step
            protect(cursor, commit)
            cursor += commit
        total += perf_counter() - t0
        shim.shim_release(base, end - base)
        if end != base + (k + 1) * step:
            raise RuntimeError(f"expected {k} contiguous reservations after {base:#x}")
        done += k
    return total


def growth_c(loops, bits):
    layout, mem = LAYOUTS[bits], memory(bits, "cffi")
    batch, base = growth_plan(bits)
    step = layout.growth_step
    return climit.growth(loops, base, step, step - layout.page_size, mem.confined, batch)


# -- 2b. Heap arena growth: each sys_alloc takes a new heap arena at the hint ----
#
# Go 1.11's sysAlloc on its usual path: the hint is honoured (a reservation of
# one heap arena at it), the arena is mapped read-write and registered, the hint
# moves up. The C limit is climit_growth with commit = step: a reservation at
# the end of the previous one, then mprotect of all of it; the same syscalls.

HEAP_BATCH = 16  # heap arenas one manager takes per timed batch
_heap_bases: dict = {}


def heap_base(bits: int) -> int:
    """A free address aligned to the heap arena size with room for a batch above it (C's first reservation is there)."""
    if bits not in _heap_bases:
        layout, mem = LAYOUTS[bits], memory(bits, "cffi")
        size = layout.heap_arena_size
        base = -(-space.free_hint(mem, (HEAP_BATCH + 2) * size) // size) * size
        space.check_hint_taken(mem, base, (HEAP_BATCH + 1) * size)
        _heap_bases[bits] = base
    return _heap_bases[bits]


def heap_setup(bits: int) -> dict:
    """``HeapArenas``' arguments: one hint, where C's loop grows from; on 32-bit no pre-reservation,
    so that every call takes the hint path."""
    layout = LAYOUTS[bits]
    return {"start": heap_base(bits) + layout.heap_arena_size} | ({} if layout.first_hints else {"initial_size": 0})


def heap_growth(loops, bits, backend):
    # Each call a hint honoured: HeapArenas count those as contiguous.
    layout, mem, setup = LAYOUTS[bits], memory(bits, backend), heap_setup(bits)
    return growths(loops, HEAP_BATCH, lambda: HeapArenas(layout, memory=mem, **setup), lambda h: layout.heap_arena_size)


def heap_growth_c(loops, bits):
    layout, mem = LAYOUTS[bits], memory(bits, "cffi")
    size = layout.heap_arena_size
    return climit.growth(loops, heap_base(bits), size, size, mem.confined, HEAP_BATCH)


# -- 3. Arena allocation: commits from an existing reservation -----------------

def alloc_arena(loops, bits, backend, size, history=None):
    layout, mem = LAYOUTS[bits], memory(bits, backend)
    total, done = 0.0, 0
    while done < loops:
        a = Arena(layout, memory=mem, history=history)
        k = min((a.arena_end - a.arena_alloc) // size, loops - done)
        sys_alloc = a.sys_alloc
        t0 = perf_counter()
        for _ in range(k):
            sys_alloc(size)
        total += perf_counter() - t0
        a.close()
        done += k
    return total


def alloc_c(loops, bits, size):
    layout, mem = LAYOUTS[bits], memory(bits, "cffi")
    with Arena(layout, memory=mem) as a:
        span = a.arena_end - a.arena_alloc
    hint = space.free_hint(mem, span)
    return climit.commit(loops, hint, span, size, mem.confined)


# -- 4. Views: a writable memoryview of an allocation ---------------------------
#
# One arena per worker holds VIEW_ALLOCATIONS allocations, made untimed; each
# timed operation makes a view of one of them and drops it. The floor does the
# same with the least Python can do: memoryview of a ctypes array at the address.

VIEW_SIZE = 8 * KiB
VIEW_ALLOCATIONS = 1000
_view_arenas: dict = {}


def _allocated(history):
    if history not in _view_arenas:
        a = Arena(LAYOUTS[sysmem.NATIVE_BITS], memory=memory(sysmem.NATIVE_BITS, "cffi"), history=history)
        _view_arenas[history] = (a, [a.sys_alloc(VIEW_SIZE) for _ in range(VIEW_ALLOCATIONS)])
    return _view_arenas[history]


def view_floor(loops):
    _, ps = _allocated(None)
    from_address = (ctypes.c_ubyte * VIEW_SIZE).from_address
    total, done = 0.0, 0
    while done < loops:
        chunk = ps[: loops - done]
        t0 = perf_counter()
        for p in chunk:
            memoryview(from_address(p))
        total += perf_counter() - t0
        done += len(chunk)
    return total


def view_arena(loops, history):
    # history=None: view(p) finds the allocation and runs to its end; with no
    # history the size is required and the committed run is what is checked.
    a, ps = _allocated(history)
    view, size = a.view, (None if history is None else VIEW_SIZE)
    total, done = 0.0, 0
    while done < loops:
        chunk = ps[: loops - done]
        t0 = perf_counter()
        for p in chunk:
            view(p, size)
        total += perf_counter() - t0
        done += len(chunk)
    return total


# -- 5. Scale: one operation's cost with 100 ... 60,000 live regions -----------

_ballast = None


def _ballast_to(level: int, slack: int = 0) -> None:
    global _ballast
    if _ballast is None:
        # Below 4 GiB, so the 32-bit layout's placement must step over them.
        _ballast = space.ballast_to(level, sysmem.COMPAT_TASK_SIZE, slack)


def scale_pair(loops, level, bits, backend):
    """A reservation anywhere and its release: a fallback mapping's syscalls."""
    _ballast_to(level)
    mem = memory(bits, backend)
    reserve, release = mem.reserve, mem.release
    t0 = perf_counter()
    for _ in range(loops):
        release(reserve(0, SCALE_SIZE), SCALE_SIZE)
    return perf_counter() - t0


def scale_c(loops, level, slack=0):
    # slack: the arena case's, when this is its C limit in the same worker.
    _ballast_to(level, slack)
    return climit.pair(loops, 0, SCALE_SIZE, False)


_scale_arena = None


def arena_slack(level: int) -> int:
    """How many sys_alloc calls one arena of the scale case makes."""
    return max(25, min(level // 4, 500))


def scale_arena(loops, level):
    """sys_alloc(16 KiB) through the fallback path. Each adds two mappings (the
    committed page and the spare one do not merge), so the arena is replaced,
    untimed, every ``level // 4`` calls (25 to 500): the count moves within
    a quarter of level around it. Replacing it more often would time the cold
    calls after each new arena at low levels and flatter the curve."""
    global _scale_arena
    per_arena = arena_slack(level)
    _ballast_to(level, per_arena)
    mem = memory(32, "cffi")
    total, done = 0.0, 0
    while done < loops:
        if _scale_arena is None or _scale_arena.stats.fallbacks >= per_arena:
            if _scale_arena is not None:
                _scale_arena.close()
            _scale_arena = Arena(LAYOUT_32_FALLBACK, memory=mem)
        a = _scale_arena
        k = min(per_arena - a.stats.fallbacks, loops - done)
        sys_alloc, before = a.sys_alloc, a.stats.fallbacks
        t0 = perf_counter()
        for _ in range(k):
            sys_alloc(SCALE_ALLOC)
        total += perf_counter() - t0
        if a.stats.fallbacks - before != k:
            raise RuntimeError(f"{k} sys_alloc calls made {a.stats.fallbacks - before} fallback mappings")
        done += k
    return total


# -- 5. Hunt: scenarios per second -----------------------------------------------

# Scenarios per hunt (the default of arena hunt); pyperf divides each value by it
# (inner_loops), so a value is one scenario.
HUNT_BATCH = 1000


def hunt_scenarios(loops, bits, read_maps, jobs=1):
    """``loops`` hunts of HUNT_BATCH scenarios each, as ``arena hunt`` runs them (hypothesis
    included), under the fixed rule, which never stops a hunt early; seeds 0, 1, ... so
    every value runs the same scenarios. ``jobs``: ``arena hunt --jobs``, the scenarios
    shared by that many processes (their start and end timed too)."""
    layout = LAYOUTS[bits]
    t0 = perf_counter()
    for seed in range(loops):
        result = hunt.hunt("fixed", layout, examples=HUNT_BATCH, seed=seed, read_maps=read_maps, jobs=jobs)
        if result.counterexample is not None or result.examples != HUNT_BATCH:
            raise RuntimeError(f"a hunt of the fixed rule ran {result.examples} scenarios and stopped: {result.stopped}")
    return perf_counter() - t0


# -- the C limit in the same worker ---------------------------------------------
#
# pyperf runs each benchmark in worker processes of its own, and on a noisy VM
# a whole process can run a third slower than the next: a ratio of two
# benchmarks measured in different workers carries that noise. So every Python
# variant's worker also runs its C limit, as many loops, half right before and
# half right after each timed value. pyperf keeps the Python values; the C
# times of the same values go to the --pairs file, and the report divides them
# value by value ("ratio to C, same worker").

_pairs: list[tuple[int, float, float]] = []  # (loops, C seconds, Python seconds) per value


def paired(loops, func, args, c_func, c_args):
    half = loops // 2
    c = c_func(half, *c_args) if half else 0.0
    x = func(loops, *args)
    c += c_func(loops - half, *c_args)
    _pairs.append((loops, c, x))
    return x


# -- the list ------------------------------------------------------------------

def cases(quick: bool):
    """``(name, time_func, args, c_limit)`` in run order, each C limit right before
    its Python variants; ``c_limit`` is the C case's ``(time_func, args)``, ``None`` for a C case
    and for hunt (a hunt has no C twin)."""
    layouts = (32,) if sysmem.NATIVE_BITS == 32 else (32, 64)
    for bits in layouts:
        for size in OS_SIZES:
            stem, c = f"os/{bits}/{size_name(size)}", (os_c, (bits, size))
            yield f"{stem}/C", *c, None
            yield f"{stem}/shim", os_shim, (bits, size), c
            for backend in BACKENDS:
                yield f"{stem}/{backend}", os_layer, (bits, backend, size), c
            yield f"{stem}/mmap", os_mmap, (size,), c
    for bits in layouts:
        stem, c = f"growth/{bits}/256MiB", (growth_c, (bits,))
        yield f"{stem}/C", *c, None
        yield f"{stem}/shim", growth_shim, (bits,), c
        for backend in BACKENDS:
            yield f"{stem}/arena-{backend}", growth_arena, (bits, backend), c
        stem, c = f"growth/{bits}/{size_name(LAYOUTS[bits].heap_arena_size)}", (heap_growth_c, (bits,))
        yield f"{stem}/C", *c, None
        for backend in BACKENDS:
            yield f"{stem}/go1.11-{backend}", heap_growth, (bits, backend), c
    for bits in layouts:
        for size in ALLOC_SIZES[quick]:
            stem, c = f"alloc/{bits}/{size_name(size)}", (alloc_c, (bits, size))
            yield f"{stem}/C", *c, None
            for backend in BACKENDS:
                yield f"{stem}/arena-{backend}", alloc_arena, (bits, backend, size), c
    # History and views: the native layout only (neither depends on the layout).
    bits = sysmem.NATIVE_BITS
    stem, c = f"history/{bits}/{size_name(VIEW_SIZE)}", (alloc_c, (bits, VIEW_SIZE))
    yield f"{stem}/C", *c, None
    yield f"{stem}/history-on", alloc_arena, (bits, "cffi", VIEW_SIZE), c
    yield f"{stem}/history-off", alloc_arena, (bits, "cffi", VIEW_SIZE, 0), c
    stem, floor = f"view/{bits}/{size_name(VIEW_SIZE)}", (view_floor, ())
    yield f"{stem}/floor", *floor, None
    yield f"{stem}/arena", view_arena, (None,), floor
    yield f"{stem}/arena-history-off", view_arena, (0,), floor
    for level in SCALE_LEVELS[quick]:
        stem, c = f"scale/32/{level}", (scale_c, (level,))
        yield f"{stem}/C", *c, None
        if 64 in layouts:
            yield f"scale/64/{level}/cffi", scale_pair, (level, 64, "cffi"), c
        yield f"{stem}/cffi", scale_pair, (level, 32, "cffi"), c
        yield f"{stem}/arena-cffi", scale_arena, (level,), (scale_c, (level, arena_slack(level)))
    for bits in layouts:
        for read_maps, variant in ((True, "maps"), (False, "no-maps")):
            yield f"hunt/{bits}/fixed/{variant}", hunt_scenarios, (bits, read_maps), None
    # Two processes (arena hunt --jobs 2) against one: the 32-bit layout, with the maps read.
    yield "hunt/32/fixed/maps-2-jobs", hunt_scenarios, (32, True, 2), None


def _commit() -> str:
    """The checkout's commit, ``+dirty`` if files differ from it; $ARENA_COMMIT in a copy without .git
    (tools/i386.sh sets it); "" outside a git checkout."""
    if os.environ.get("ARENA_COMMIT"):
        return os.environ["ARENA_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _progress(name: str, bench) -> None:
    """One line per case in the statistic the table shows, the median ± MAD (pyperf's own line shows the mean)."""
    mad = bench.median_abs_dev() if bench.get_nvalue() > 1 else 0.0
    scale, unit = (1e6, "us per scenario") if name.startswith("hunt/") else (1e9, "ns per op")
    print(f"{name}: median {bench.median() * scale:,.0f} ± {mad * scale:,.0f} {unit}", flush=True)


def main() -> None:
    def worker_args(cmd, args):
        # Workers pick their case by index: they must build the same list.
        cmd.extend((["--quick"] if args.quick else []) + (["--only", args.only] if args.only else []))
        cmd.extend(["--pairs", args.pairs] if args.pairs else [])
        # pyperf gives workers a clean environment: the commit goes as an argument.
        cmd.extend(["--commit", args.commit or _commit() or "unknown"])

    runner = pyperf.Runner(add_cmdline_args=worker_args)
    runner.argparser.add_argument("--quick", action="store_true", help="fewer sizes and scale levels")
    runner.argparser.add_argument("--only", default="", help="run only cases whose name contains this")
    runner.argparser.add_argument("--pairs", default="", help="append the C times measured in each Python variant's worker here (JSON lines)")
    runner.argparser.add_argument("--commit", default="", help="the commit measured (default: the checkout's, or $ARENA_COMMIT)")
    args = runner.parse_args()
    runner.metadata["arena_layouts"] = "32,64" if sysmem.NATIVE_BITS == 64 else "32"
    runner.metadata["arena_native_bits"] = sysmem.NATIVE_BITS
    runner.metadata["arena_version"] = __version__
    runner.metadata["arena_commit"] = args.commit or _commit() or "unknown"
    for name, func, fargs, c in cases(args.quick):
        if args.only not in name:
            continue
        _pairs.clear()
        # A worker that only calibrates the loops needs no C limit beside it.
        if c is None or args.calibrate_loops or args.recalibrate_loops:
            bench = runner.bench_time_func(name, func, *fargs, inner_loops=HUNT_BATCH if name.startswith("hunt/") else None)
        else:
            bench = runner.bench_time_func(name, paired, func, fargs, *c)
        if bench is not None and not args.worker:
            _progress(name, bench)
        if c is not None and _pairs and args.pairs and args.worker:
            with open(args.pairs, "a") as f:
                f.write(json.dumps({"name": name, "warmups": args.warmups or 0, "pairs": _pairs}) + "\n")


if __name__ == "__main__":
    main()
