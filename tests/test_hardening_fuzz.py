"""Only documented exceptions: the fuzz target (tests/fuzz_target.py) in a subprocess.

A segmentation fault there is a negative return code here, not a dead pytest.
The contract it enforces is its ``CONTRACT`` table.
"""
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import arena
from arena import spaces, sysmem
from arena.harness import check
from budget import budget

TARGET = Path(__file__).with_name("fuzz_target.py")
GROUPS = ["sysmem_constructors", "sysmem_calls", "layouts", "arenas", "heap_arenas", "threads", "testing_helpers"]
EXAMPLES = budget(150)


def run(*args, timeout=240):
    return subprocess.run([sys.executable, str(TARGET), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("group", GROUPS)
def test_only_documented_exceptions(group):
    out = run("--examples", str(EXAMPLES), group)
    assert out.returncode >= 0, f"the fuzz target died of signal {signal.Signals(-out.returncode).name}:\n{out.stdout}{out.stderr}"
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{group}: ok" in out.stdout


def test_a_crash_fails_the_test_instead_of_pytest():
    out = run("--selftest-crash")
    assert out.returncode == -signal.SIGSEGV


def test_the_contract_names_every_public_callable():
    sys.path.insert(0, str(TARGET.parent))
    try:
        import fuzz_target
    finally:
        sys.path.pop(0)
    text = " ".join(fuzz_target.CONTRACT)
    public = (
        ["Arena(", "sys_alloc", "contains", "close", "view(", "alloc(", "address_of", "history", "HeapArenas(",
         "HeapArenas.sys_alloc", "Layout(", "verify(",
         "verify_or_raise", "default(",
         "CffiMemory", "CtypesMemory", "reserve(", "reserve_exact", "commit", "decommit", "release",
         "mappings()", "mapping_count", "free_gaps", "program_extent", "ScriptedMemory(", "fail_next",
         "Crowd.occupy", "Crowd.fill", "peek", "poke", "copy.copy", "stats", "held("]
    )
    assert [name for name in public if name not in text] == []
    assert set(arena.__all__) >= {"Arena", "Layout"} and callable(check.verify) and callable(spaces.peek)
    assert all(isinstance(v[0], tuple) for v in fuzz_target.CONTRACT.values())
    assert sysmem.default is not None


def test_rules_whose_parts_change_between_reads():
    # Its own group (fuzz_target.shifting_rules): an arena decides by the values it read once and checked.
    out = run("--examples", str(EXAMPLES), "shifting_rules")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "shifting_rules: ok" in out.stdout
