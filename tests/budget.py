"""How much work a randomised or repeated test does: the test profile's share of its thorough budget.

Two profiles, registered with hypothesis by tests/conftest.py:

- ``dev`` (``make test``, the default): a fifth of every budget, so the suite
  runs in about a minute;
- ``ci`` (``make test-full``, and CI, where $CI is set): the whole budget,
  hypothesis's own default of 100 examples where a test names none.

$ARENA_TEST_PROFILE (or pytest's ``--hypothesis-profile``) picks one. A test
names its thorough count through ``budget``; a property test's
``@settings(max_examples=budget(300))`` and a loop's ``range(budget(8))``
scale alike, so ``ci`` runs exactly what the suite ran before the profiles.
"""
from __future__ import annotations

import os

from hypothesis import settings

# max_examples of the ci profile, hypothesis's default: a budget's 100 %.
THOROUGH = 100
PROFILES = {"ci": THOROUGH, "dev": THOROUGH // 5}


def chosen() -> str:
    """The profile $ARENA_TEST_PROFILE names; ``ci`` under CI, else ``dev``."""
    under_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    name = os.environ.get("ARENA_TEST_PROFILE") or ("ci" if under_ci else "dev")
    if name not in PROFILES:
        raise ValueError(f"ARENA_TEST_PROFILE={name!r}: set it to one of {', '.join(PROFILES)}")
    return name


def budget(thorough: int, least: int = 1) -> int:
    """``thorough`` under the ci profile; under another, the same share of it as its max_examples of 100, at least ``least``."""
    return max(least, thorough * settings.default.max_examples // THOROUGH)
