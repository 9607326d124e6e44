"""A user's own rule through the command line, as a user runs it from the folder that holds it: a rule
that fails is one line and exit 2 in demo and replay (``--traceback`` for the whole story) and a
counterexample in hunt; a subclass of a built-in is itself; ``module:attr`` imports from here."""
import json
import textwrap

import pytest

import commands
from arena import sysmem

FAILING = textwrap.dedent('''
    from arena import Rule
    from arena.policy.rules import Fixed


    class OneCursor(Rule):
        separate_cursor = False
        fallback_on_no_room = False
        fallback_raises_end = True


    class Raises(OneCursor):
        def refusal(self, bounds, p, p_size, layout):
            raise ZeroDivisionError("boom")


    class Minus(Fixed):  # no name of its own: it is not "fixed"
        def refusal(self, bounds, p, p_size, layout):
            return -1


    class FortyTwo(OneCursor):
        def refusal(self, bounds, p, p_size, layout):
            return 42


    class Yes(OneCursor):
        def refusal(self, bounds, p, p_size, layout):
            return True


    class Bytes(OneCursor):
        def refusal(self, bounds, p, p_size, layout):
            return b"no"


    class Arity(OneCursor):
        def refusal(self, bounds, p):
            return None


    class Exits(OneCursor):
        def refusal(self, bounds, p, p_size, layout):
            raise SystemExit(0)


    class Sometimes(OneCursor):
        """Takes what is above arena_end, and fails on anything below it."""

        def refusal(self, bounds, p, p_size, layout):
            if p > bounds.arena_end:
                return None
            raise ZeroDivisionError("boom")


    class BadPart(OneCursor):
        @property
        def separate_cursor(self):
            raise RuntimeError("no cursor today")

        def refusal(self, bounds, p, p_size, layout):
            return None
''')

KEEPEND = textwrap.dedent('''
    from arena.policy.rules import Fixed


    class KeepEnd(Fixed):
        """Go commit e5a5c03's check without Go 1.8's fallback step, and no name of its own."""

        fallback_raises_end = False
''')

FAILURES = {
    "Raises": "rule failing:Raises raised ZeroDivisionError in refusal(): boom",
    "Minus": "rule failing:Minus: refusal() returned -1; it must return None (take the region) or a str (why not)",
    "FortyTwo": "rule failing:FortyTwo: refusal() returned 42; it must return None (take the region) or a str (why not)",
    "Yes": "rule failing:Yes: refusal() returned True; it must return None (take the region) or a str (why not)",
    "Bytes": "rule failing:Bytes: refusal() returned b'no'; it must return None (take the region) or a str (why not)",
    "Arity": "rule failing:Arity raised TypeError in refusal(): Arity.refusal() takes 3 positional arguments but 5 were given",
    "Exits": "rule failing:Exits raised SystemExit in refusal(): 0",
}


def arena_cmd(*argv, cwd):
    """``arena ARGV`` in ``cwd`` as the installed script runs it (tests/commands.py)."""
    return commands.arena_cmd(*argv, cwd=cwd, installed=True, timeout=300)


def one_line(done, command):
    """The one line on stderr of a command that exited 2 and printed nothing else."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"arena {command}: "), done.stderr
    return done.stderr.rstrip("\n")


def was_saved(done, path):
    """Whether the hunt saved its counterexample at ``path``. Only a 32-bit process may not: its own
    space, laid out afresh at each start, can keep the replay shown from failing again; then the
    hunt says what it did not write."""
    text = " ".join(done.stdout.split())
    if sysmem.NATIVE_BITS == 32 and f"not written: --save-trace {path}" in text:
        assert "the counterexample did not fail again" in text
        return False
    return True


@pytest.fixture(scope="module")
def here(tmp_path_factory):
    """A user's folder: their rules beside a trace of the 20259 demo under legacy."""
    folder = tmp_path_factory.mktemp("mine")
    (folder / "failing.py").write_text(FAILING)
    (folder / "keepend.py").write_text(KEEPEND)
    done = arena_cmd("demo", "--rule", "legacy", "--save-trace", "legacy.json", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.parametrize("rule", sorted(FAILURES))
@pytest.mark.parametrize("command", ["demo", "replay", "maps"])
def test_a_rule_that_fails_is_one_line_naming_it_and_exit_2(here, command, rule):
    trace = ["legacy.json"] if command == "replay" else ["--trace", "legacy.json"] if command == "maps" else []
    line = one_line(arena_cmd(command, *trace, "--rule", f"failing:{rule}", cwd=here), command)
    assert line == f"arena {command}: {FAILURES[rule]} (--traceback shows where)"


def test_traceback_shows_where_the_rule_failed(here):
    done = arena_cmd("demo", "--rule", "failing:Raises", "--traceback", cwd=here)
    assert done.returncode == 2 and done.stdout == ""
    first, rest = done.stderr.split("\n", 1)
    assert first == f"arena demo: {FAILURES['Raises']}"
    assert "Traceback (most recent call last)" in rest and "failing.py" in rest and 'raise ZeroDivisionError("boom")' in rest
    assert rest.rstrip().endswith(FAILURES["Raises"])


def test_a_part_that_raises_when_read_is_one_line(here):
    line = one_line(arena_cmd("demo", "--rule", "failing:BadPart", cwd=here), "demo")
    assert "rule failing:BadPart raised RuntimeError in separate_cursor: no cursor today" in line


def test_a_rule_that_fails_on_some_input_is_a_counterexample_shrunk_and_saved(here):
    done = arena_cmd("hunt", "--rule", "failing:Sometimes", "--seed", "1", "--save-trace", "sometimes.json", cwd=here)
    assert done.returncode == 1, done.stdout + done.stderr
    if not was_saved(done, "sometimes.json"):
        return
    failure = "rule failing:Sometimes raised ZeroDivisionError in refusal(): boom"
    head = done.stdout.split("\n\n")
    assert head[0].startswith("counterexample found after") and head[1] == failure
    assert "minimal scenario" in done.stdout and "requests: sys_alloc(" in done.stdout
    assert "trace saved: sometimes.json (replay it with: arena replay sometimes.json)" in done.stdout
    assert "Traceback" not in done.stderr
    # The smallest scenario that makes it fail: one request, answered once, below arena_end. In a
    # 32-bit process the layout is the process's own space, where the kernel's other mappings (laid
    # out afresh at each start) can keep the shrinker from its smallest.
    saved = json.loads((here / "sometimes.json").read_text())
    assert saved["rule"] == "failing:Sometimes"
    assert len(saved["requests"]) == 1 or sysmem.NATIVE_BITS == 32
    # The printed replay line works as printed, and fails the same way.
    line = one_line(arena_cmd("replay", "sometimes.json", cwd=here), "replay")
    assert line == f"arena replay: {failure} (--traceback shows where)"
    done = arena_cmd("hunt", "--rule", "failing:Sometimes", "--seed", "1", "--json", cwd=here)
    assert done.returncode == 1
    assert {"kind": "rule-failed", "detail": failure} in json.loads(done.stdout)["violations"]


def test_a_subclass_of_a_built_in_is_hunted_saved_and_replayed_as_itself(here):
    done = arena_cmd("hunt", "--rule", "keepend:KeepEnd", "--seed", "2", "--examples", "3000", "--save-trace", "keepend.json",
                     cwd=here)
    assert done.returncode == 1, done.stdout + done.stderr
    if not was_saved(done, "keepend.json"):
        return
    assert "rule keepend:KeepEnd on the 32-bit layout" in done.stdout and "rule fixed on" not in done.stdout
    assert json.loads((here / "keepend.json").read_text())["rule"] == "keepend:KeepEnd"
    # Replayed, it is the subclass again, and fails again: the built-in would have passed.
    done = arena_cmd("replay", "keepend.json", cwd=here)
    assert done.returncode == 1 and "== keepend:KeepEnd" in done.stdout, done.stdout + done.stderr


def test_a_rule_in_the_current_folder_is_found_and_the_printed_replay_line_works(here):
    (here / "mine.py").write_text(
        "from arena import Rule\n\n\nclass Low(Rule):\n    separate_cursor = False\n    fallback_on_no_room = True\n"
        "    fallback_raises_end = True\n\n    def refusal(self, bounds, p, p_size, layout):\n"
        "        return None if p >= bounds.arena_start else 'below arena_start'\n"
    )
    done = arena_cmd("hunt", "--rule", "mine:Low", "--seed", "1", "--save-trace", "low.json", cwd=here)
    assert done.returncode == 1, done.stdout + done.stderr
    if not was_saved(done, "low.json"):
        return
    printed = " ".join(done.stdout.split()).rsplit("replay it with: ", 1)[1].split(")")[0]
    assert printed == "arena replay low.json"
    done = arena_cmd(*printed.split()[1:], cwd=here)
    assert done.returncode == 1 and "same decisions as the recorded run" in done.stdout, done.stdout + done.stderr
