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
