"""Moved to ``arena.harness.check``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .harness.check import *  # noqa: F403

moved(__name__, "arena.harness.check")
