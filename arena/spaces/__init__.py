"""Adversarial address spaces for the model, made of real mappings: scripted answers, crowds, safe peeks and pokes.

``ScriptedMemory`` answers an arena's reservations where a test says, by
really mapping there; ``Crowd`` fills the space with blockers so that the
kernel itself answers low, or (``Crowd.from_maps``) with a real process's
mappings; ``peek`` and ``poke`` read and write raw addresses without crashing.
"""
from __future__ import annotations

from ..sysmem import reservations
from .crowd import EXAMPLE_MAPS, Crowd, Skipped, example_maps
from .peek import peek, poke
from .scripted import NO_ROOM, Answer, AnswerTaken, Call, Fail, ScriptedMemory

__all__ = [
    "EXAMPLE_MAPS",
    "NO_ROOM",
    "Answer",
    "AnswerTaken",
    "Call",
    "Crowd",
    "Fail",
    "ScriptedMemory",
    "Skipped",
    "example_maps",
    "peek",
    "poke",
    "reservations",
]
