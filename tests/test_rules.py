"""Placement rules as objects: the built-ins, a user's rule, a rule missing a part, and a user's rule that
fails, changes between reads, or tries to change what it is handed."""
import dataclasses
import sys

import pytest

import arena
from arena import sysmem
from arena.harness import trace
from arena.harness.check import verify
from arena.harness.hunt import free_spot
from arena.interface import demo
from arena.policy import rules
from arena.policy.layout import MiB
from arena.policy.rules import Bounds, Rule
from arena.spaces import ScriptedMemory, reservations
from hardening_util import Foreign

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
@pytest.mark.backend_independent
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
@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
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


@pytest.mark.parametrize("reply, words", [
    (True, r"^rule test_rules:Answers: refusal\(\) returned True; it must return None \(take the region\) or a str"),
    (0, r"refusal\(\) returned 0;"),
    (-1, r"refusal\(\) returned -1;"),
    (42, r"refusal\(\) returned 42;"),
    (b"no", r"refusal\(\) returned b'no';"),
    (ZeroDivisionError("oops"), r"^rule test_rules:Answers raised ZeroDivisionError in refusal\(\): oops$"),
    # SystemExit from a user's rule is its failure: it neither exits nor keeps the region.
    (SystemExit(3), r"^rule test_rules:Answers raised SystemExit in refusal\(\): 3$"),
])
def test_a_failing_rule_raises_rule_failed_after_giving_the_region_back(reply, words):
    # The autouse fixture fails the test if the refused region stays mapped.
    with arena.Arena(arena.LAYOUT_32, Answers(reply), memory=scripted32(None, 0x10000000), start=0x80000000,
                     initial_size=0) as a:
        with pytest.raises(rules.RuleFailed, match=words) as failed:
            a.sys_alloc(MiB)
        assert failed.value.rule == "test_rules:Answers" and failed.value.part == "refusal()"
        if isinstance(reply, BaseException):
            assert failed.value.error is reply and failed.value.__cause__ is reply
        grow = a.events[-1]
        assert grow.verdict == "rejected" and grow.reason == f"{failed.value}; released"
        assert a.stats.released_after_rejection == 256 * MiB
        assert not any(r.start == 0x10000000 for r in a.regions)
        assert verify(a) == []
        assert a.sys_alloc(PAGE) is not None  # the arena goes on


def test_an_interrupted_rule_gives_the_region_back_and_lets_the_interrupt_through():
    with arena.Arena(arena.LAYOUT_32, Answers(KeyboardInterrupt()), memory=scripted32(None, 0x10000000),
                     start=0x80000000, initial_size=0) as a:
        with pytest.raises(KeyboardInterrupt):
            a.sys_alloc(MiB)
        assert a.events[-1].verdict == "rejected" and not any(r.start == 0x10000000 for r in a.regions)
        assert verify(a) == []


# -- a rule is read once, into the values that were checked ----------------------------


class Shifty(Rule):
    """A rule whose parts change as they are read: ``separate_cursor`` is False for its first
    ``honest`` reads, then True, which with ``fallback_raises_end`` is the pair ``check`` forbids."""

    fallback_on_no_room = True
    fallback_raises_end = True

    def __init__(self, honest):
        self.honest, self.reads = honest, {}

    def _count(self, part):
        self.reads[part] = self.reads.get(part, 0) + 1
        return self.reads[part]

    @property
    def separate_cursor(self):
        return self._count("separate_cursor") > self.honest

    def refusal(self, bounds, p, p_size, layout):
        return "never"


def test_an_arena_reads_each_part_of_its_rule_once():
    class Counted(Rule):
        def __init__(self):
            self.reads = {}

        def _count(self, part, value):
            self.reads[part] = self.reads.get(part, 0) + 1
            return value

        name = property(lambda self: self._count("name", "counted"))
        separate_cursor = property(lambda self: self._count("separate_cursor", True))
        fallback_on_no_room = property(lambda self: self._count("fallback_on_no_room", True))
        fallback_raises_end = property(lambda self: self._count("fallback_raises_end", False))
        refusal = property(lambda self: self._count("refusal", lambda bounds, p, p_size, layout: None))

    rule = Counted()
    with arena.Arena(arena.LAYOUT_32, rule, initial_size=0) as a:
        assert a.rule == "counted" and a.placement is rule
    assert rule.reads == dict.fromkeys(["name", "separate_cursor", "fallback_on_no_room", "fallback_raises_end", "refusal"], 1)


@pytest.mark.parametrize("honest", [1, 2, 3, 4])
def test_a_rule_whose_parts_change_between_reads_never_commits_memory_it_does_not_own(honest):
    # The arena's first block ends where somebody else's read-only mapping starts. Under the
    # forbidden pair (separate cursor, fallback raising arena_end), a fallback mapping far above
    # raises arena_end, and the next commit runs from arena_alloc across the read-only mapping:
    # it turns rw-p and is handed out. Read once, the rule is Go 1.8's pair, whatever it says later.
    memory = sysmem.default(address_bits=32)
    layout = dataclasses.replace(arena.LAYOUT_32, metadata_size=PAGE, first_sizes=(16 * MiB,), growth_step=16 * MiB)
    foreign = Foreign()
    try:
        span = PAGE + 16 * MiB + 64 * 1024
        # The kernel's pages are 4 KiB; the arena's start must be a whole arena page (8 KiB).
        base = -(-free_spot(memory, 0x40000000, 0xA0000000, span + PAGE, 0.5) // PAGE) * PAGE
        start, end = base + PAGE, base + PAGE + 16 * MiB
        assert foreign.place(end, 64 * 1024, writable=False, seed=3)
        low = free_spot(memory, 0x10000000, base - 32 * MiB, 32 * MiB, 0.0)
        high = free_spot(memory, 0xB0000000, 0xF0000000, 32 * MiB, 0.0)
        rule = Shifty(honest)
        with arena.Arena(layout, rule, memory=ScriptedMemory(memory, [None, low, high]), start=start,
                         initial_size=16 * MiB) as a:
            for n in (PAGE, 16 * MiB, 16 * MiB):
                a.sys_alloc(n)
            assert [v for v in verify(a) if v.kind == "foreign"] == []
            assert foreign.damaged() == []
    finally:
        foreign.release()


@pytest.mark.backend_independent
def test_reading_a_part_that_raises_is_rule_failed_naming_the_part():
    class Raises(Rule):
        separate_cursor = property(lambda self: 1 // 0)
        fallback_on_no_room = fallback_raises_end = False

        def refusal(self, bounds, p, p_size, layout):
            return None

    with pytest.raises(rules.RuleFailed, match=r"^rule test_rules:.*Raises raised ZeroDivisionError in separate_cursor: "):
        arena.Arena(arena.LAYOUT_32, Raises(), initial_size=0)


# -- the resolver makes only rule classes ------------------------------------------------


@pytest.mark.backend_independent
def test_module_attr_of_a_class_that_is_not_a_rule_is_refused_without_making_one(tmp_path, monkeypatch):
    (tmp_path / "notrules.py").write_text(
        "made = []\n\nclass Costly:\n    def __init__(self):\n        made.append(self)\n\n"
        "class DuckRule:\n    separate_cursor = fallback_on_no_room = True\n    fallback_raises_end = False\n"
        "    def __init__(self):\n        made.append(self)\n    def refusal(self, bounds, p, p_size, layout):\n        return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import notrules

    with pytest.raises(ValueError, match=r"^rule notrules:Costly: Costly is not a rule: a subclass of arena.Rule, or a class with"):
        rules.resolve("notrules:Costly")
    assert notrules.made == []
    # arena:Arena would reserve address space before being refused.
    before = reservations()
    with pytest.raises(ValueError, match="Arena is not a rule"):
        arena.Arena(arena.LAYOUT_32, "arena:Arena", initial_size=0)
    assert reservations() == before
    # A class with the four parts is a rule, subclass or not: made with no arguments.
    duck = rules.resolve("notrules:DuckRule")
    assert notrules.made == [duck]


# -- a rule sees copies ------------------------------------------------------------------


def test_a_rule_cannot_change_the_layout_it_is_handed():
    class Vandal(Rule):
        separate_cursor = fallback_on_no_room = True
        fallback_raises_end = False

        def __init__(self):
            self.seen = []

        def refusal(self, bounds, p, p_size, layout):
            self.seen.append(layout.strand_limit)
            layout.__dict__["strand_limit"] = 1
            object.__setattr__(layout, "max_mem", 1)
            return "no"

    original = dict(arena.LAYOUT_32.__dict__)
    rule = Vandal()
    try:
        with arena.Arena(arena.LAYOUT_32, rule, memory=scripted32(None, 0x10000000, None, 0x20000000), start=0x80000000,
                         initial_size=0) as a:
            a.sys_alloc(MiB)
            a.sys_alloc(512 * MiB)
            assert a.layout == arena.LAYOUT_32 and a.layout is arena.LAYOUT_32
        assert dict(arena.LAYOUT_32.__dict__) == original
        assert rule.seen == [16 * MiB, 16 * MiB]  # each call gets a fresh copy
    finally:
        arena.LAYOUT_32.__dict__.update(original)  # never leave the global broken for other tests


# -- names: a rule's own, never its parent's -----------------------------------------------


def test_a_subclass_of_a_built_in_rule_is_named_by_its_own_class():
    class KeepEnd(rules.Fixed):
        fallback_raises_end = False

    class Named(rules.Fixed):
        name = "mine:Named"

    class Child(Named):
        pass

    qualname = f"{__name__}:test_a_subclass_of_a_built_in_rule_is_named_by_its_own_class.<locals>"
    assert KeepEnd().name == rules.name_of(KeepEnd()) == f"{qualname}.KeepEnd"
    assert Named().name == "mine:Named" and Child().name == f"{qualname}.Child"
    with arena.Arena(arena.LAYOUT_32, KeepEnd(), initial_size=0) as a:
        assert a.rule == f"{qualname}.KeepEnd" and repr(a.placement) == f"<rule {qualname}.KeepEnd>"
    duck = type("Duck", (), {"separate_cursor": False, "fallback_on_no_room": False, "fallback_raises_end": True,
                             "refusal": lambda self, bounds, p, p_size, layout: None})()
    duck.name = "duck:own"
    assert rules.read(duck).name == "duck:own"


def test_a_subclass_trace_replays_the_subclass_not_the_built_in(tmp_path, monkeypatch):
    (tmp_path / "keepend.py").write_text(
        "from arena.policy.rules import Fixed\n\nclass KeepEnd(Fixed):\n    fallback_raises_end = False\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = demo.replay_20259("keepend:KeepEnd")
    with r.arena:
        assert r.arena.rule == "keepend:KeepEnd"
        r.arena.save_trace(tmp_path / "t.json")
    t = trace.load(tmp_path / "t.json")
    assert t.rule == "keepend:KeepEnd"
    again = trace.replay(t)
    with again.arena:
        assert again.arena.rule == "keepend:KeepEnd" and type(again.arena.placement).__name__ == "KeepEnd"


@pytest.mark.backend_independent
def test_module_attr_imports_from_the_current_directory_first(tmp_path, monkeypatch):
    (tmp_path / "herenow.py").write_text("from arena.policy.rules import Strict\n\nclass Here(Strict):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    path = list(sys.path)
    assert rules.resolve("herenow:Here").name == "herenow:Here"
    assert sys.path == path  # put first while importing, not left behind
