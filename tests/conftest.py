import ctypes
import fcntl
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

import arena
import budget
from arena import sysmem
from arena.spaces import reservations

# The test profiles (tests/budget.py): loaded here, before any test module is
# collected, so that the budgets their decorators and constants name at import
# are the profile's; pytest's --hypothesis-profile, read later, still wins.
for _name, _examples in budget.PROFILES.items():
    settings.register_profile(_name, max_examples=_examples)
settings.load_profile(budget.chosen())


# glibc gives each new thread a malloc arena reserved with MAP_NORESERVE; one
# arena keeps threaded tests from looking like they leaked a reservation.
M_ARENA_MAX = -8
ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)
# What a worker of pytest -n inherits from this process, as a test run without -n sees it.
TERMINAL = ("COLUMNS", "LINES")
# Held by each test that checks no test program outlives it (tests/tracees.py):
# that check counts every process of a test program's name on the machine, so
# two such tests at once (make test's other backend, a pytest -n worker) would
# see each other's programs.
PROGRAMS_LOCK = Path(tempfile.gettempdir()) / "arena-test-programs.lock"
# $ARENA_TEST_SHARE: which tests a run collects. all; backend: those that make a
# memory backend (unmarked); independent: those marked backend_independent.
SHARES = ("all", "backend", "independent")
# What ARENA_BACKEND reads during a backend-independent test: no backend at
# all, so that a command it starts fails if it makes one.
NO_BACKEND = "none (this test is marked backend_independent: it must make no memory backend)"


def pytest_configure(config):
    if not os.environ.get("ARENA_BACKEND", "").strip():
        # Where the shim was not built the suite tests the ctypes backend: the
        # commands it runs use it as chosen, without the warning a user gets.
        try:
            sysmem.CffiMemory()
        except sysmem.ShimUnavailable:
            os.environ["ARENA_BACKEND"] = "ctypes"
    if getattr(config.option, "dist", "no") != "no":
        # A worker's communication thread has its malloc arena before this file
        # runs there, and glibc fixes the arena limit at the second arena: too
        # early for mallopt, so the worker gets the limit from its environment.
        os.environ.setdefault("MALLOC_ARENA_MAX", "1")
    if hasattr(config, "workerinput"):
        # A worker starts with COLUMNS=80 and LINES=24 set; the commands the
        # tests run must see the terminal the run was started from.
        for name, value in config.workerinput["arena_terminal"].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    config.addinivalue_line("markers", "needs_64_bit: needs a 64-bit address space; skipped in a 32-bit process")
    config.addinivalue_line("markers", "needs_clean_space: places mappings at fixed addresses; runs first")
    config.addinivalue_line("markers", "needs_shim: needs the compiled shim; deselect with -m 'not needs_shim' where it was not built")
    config.addinivalue_line("markers", "backend_independent: makes no memory backend, in its process or the ones it "
                                       "starts (checked: see no_backend_where_none_is_needed); one run of the suite is "
                                       "enough. backend_independent(False) on a test overrides its module's marker")
    config.addinivalue_line("markers", "slow: takes minutes (10-of-10 reproductions); skipped unless selected with "
                                       "-m slow or ARENA_SLOW=1 (make test-real)")


def backend_independent(item):
    """Whether ``item``'s closest ``backend_independent`` marker says so (``backend_independent(False)`` does not)."""
    marker = item.get_closest_marker("backend_independent")
    return marker is not None and bool(marker.args[0] if marker.args else True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist, before a worker starts: what it restores of this process's environment."""
    node.workerinput["arena_terminal"] = {name: os.environ.get(name) for name in TERMINAL}


def pytest_collection_modifyitems(config, items):
    # In a 32-bit process, hundreds of tests leave Python's own heap scattered
    # through the 4 GiB space; tests that need particular ranges free run
    # before that happens (a stable sort keeps the rest in order).
    items.sort(key=lambda item: "needs_clean_space" not in item.keywords)
    # make test runs each backend's share, and the backend-independent tests once (tools/test-backends.sh).
    share = os.environ.get("ARENA_TEST_SHARE", "all")
    if share not in SHARES:
        raise pytest.UsageError(f"ARENA_TEST_SHARE={share!r}: set it to one of {', '.join(SHARES)}")
    if share != "all":
        keep = share == "independent"
        dropped = [item for item in items if backend_independent(item) != keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if backend_independent(item) == keep]
    # A slow test runs when asked for: by a marker expression naming it, or ARENA_SLOW=1.
    if "slow" not in (config.getoption("markexpr") or "") and os.environ.get("ARENA_SLOW") != "1":
        later = pytest.mark.skip(reason="slow: run with ARENA_SLOW=1 or -m slow (make test-real)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(later)
    if sysmem.NATIVE_BITS == 32:
        skip = pytest.mark.skip(reason="a 32-bit process has no 64-bit address space")
        for item in items:
            if "needs_64_bit" in item.keywords:
                item.add_marker(skip)


def pytest_report_header(config):
    # Where arena was imported from shows whether the suite tests a checkout or an installed package.
    return (f"arena backend: {type(sysmem.default()).__name__} ({sysmem.NATIVE_BITS}-bit process); "
            f"arena {arena.__version__} from {os.path.dirname(arena.__file__)}; "
            f"test profile {settings.get_current_profile_name()} (max_examples {settings.default.max_examples})")


class _Reservations:
    """``reservations()``, read from /proc/self/smaps again only when /proc/self/maps changed.

    smaps costs the kernel a walk of every mapping's pages (about 5 ms here,
    twice per test); maps costs a tenth of that. A reservation made or released
    changes maps (a line, a range, or permissions: a MAP_NORESERVE mapping never
    merges with one without that flag), so an identical maps text means the
    same reservations. The pair is kept only if maps read the same around the
    smaps read, so that another thread's mapping cannot slip between them.
    """

    def __init__(self):
        self.maps, self.found = None, frozenset()

    def __call__(self):
        maps = self._maps()
        if maps != self.maps:
            found = reservations()
            if self._maps() != maps:
                return found
            self.maps, self.found = maps, found
        return self.found

    @staticmethod
    def _maps():
        with open("/proc/self/maps", "rb") as f:
            return f.read()


_reservations = _Reservations()


@pytest.fixture(autouse=True)
def no_backend_where_none_is_needed(request, monkeypatch):
    """A test marked ``backend_independent`` runs once for all backends (make test): it must make no memory backend.

    During it, ARENA_BACKEND names none, so that sysmem.default() raises here
    and in every command the test starts; and making a ``Memory`` of either
    backend here fails the test even where its exception was caught. Either
    way the marker is wrong: a test that uses the backend runs once per backend.
    Fixtures of a wider scope (module, session) are made before this one and
    are not checked: what a marked test asks of them must not be its subject.
    """
    if not backend_independent(request.node):
        yield
        return
    made = []

    def refuse(self, *args, **kwargs):
        made.append(type(self).__name__)
        raise AssertionError(f"{type(self).__name__}() in a test marked backend_independent: the test uses the "
                             "memory backend; remove the marker so that it runs once per backend")

    monkeypatch.setenv("ARENA_BACKEND", NO_BACKEND)
    monkeypatch.setattr(sysmem.Memory, "__init__", refuse)
    yield
    assert not made, f"a test marked backend_independent made a memory backend: {', '.join(made)}"


@pytest.fixture(autouse=True)
def one_test_with_programs_at_a_time(request):
    """A test that uses ``no_leftover_processes`` runs while no other such test runs on this machine."""
    if "no_leftover_processes" not in request.fixturenames:
        yield
        return
    with open(PROGRAMS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(autouse=True)
def no_leaked_mappings():
    """Every test must give back every mapping it reserved (checked in each pytest process, xdist workers included)."""
    before = _reservations()
    yield
    leaked = sorted(_reservations() - before)
    assert not leaked, "mappings left behind: " + ", ".join(f"[{a:#x}, {b:#x}) {p}" for a, b, p in leaked)


@pytest.fixture
def memory():
    return sysmem.default()


@pytest.fixture
def memory32():
    return sysmem.default(address_bits=32)
