"""A program written against arena's public API, for a type checker.

tools/check-dist.sh runs ``mypy --strict`` on it against the INSTALLED
package: without the package's ``py.typed`` every name below would be ``Any``
and each ``assert_type`` would fail. It also runs it, so the program is real.
"""
from typing import assert_type

import arena
from arena import sysmem
from arena.harness.check import Findings, Violation, verify

MiB = 1 << 20

assert_type(arena.__version__, str)
memory = sysmem.default(address_bits=32)
assert_type(memory, sysmem.Memory)
assert_type(memory.page_size, int)
assert_type(sysmem.mappings(), list[sysmem.Mapping])

with arena.Arena(arena.LAYOUT_32, rule="go1.9", memory=memory, initial_size=128 * MiB) as a:
    p = a.sys_alloc(arena.LAYOUT_32.page_size)
    assert_type(p, int | None)
    assert p is not None and a.contains(p)
    assert_type(a.contains(p), bool)
    assert_type(a.regions, list[arena.Region])
    assert_type(a.stats, arena.Stats)
    violations = verify(a)
    assert_type(violations, Findings)
    assert_type(violations.unchecked, list[str])
    for v in violations:
        assert_type(v, Violation)
    assert violations == [] and violations.unchecked == [], violations
    view = a.alloc(arena.LAYOUT_32.page_size)
    assert_type(view, memoryview | None)
    assert view is not None
    assert_type(a.address_of(view), int)
    view.release()

region = memory.reserve(0, MiB)
assert_type(region, int | None)
if region is not None:
    memory.release(region, MiB)
print(f"typed consumer: arena {arena.__version__}, {type(memory).__name__}, sound")
