"""Moved to ``arena.managers.linear``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .managers.linear import *  # noqa: F403
from .managers.vocabulary import *  # noqa: F403
from .policy.rules import RULES  # noqa: F401

moved(__name__, "arena.managers.linear")
