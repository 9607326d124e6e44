"""Moved to ``arena.harness.trace``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .harness.trace import *  # noqa: F403

moved(__name__, "arena.harness.trace")
