"""Placement rules as objects: the built-ins, a user's rule, and a rule missing a part."""
import pytest

import arena
from arena import sysmem
from arena.interface import demo
from arena.policy import rules
from arena.harness.check import verify
from arena.policy.layout import MiB
from arena.harness.hunt import free_spot
from arena.policy.rules import Bounds, Rule
from arena.spaces import ScriptedMemory

PAGE = arena.LAYOUT_32.page_size


def scripted32(*answers):
    return ScriptedMemory(sysmem.default(address_bits=32), answers)


class RefuseAll(Rule):
    """A user's rule, recording what it was asked."""

    separate_cursor = True
    fallback_on_no_room = True
    fallback_raises_end = False

    def __init__(self):
        self.asked = []

    def refusal(self, bounds, p, p_size, layout):
        self.asked.append((bounds, p, p_size, layout))
        return "never"


def test_the_built_ins_are_rules_and_arena_rule_is_their_name():
    assert arena.RULES == ("fixed", "legacy", "go1.9", "strict")
    for name in arena.RULES:
        with arena.Arena(arena.LAYOUT_32, name, initial_size=0) as a:
            assert a.rule == name and str(a.rule) == name
            assert isinstance(a.placement, Rule) and a.placement is rules.resolve(name)
    with arena.Arena(arena.LAYOUT_32, initial_size=0) as a:
        assert a.rule == "fixed"


def test_a_users_rule_decides_and_sees_only_copies_of_the_bounds():
    rule = RefuseAll()
    with arena.Arena(arena.LAYOUT_32, rule, memory=scripted32(None, 0x10000000), start=0x80000000, initial_size=0) as a:
        assert a.placement is rule and a.rule == f"{__name__}:RefuseAll"
        p = a.sys_alloc(MiB)
        assert [e.verdict for e in a.events[1:]] == ["rejected", "fallback"] and a.contains(p)
        grow = a.events[1]
        assert "never; released" in grow.reason
        assert rule.asked == [(Bounds(*grow.before), 0x10000000, 256 * MiB, arena.LAYOUT_32)]
        assert verify(a) == []


def above_the_hint(hint, size):
    """A scripted answer: the lowest free spot above the hint (arena_end), at least a page past it."""
    return free_spot(sysmem.default(address_bits=32), hint + PAGE, 1 << 32, size, 0.0)


def test_strict_takes_only_the_hint_where_fixed_takes_a_region_above_arena_end():
    for name, verdicts in (("fixed", ["accepted", "committed"]), ("strict", ["rejected", "fallback"])):
        with arena.Arena(arena.LAYOUT_32, name, memory=scripted32(None, above_the_hint), start=0x80000000, initial_size=0) as a:
            a.sys_alloc(MiB)
            assert [e.verdict for e in a.events[1:]] == verdicts, name
            assert verify(a) == []


def test_strict_rejects_the_20259_answer_and_falls_back():
    r = demo.replay_20259("strict")
    with r.arena:
        assert [e.verdict for e in r.arena.events][-2:] == ["rejected", "fallback"]
        assert r.lost == [] and verify(r.arena) == [] and r.intact()


def test_fallback_raises_end_is_the_rules_to_decide():
    # Go's fix without Go 1.8's update of arena_end: the fallback leaves arena_end alone.
    class FixedKeepsEnd(rules.Fixed):
        name = "fixed-keeps-end"
        fallback_raises_end = False

    for rule, raised in ((rules.resolve("fixed"), True), (FixedKeepsEnd(), False)):
        with arena.Arena(arena.LAYOUT_32, rule, memory=scripted32(None, 0x10000000), start=0x80000000, initial_size=0) as a:
            end = a.arena_end
            p = a.sys_alloc(MiB)
            assert a.events[-1].verdict == "fallback" and p > end
            assert (a.arena_end > end) == raised, rule.name
            assert a.arena_alloc == a.arena_used  # both still allocate from arena_used (Go 1.8)


@pytest.mark.parametrize("part", ["separate_cursor", "fallback_on_no_room", "fallback_raises_end", "refusal"])
def test_a_rule_missing_a_part_is_a_type_error_naming_it(part):
    attrs = {"separate_cursor": False, "fallback_on_no_room": False, "fallback_raises_end": True,
             "refusal": lambda self, bounds, p, p_size, layout: None}
    del attrs[part]
    with pytest.raises(TypeError, match=part):
        type("Subclassed", (Rule,), attrs)()
    duck = type("Duck", (), attrs)()
    with pytest.raises(TypeError, match=part):
        arena.Arena(arena.LAYOUT_32, duck, initial_size=0)


def test_a_duck_typed_rule_with_every_part_works():
    duck = type("Duck", (), {"separate_cursor": True, "fallback_on_no_room": True, "fallback_raises_end": False,
                             "refusal": lambda self, bounds, p, p_size, layout: None})()
    with arena.Arena(arena.LAYOUT_32, duck, initial_size=0) as a:
        assert a.rule == f"{__name__}:Duck"


@pytest.mark.parametrize(
    "rule, exc, words",
    [
        ("go1.10", ValueError, "fixed, legacy, go1.9, strict"),
        ("nosuchmodule:Rule", ValueError, "cannot import nosuchmodule"),
        ("arena.policy.rules:Nothing", ValueError, "has no Nothing"),
        (":Fixed", ValueError, "module:attr"),
        (None, TypeError, "not NoneType"),
        (42, TypeError, "not int"),
        (type("Ints", (), {"separate_cursor": 1, "fallback_on_no_room": False, "fallback_raises_end": False,
                           "refusal": lambda *a: None})(), TypeError, "separate_cursor must be a bool"),
        (type("Both", (), {"separate_cursor": True, "fallback_on_no_room": False, "fallback_raises_end": True,
                           "refusal": lambda *a: None})(), ValueError, "fallback_raises_end needs separate_cursor False"),
        (type("Named", (), {"separate_cursor": False, "fallback_on_no_room": False, "fallback_raises_end": False,
                            "name": 7, "refusal": lambda *a: None})(), TypeError, "name must be a non-empty str"),
    ],
)
def test_bad_rules(rule, exc, words):
    with pytest.raises(exc, match=words):
        arena.Arena(arena.LAYOUT_32, rule, initial_size=0)


def test_module_attr_loads_a_class_or_an_instance(tmp_path, monkeypatch):
    (tmp_path / "myrules.py").write_text("from arena.policy.rules import Strict\n\nclass Holder:\n    STRICT = Strict()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import myrules

    assert rules.resolve("myrules:Holder.STRICT") is myrules.Holder.STRICT
    assert isinstance(rules.resolve("arena.policy.rules:Strict"), rules.Strict)
    with arena.Arena(arena.LAYOUT_32, "arena.policy.rules:Go19", initial_size=0) as a:
        assert a.rule == "go1.9" and isinstance(a.placement, rules.Go19)


def test_module_attr_of_an_abstract_class_names_the_missing_part(tmp_path, monkeypatch):
    (tmp_path / "halfrule.py").write_text(
        "from arena.policy.rules import Rule\n\nclass Half(Rule):\n    separate_cursor = True\n    fallback_raises_end = False\n"
        "    def refusal(self, bounds, p, p_size, layout):\n        return None\n"
    )
    (tmp_path / "brokenrule.py").write_text("def (:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="fallback_on_no_room"):
        rules.resolve("halfrule:Half")
    with pytest.raises(ValueError, match="cannot import brokenrule .SyntaxError"):
        rules.resolve("brokenrule:Anything")


class Answers(Rule):
    """Refusal returns whatever it is given, or raises it, once; then it takes every region."""

    separate_cursor = False
    fallback_on_no_room = False
    fallback_raises_end = True

    def __init__(self, reply):
        self.replies = [reply]

    def refusal(self, bounds, p, p_size, layout):
        reply = self.replies.pop() if self.replies else None
        if isinstance(reply, BaseException):
            raise reply
        return reply


@pytest.mark.parametrize("reply, exc, words", [
    (True, TypeError, "refusal must return None or a reason"),
    (0, TypeError, "refusal must return None or a reason"),
    (ZeroDivisionError("oops"), ZeroDivisionError, "oops"),
])
def test_a_failing_rule_raises_after_giving_the_region_back(reply, exc, words):
    # The autouse fixture fails the test if the refused region stays mapped.
    with arena.Arena(arena.LAYOUT_32, Answers(reply), memory=scripted32(None, 0x10000000), start=0x80000000,
                     initial_size=0) as a:
        with pytest.raises(exc, match=words):
            a.sys_alloc(MiB)
        grow = a.events[-1]
        assert grow.verdict == "rejected" and "the rule failed" in grow.reason
        assert a.stats.released_after_rejection == 256 * MiB
        assert not any(r.start == 0x10000000 for r in a.regions)
        assert verify(a) == []
        assert a.sys_alloc(PAGE) is not None  # the arena goes on
