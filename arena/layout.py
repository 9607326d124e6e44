"""Moved to ``arena.policy.layout``: this name stays for one release (CHANGELOG.md)."""
from ._moved import moved
from .policy.layout import *  # noqa: F403

moved(__name__, "arena.policy.layout")
