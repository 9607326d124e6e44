import ctypes
import os

import pytest

import arena
from arena import sysmem
from arena.spaces import reservations

# glibc gives each new thread a malloc arena reserved with MAP_NORESERVE; one
# arena keeps threaded tests from looking like they leaked a reservation.
M_ARENA_MAX = -8
ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_64_bit: needs a 64-bit address space; skipped in a 32-bit process")
    config.addinivalue_line("markers", "needs_clean_space: places mappings at fixed addresses; runs first")
    config.addinivalue_line("markers", "needs_shim: needs the compiled shim; deselect with -m 'not needs_shim' where it was not built")
    config.addinivalue_line("markers", "backend_independent: does not depend on the memory backend (a real program's run): "
                                       "one backend's run is enough")
    config.addinivalue_line("markers", "slow: takes minutes (10-of-10 reproductions); skipped unless selected with "
                                       "-m slow or ARENA_SLOW=1 (make test-real)")


def pytest_collection_modifyitems(config, items):
    # In a 32-bit process, hundreds of tests leave Python's own heap scattered
    # through the 4 GiB space; tests that need particular ranges free run
    # before that happens (a stable sort keeps the rest in order).
    items.sort(key=lambda item: "needs_clean_space" not in item.keywords)
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
            f"arena {arena.__version__} from {os.path.dirname(arena.__file__)}")


@pytest.fixture(autouse=True)
def no_leaked_mappings():
    """Every test must give back every mapping it reserved."""
    before = reservations()
    yield
    leaked = sorted(reservations() - before)
    assert not leaked, "mappings left behind: " + ", ".join(f"[{a:#x}, {b:#x}) {p}" for a, b, p in leaked)


@pytest.fixture
def memory():
    return sysmem.default()


@pytest.fixture
def memory32():
    return sysmem.default(address_bits=32)
