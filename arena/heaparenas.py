"""Moved to ``arena.managers.heaparenas``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .managers.heaparenas import *  # noqa: F403
from .managers.vocabulary import HeapState  # noqa: F401

moved(__name__, "arena.managers.heaparenas")
