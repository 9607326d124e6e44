"""pytest fixtures for testing allocation policies against adversarial, real address spaces.

Enabled by the ``pytest11`` entry point (or ``-p arena.pytest_plugin``):

- ``arena_factory(layout="32", rule="fixed", answers=None, **kwargs)``: makes
  arenas over real memory, closed after the test. ``layout``: ``"32"``,
  ``"64"`` (or 32, 64) or a ``Layout``; ``rule``: a rule name, ``module:attr``
  or a ``Rule``; ``answers``: the kernel's answers to script (a
  ``scripted_memory``); ``kwargs``: the rest of ``Arena``'s (``memory``,
  ``start``, ``initial_size``, ``history``).
- ``arena32`` / ``arena64``: one arena each, rule "fixed" unless parametrized
  indirectly (``@pytest.mark.parametrize("arena32", ["legacy"], indirect=True)``).
- ``scripted_memory(answers=(), address_bits=32)``: a ``ScriptedMemory``; whatever
  it reserved and the test did not release is released after it, failing it.
- ``crowd``: a ``Crowd`` of blocker mappings (32-bit space), released after the test.
- ``arena_leak_check``: fails the test (an error at teardown) if a mapping it
  reserved through arena's memory layers is still mapped. Every fixture above
  uses it; request it to check other tests. Mappings the test makes any other
  way (its own mmap, a library's, glibc's per-thread malloc arenas) are not
  counted. ``@pytest.mark.no_arena_leak_check`` turns it off for a test.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypedDict, Unpack

import pytest

from . import sysmem
from .managers import Arena
from .policy import LAYOUT_32, LAYOUT_64, Layout, Rule
from .spaces import Answer, Crowd, ScriptedMemory, reservations

_LAYOUTS = {"32": LAYOUT_32, "64": LAYOUT_64, 32: LAYOUT_32, 64: LAYOUT_64}
NO_LEAK_CHECK = "no_arena_leak_check"


class _ArenaOptions(TypedDict, total=False):
    """The rest of ``Arena``'s arguments, which ``arena_factory`` passes on."""

    memory: sysmem.MemoryLayer | None
    start: int | None
    initial_size: int | None
    history: int | None


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's marker, so that ``--strict-markers`` accepts it."""
    config.addinivalue_line("markers", f"{NO_LEAK_CHECK}: do not fail the test for mappings it reserved through "
                                       "arena's memory layers and left behind (arena_leak_check)")


def _layout(layout: str | int | Layout) -> Layout:
    if isinstance(layout, Layout):
        return layout
    if layout not in _LAYOUTS:
        raise ValueError(f'layout must be "32", "64" or a Layout, got {layout!r}')
    return _LAYOUTS[layout]


@pytest.fixture
def arena_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if a mapping it reserved through arena's memory layers is still mapped after it.

    Only what ``arena.sysmem`` layers reserved during the test counts
    (``sysmem.track_reservations``), and only if it is still an anonymous
    MAP_NORESERVE mapping at the end: a mapping the test made otherwise is
    its own business. ``@pytest.mark.no_arena_leak_check`` skips the check.
    """
    if request.node.get_closest_marker(NO_LEAK_CHECK) is not None:
        yield
        return
    before = reservations()
    with sysmem.track_reservations() as held:
        yield
    leaked = sorted(m for m in reservations() - before if held.overlaps(m[0], m[1]))
    if leaked:
        pytest.fail("arena: mappings left behind: " + ", ".join(f"[{a:#x}, {b:#x}) {p}" for a, b, p in leaked), pytrace=False)


class _Scripted:
    """Makes ``ScriptedMemory`` layers and releases what their reservations left mapped."""

    def __init__(self) -> None:
        self.made: list[ScriptedMemory] = []

    def __call__(self, answers: Iterable[Answer] = (), address_bits: int = 32) -> ScriptedMemory:
        """A ``ScriptedMemory`` over ``sysmem.default(address_bits)`` answering ``answers`` (see ``arena.testing``)."""
        memory = ScriptedMemory(sysmem.default(address_bits=address_bits), answers)
        self.made.append(memory)
        return memory

    def cleanup(self) -> list[tuple[int, int]]:
        """Release reservations never released; returns them."""
        left = []
        for memory in self.made:
            held: list[tuple[int, int]] = []
            for call in memory.calls:
                if call.op in ("reserve", "reserve_exact") and isinstance(call.result, int):
                    held.append((call.result, call.size))
                elif call.op == "release" and (call.addr, call.size) in held:
                    held.remove((call.addr, call.size))
            for p, size in held:
                memory.inner.release(p, size)
            left += held
        return left


@pytest.fixture
def scripted_memory(arena_leak_check: None) -> Iterator[Callable[..., ScriptedMemory]]:
    """``scripted_memory(answers=(), address_bits=32)``: a ``ScriptedMemory``, real mappings placed where the script says.

    What its reservations left mapped is released after the test, which then fails.
    """
    factory = _Scripted()
    yield factory
    # Arenas built on these layers are closed first (fixtures tear down in reverse).
    left = factory.cleanup()
    if left:
        pytest.fail("scripted_memory: reservations never released (released now): "
                    + ", ".join(f"[{p:#x}, {p + n:#x})" for p, n in left), pytrace=False)


@pytest.fixture
def arena_factory(scripted_memory: Callable[..., ScriptedMemory]) -> Iterator[Callable[..., Arena]]:
    """``arena_factory(layout="32", rule="fixed", answers=None, **kwargs)``: arenas closed after the test.

    ``layout``: ``"32"``, ``"64"`` or a ``Layout``; ``rule``: a name,
    ``module:attr`` or a ``Rule``; ``answers``: scripted kernel answers (a
    ``scripted_memory`` under the arena); ``kwargs``: ``Arena``'s ``memory``,
    ``start``, ``initial_size``, ``history``.
    """
    made: list[Arena] = []

    def make(layout: str | int | Layout = "32", rule: str | Rule = "fixed", answers: Iterable[Answer] | None = None,
             **kwargs: Unpack[_ArenaOptions]) -> Arena:
        lay = _layout(layout)
        if answers is not None:
            kwargs["memory"] = scripted_memory(answers, lay.address_bits)
        a = Arena(lay, rule, **kwargs)
        made.append(a)
        return a

    yield make
    for a in reversed(made):
        a.close()


@pytest.fixture
def arena32(request: pytest.FixtureRequest, arena_factory: Callable[..., Arena]) -> Arena:
    """A 32-bit-layout arena (rule "fixed", or the indirect parameter)."""
    return arena_factory("32", getattr(request, "param", "fixed"))


@pytest.fixture
def arena64(request: pytest.FixtureRequest, arena_factory: Callable[..., Arena]) -> Arena:
    """A 64-bit-layout arena (rule "fixed", or the indirect parameter); skipped in a 32-bit process."""
    if sysmem.NATIVE_BITS == 32:
        pytest.skip("a 32-bit process has no 64-bit address space")
    return arena_factory("64", getattr(request, "param", "fixed"))


@pytest.fixture
def crowd(arena_leak_check: None) -> Iterator[Crowd]:
    """Blocker mappings in a 32-bit space, to make the kernel itself answer low."""
    with Crowd(sysmem.default(address_bits=32)) as c:
        yield c
