"""Moved to ``arena.policy.rules``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .policy.rules import *  # noqa: F403

moved(__name__, "arena.policy.rules")
