"""Hypothesis made to search the same way from any install and any folder, writing nothing there.

Hypothesis (6.131 and later) also draws literals found in the source of the
modules it deems local, those not installed in site-packages: a source
checkout's, a user's own rule's. So one seed searched differently from a
checkout than from a wheel (73 scenarios to the counterexample instead of 75),
and the literals were cached in ``.hypothesis/`` in the current folder: the
user's. While a hunt searches (``same_search``), there are none. Hypothesis
has no setting for it yet (its issue 4627), hence its internals here, looked
up defensively: with a hypothesis that lacks them, nothing is changed.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0
_saved: Any = None


def _providers() -> Any:
    """Hypothesis's providers module if it draws local constants the way this module knows, else None."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return None
    known = all(hasattr(providers, name) for name in ("_get_local_constants", "CONSTANTS_CACHE", "Constants"))
    return providers if known and hasattr(providers.CONSTANTS_CACHE, "cache") else None


@contextlib.contextmanager
def same_search() -> Iterator[None]:
    """Within: hypothesis draws no literals of local modules, and so caches none. Nests, and is thread-safe."""
    global _depth, _saved
    providers = _providers()
    if providers is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = providers._get_local_constants
            providers._get_local_constants = providers.Constants
            # Pools already made from the local constants (by an earlier test, in a test run) go too.
            providers.CONSTANTS_CACHE.cache.clear()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                providers._get_local_constants = _saved
                providers.CONSTANTS_CACHE.cache.clear()
