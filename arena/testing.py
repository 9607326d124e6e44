"""Moved to ``arena.spaces``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .spaces import *  # noqa: F403

moved(__name__, "arena.spaces")
