"""The README's examples run as written."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).parent.parent / "README.md"


@pytest.mark.backend_independent
def test_readme_starts_with_the_two_commands():
    head = README.read_text().splitlines()[:5]
    assert any("make demo" in line for line in head) and any("make test" in line for line in head)


def test_readme_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


# A 32-bit process's own space, laid out afresh at each start, can lead the same seed to another
# counterexample (docs/rules.md says so): the README shows a 64-bit process's hunt.
@pytest.mark.needs_64_bit
def test_readme_hunt_example_prints_what_it_shows(tmp_path):
    """The same seed, the same counterexample and scenario count; the time and rate are the machine's."""
    import os
    import subprocess
    import sys

    from doc_output import assert_shows, shown

    command = "arena hunt --rule legacy --seed 1 --save-trace cx.json"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "PYTHONPATH")}  # piped: the default width
    done = subprocess.run([sys.executable, "-m", "arena", *command.split()[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert_shows(shown(README, command), done.stdout)
    again = subprocess.run([sys.executable, "-m", "arena", "replay", "cx.json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and shown(README, "arena replay cx.json; echo $?") == ["...", "1"]
