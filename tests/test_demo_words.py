"""The demo's words: a reader who never heard of Go issue 20259 meets no unexplained jargon."""
import json
import re

import pytest

from arena import sysmem
from arena.interface import cli, report

# Words the demo once printed with no explanation.
JARGON = ("sound", "LOWERS", "strand", "missed")


def demo(capsys, monkeypatch, *argv):
    monkeypatch.setenv("COLUMNS", "250")  # each rule's decisions on one line
    assert cli.main(["demo", *argv]) == 0
    return " ".join(capsys.readouterr().out.split())  # paragraphs unwrapped


@pytest.mark.parametrize("argv", [[], ["--rule", "all"], ["--rule", "fixed"], ["--rule", "go1.11"],
                                  pytest.param(["--layout", "64"], marks=pytest.mark.needs_64_bit)])
def test_no_unexplained_jargon(capsys, monkeypatch, argv):
    out = demo(capsys, monkeypatch, *argv)
    for word in JARGON:
        assert word not in out, word
    # Every row of the table says what it means below it.
    for row in ("allocations lost:", "bytes intact:", "verify:"):
        assert row in out


def test_lowering_arena_used_is_said_and_explained(capsys, monkeypatch):
    out = demo(capsys, monkeypatch, "--rule", "legacy")
    assert "accepted 0x10000000, moved arena_used DOWN" in out
    assert "moved arena_used DOWN: the heap is [arena_start, arena_used)" in out
    assert "6 violations" in out and "heapBitsForSpan: base out of range" in out


def test_fixed_says_why_arena_used_jumps_to_the_top(capsys, monkeypatch):
    out = demo(capsys, monkeypatch, "--rule", "fixed")
    # Above the arena, near the top of the 32-bit space (where the kernel puts it: in a 32-bit
    # process, below the stack and the libraries the kernel placed there first).
    used = re.search(r"arena_used after (0x[0-9a-f]+)\b", out)
    assert used and int(used.group(1), 16) >= (0xff000000 if sysmem.NATIVE_BITS == 64 else 0xc0000000), out
    assert "no violation" in out and "kept its bounds" in out
    # The fallback is the request's own mapping, placed by the kernel, and arena_used rises to its end.
    assert "fallback: after refusing a region" in out and "raises arena_used to its end" in out
    assert "Go 1.8 raises arena_end with it" in out and "On 32-bit arena_start is 0" in out
    assert "the kernel searches from the top down" in out
    # Only the words its table uses: no lowering, no hint of Go 1.11.
    assert "moved arena_used DOWN" not in out and "asked at" not in out


def test_go1_11s_missed_hint_says_what_was_asked_and_got(capsys, monkeypatch):
    out = demo(capsys, monkeypatch, "--rule", "go1.11")
    assert "asked at 0x78400000, got 0x10000000: released; committed 0x10000000" in out
    assert "asked at H, got P: released: Go 1.11 keeps a reservation only where it asked for it" in out


@pytest.mark.needs_64_bit
def test_64_bit_out_of_memory_is_explained(capsys, monkeypatch):
    out = demo(capsys, monkeypatch, "--layout", "64")
    assert "rejected 0xbfa0000000; out-of-memory" in out
    assert "out-of-memory: no memory for the request" in out and "fails (out-of-memory)" in out


def test_json_keys_stay(capsys):
    assert cli.main(["demo", "--rule", "go1.11", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"command", "layout", "rules", "exit"}
    (go111,) = data["rules"]
    assert "missed" in [e["verdict"] for e in go111["events"]]  # the recorded verdicts keep their names


def test_the_legend_names_only_what_the_table_uses():
    assert report.legend([]) == report.LEGEND


def test_go1_9s_refusal_says_what_stranded_means():
    from arena.policy.layout import LAYOUT_32, MiB
    from arena.policy.rules import BUILTIN, Bounds

    why = BUILTIN["go1.9"].refusal(Bounds(0, 0x71000000, 0x71000000, 0x78000000), 0x10000000, 256 * MiB, LAYOUT_32)
    assert why == "it would leave 0x7000000 bytes of the current block unused for good (stranded; go1.9 leaves under 0x1000000)"
