"""docs/trace-format.md says what the readers do: every JSON example of the page is read by its reader (and the
model's replayed with real memory), and a layout of only its address_bits is one, as the page says."""
import json
import re
from pathlib import Path

import pytest

from arena import tracer
from arena.harness import trace
from arena.harness.run import observe
from arena.managers.record import LAYOUTS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "trace-format.md"
EXAMPLES = re.findall(r"```json\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


@pytest.mark.backend_independent
def test_the_page_has_its_examples():
    kinds = [json.loads(text).get("kind", "model") for text in EXAMPLES]
    assert kinds.count("model") >= 2 and kinds.count("program") == 1, kinds


@pytest.mark.parametrize("text", EXAMPLES, ids=lambda text: json.loads(text).get("kind", "model") + ":"
                         + str(json.loads(text).get("rule", json.loads(text).get("adversary"))))
def test_every_example_of_the_page_is_read_and_the_models_replayed(text, tmp_path):
    data = json.loads(text)
    path = tmp_path / "example.json"
    path.write_text(text, encoding="utf-8")
    if data.get("kind") == "program":
        # Its executable is the page's: read, not run. What it records survives a save and a load.
        outcome = tracer.load(path)
        assert outcome.fatal == data["outcome"]["fatal"] and len(outcome.calls) == len(data["calls"])
        tracer.save(outcome, tmp_path / "again.json")
        assert tracer.dump(tracer.load(tmp_path / "again.json")) == tracer.dump(outcome)
        return
    t = trace.load(path)
    r = trace.replay(t)
    with r.arena:
        o = observe(r)
    assert len(o.requests) == len(data["requests"])
    if t.rule == "legacy":
        # Go issue 20259: the low mmap lowered arena_used.
        assert any(v.kind == "arena_used-decreased" for v in o.violations), o.violations
    else:
        assert not o.violations, o.violations


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.backend_independent
def test_a_layout_of_only_its_address_bits_is_read(bits):
    t = trace.parse({"format": "arena-trace", "version": 1, "layout": {"address_bits": bits}, "rule": "fixed",
                     "requests": [8192], "answers": []})
    assert t.layout.address_bits == bits and t.layout.max_mem == LAYOUTS[str(bits)].max_mem
    assert t.layout.name == "custom" and t.layout.page_size == 8192  # Layout's own default


@pytest.mark.backend_independent
def test_a_layout_without_address_bits_is_named():
    with pytest.raises(trace.TraceError, match=r"^layout.address_bits: missing$"):
        trace.parse({"format": "arena-trace", "version": 1, "layout": {"max_mem": 1}, "rule": "fixed",
                     "requests": [8192], "answers": []})


@pytest.mark.backend_independent
def test_the_page_says_what_the_reader_requires_of_a_layout():
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "`address_bits` required; `max_mem` left out is that of `\"32\"` or `\"64\"`" in text
