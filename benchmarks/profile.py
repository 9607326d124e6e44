"""`make profile`: where the time goes on the hot paths the goals measure.

    python benchmarks/profile.py [--seconds S] [--out-dir benchmarks/results]

Runs the timed part of the growth (the linear arena's and Go 1.11's heap
arenas'), OS-layer, allocation and hunt cases (cffi backend, both layouts) under pyinstrument, only while the clock would be
running in the benchmark (arena creation and close() are left out, except in
a hunt, where they are part of every scenario), and writes one text report
per case: profile-<case>.txt.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from pyinstrument import Profiler  # noqa: E402

import cases  # noqa: E402
import space  # noqa: E402
from arena import Arena, HeapArenas, sysmem  # noqa: E402
from arena.harness import hunt  # noqa: E402

MiB = 1 << 20


def _growths(profiler: Profiler, seconds: float, batch: int, make, ready) -> int:
    """Batches of contiguous growth steps on managers from ``make()``, as cases.growths times them."""
    steps, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        a = make()
        n = ready(a)
        sys_alloc = a.sys_alloc
        profiler.start()
        for _ in range(batch):
            sys_alloc(n)
        profiler.stop()
        a.close()
        steps += batch
    return steps


def growth(profiler: Profiler, bits: int, seconds: float) -> int:
    """Contiguous growth steps, as cases.growth_arena times them."""
    layout, mem = cases.LAYOUTS[bits], cases.memory(bits, "cffi")
    batch, _ = cases.growth_plan(bits)
    return _growths(profiler, seconds, batch, lambda: Arena(layout, memory=mem), cases._fill)


def heap_growth(profiler: Profiler, bits: int, seconds: float) -> int:
    """A new heap arena per sys_alloc, at the hint, as cases.heap_growth times them."""
    layout, mem, setup = cases.LAYOUTS[bits], cases.memory(bits, "cffi"), cases.heap_setup(bits)
    return _growths(profiler, seconds, cases.HEAP_BATCH, lambda: HeapArenas(layout, memory=mem, **setup),
                    lambda h: layout.heap_arena_size)


def pairs(profiler: Profiler, bits: int, seconds: float) -> int:
    """Reserve + release pairs at a free hint, as cases.os_layer times them."""
    mem = cases.memory(bits, "cffi")
    size = 256 * MiB
    hint = space.free_hint(mem, size)
    reserve, release = mem.reserve, mem.release
    count, end = 0, time.monotonic() + seconds
    profiler.start()
    while time.monotonic() < end:
        for _ in range(1000):
            release(reserve(hint, size), size)
        count += 1000
    profiler.stop()
    return count


def commits(profiler: Profiler, bits: int, seconds: float) -> int:
    """sys_alloc(8 KiB) from the reservation, as cases.alloc_arena times them."""
    layout, mem = cases.LAYOUTS[bits], cases.memory(bits, "cffi")
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        a = Arena(layout, memory=mem)
        k = (a.arena_end - a.arena_alloc) // (8 << 10)
        sys_alloc = a.sys_alloc
        profiler.start()
        for _ in range(k):
            sys_alloc(8 << 10)
        profiler.stop()
        a.close()
        count += k
    return count


def hunts(profiler: Profiler, bits: int, seconds: float) -> int:
    """Hunts of the fixed rule, as cases.hunt_scenarios times them: hypothesis, real mappings, verify."""
    layout = cases.LAYOUTS[bits]
    count, seed, end = 0, 0, time.monotonic() + seconds
    profiler.start()
    while time.monotonic() < end:
        hunt.hunt("fixed", layout, examples=cases.HUNT_BATCH, seed=seed)
        count, seed = count + cases.HUNT_BATCH, seed + 1
    profiler.stop()
    return count


CASES = {"growth": growth, "go1.11": heap_growth, "os": pairs, "alloc": commits, "hunt": hunts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="profiled time per case")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    layouts = (32,) if sysmem.NATIVE_BITS == 32 else (32, 64)
    for name, run in CASES.items():
        for bits in layouts:
            # 0.1 ms samples: a growth step is a few microseconds.
            profiler = Profiler(interval=0.0001)
            ops = run(profiler, bits, args.seconds)
            session = profiler.last_session
            path = args.out_dir / f"profile-{name}-{bits}.txt"
            path.write_text(profiler.output_text(unicode=True, show_all=False))
            per_op = session.duration / ops * 1e9 if ops else 0.0
            print(f"{name} {bits}-bit: {ops} operations, {per_op:,.0f} ns each under the profiler -> {path}")


if __name__ == "__main__":
    main()
