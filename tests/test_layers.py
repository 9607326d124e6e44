"""The package's layout: old module names still import (with a warning) and give the same objects."""
import importlib
import subprocess
import sys
import warnings

import pytest

import arena

MOVED = {
    "arena.testing": ("arena.spaces", "ScriptedMemory"),
    "arena.layout": ("arena.policy.layout", "Layout"),
    "arena.rules": ("arena.policy.rules", "Fixed"),
    "arena.manager": ("arena.managers.linear", "Arena"),
    "arena.heaparenas": ("arena.managers.heaparenas", "HeapArenas"),
    "arena.check": ("arena.harness.check", "verify"),
    "arena.trace": ("arena.harness.trace", "save"),
    "arena.hunt": ("arena.harness.hunt", "hunt"),
}


# Module names and imports: no memory backend (conftest checks).
pytestmark = pytest.mark.backend_independent


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_name_warns_and_gives_the_same_objects(old):
    new, name = MOVED[old]
    # A fresh interpreter: the warning is given when the module is first imported.
    code = (f"import warnings; warnings.simplefilter('error')\n"
            f"try:\n    import {old}\nexcept DeprecationWarning as w:\n    print(w)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{old} is now {new}" in done.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_the_old_manager_name_still_has_everything_it_had():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        manager = importlib.import_module("arena.manager")
    for name in ("RULES", "Arena", "ArenaClosed", "Bounds", "Event", "Region", "ReservationFailed", "Stats"):
        assert getattr(manager, name) is getattr(arena, name)


def test_the_public_api_of_arena_itself_did_not_move():
    assert sorted(arena.__all__) == sorted([
        "LAYOUT_32", "LAYOUT_64", "RULES", "Arena", "ArenaClosed", "Bounds", "Event", "GoThrow", "HeapArenas",
        "HeapState", "Layout", "ReentrantCall", "Region", "ReservationFailed", "Rule", "Stats", "native_layout"])
    for name in arena.__all__:
        assert getattr(arena, name) is not None


def test_each_module_says_its_job_in_its_first_line():
    import pkgutil

    for info in pkgutil.walk_packages(arena.__path__, "arena."):
        if info.name in ("arena._native", "arena.__main__"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module(info.name)
        doc = (module.__doc__ or "").strip()
        assert doc and len(doc.splitlines()[0]) > 20, f"{info.name} has no first line saying its job"


def test_the_command_line_starts_without_what_only_some_commands_need():
    # A command's start is mostly imports (a tenth of a second): the tracer and the real programs' commands are
    # imported by those commands, the package's data files by what reads them.
    code = ("import sys, arena.interface.cli\n"
            "print(' '.join(m for m in ('arena.tracer', 'arena.interface.programs', 'importlib.resources', 'subprocess')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "\n", done.stdout + done.stderr
