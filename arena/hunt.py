"""Moved to ``arena.harness.hunt``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .harness.hunt import *  # noqa: F403

moved(__name__, "arena.harness.hunt")
