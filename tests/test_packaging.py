"""What the package index and a user installing from it get: the description, the sdist's files, the shim's link, optional psutil, help that points to installed docs.

The builds themselves (clean output, auditwheel, twine, both platform wheels
installed and tested) are checked by tools/check-dist.sh, which CI runs.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands import arena_cmd

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# A relative link of the README: [text](path), not a URL and not a heading.
RELATIVE = re.compile(r"\]\(([^)#:\s]+)\)")


@pytest.fixture(scope="module")
def setup_py():
    """setup.py as a module: its functions, without running setup()."""
    pytest.importorskip("setuptools")
    spec = importlib.util.spec_from_file_location("arena_setup_py", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HIDE_PSUTIL = "import sys; sys.modules['psutil'] = None; "  # import psutil now raises ImportError


# -- the description the package index shows -----------------------------------------------------


@pytest.mark.backend_independent
def test_the_index_description_has_no_relative_link_and_names_each_file(setup_py):
    text = setup_py.long_description(README)
    paths = sorted(set(RELATIVE.findall(README)))
    assert "docs/trace-format.md" in paths and "benchmarks/results/bench.png" in paths  # the walk found them
    assert not RELATIVE.findall(text) and "](#" not in text
    for path in paths:
        assert f"`{path}`" in text and (ROOT / path).is_file(), path
    assert "(https://github.com/golang/go/issues/20259)" in text  # absolute links are kept


@pytest.mark.backend_independent
def test_the_index_description_says_where_its_paths_are_and_keeps_the_readme_otherwise(setup_py):
    text = setup_py.long_description(README)
    title, _, rest = text.partition("\n")
    assert title == README.partition("\n")[0] and rest.lstrip().startswith(setup_py.INDEX_NOTE)
    assert "source distribution" in setup_py.INDEX_NOTE
    assert re.findall(r"```python\n.*?```", text, re.S) == re.findall(r"```python\n.*?```", README, re.S)
    assert "Installing without a C compiler, below" in text and "(Install, below)" in text


@pytest.mark.backend_independent
def test_a_link_to_a_heading_that_is_not_there_is_an_error(setup_py):
    with pytest.raises(ValueError, match="#nowhere"):
        setup_py.long_description("# t\n\nsee [it](#nowhere)\n")
    assert setup_py.long_description("# t\n\n## Up here\n\n[x](#up-here) [p](a/b.md) ![c](d.png)\n").endswith(
        "\nx, above p: `a/b.md` c (a picture): `d.png`\n")


# -- the sdist: the README's paths and its first command ----------------------------------------


@pytest.mark.backend_independent
def test_the_sdist_ships_every_path_the_readme_names_and_the_makefile(monkeypatch):
    egg_info = pytest.importorskip("setuptools.command.egg_info")
    monkeypatch.chdir(ROOT)
    files = egg_info.FileList()
    files.findall()
    for line in (ROOT / "MANIFEST.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            files.process_template_line(line)
    shipped = {Path(f).as_posix() for f in files.files}
    named = set(RELATIVE.findall(README)) | {"Makefile", "native/shim.c", "native/build.py", "tests/conftest.py"}  # setup.py, pyproject.toml: always
    assert named <= shipped, named - shipped
    assert not [f for f in shipped if re.search(r"\.(so|o|pyc)$|/__pycache__/", f)]


@pytest.mark.backend_independent
def test_the_readme_says_where_make_works_and_what_installing_needs():
    head = README.split("\n## ")[0]
    assert "source distribution" in head and "pip install mmap-arena" in head
    install = README.split("\n## Install\n")[1].split("\n## ")[0]
    for words in ("i686", "psutil", "mmap-arena[maps]", "C compiler", "python3-dev"):
        assert words in install, words


# -- the shim carries no path of the machine that built it ----------------------------------------


@given(st.lists(st.sampled_from(["-shared", "-L/usr/lib", "-O2", "x.o", "-o", "y.so", "-Wl,-O1", "-lc"])),
       st.lists(st.tuples(st.integers(0, 50), st.sampled_from(
           [["-Wl,-rpath,/build/lib"], ["-Wl,-rpath=/a:/b"], ["-Wl,--rpath,/x"], ["-Wl,-R,/y"], ["-Wl,-rpath", "-Wl,/z"]]))))
@pytest.mark.backend_independent
def test_without_runpath_drops_exactly_the_runpath_options(setup_py, args, inserts):
    parts = [[arg] for arg in args]  # an option and its directory stay together
    for at, option in inserts:
        parts.insert(at, option)
    assert setup_py.without_runpath([arg for part in parts for arg in part]) == args


@pytest.mark.needs_shim
@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is not installed")
@pytest.mark.backend_independent
def test_the_built_shim_has_no_runpath():
    from arena import _native

    dynamic = subprocess.run(["readelf", "-d", _native.__file__], capture_output=True, text=True, check=True).stdout
    assert "libc.so" in dynamic  # readelf read the dynamic section: a pass is not an empty answer
    assert not re.search(r"\b(RPATH|RUNPATH)\b", dynamic), dynamic


# -- a clean build: what setuptools and the compiler would warn about --------------------------------


@pytest.mark.backend_independent
def test_every_folder_of_the_package_is_a_listed_package():
    # A folder Python can import (a data folder too) left out of the list is setuptools' "Package would be ignored".
    import arena

    package = Path(arena.__file__).parent  # the checkout's, or the installed one (check-dist)
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    # Tools' caches (a folder whose name starts with a dot, __pycache__) are not importable folders.
    folders = {".".join(("arena", *d.relative_to(package).parts)) for d in package.rglob("*")
               if d.is_dir() and not any(part.startswith((".", "__pycache__")) for part in d.relative_to(package).parts)} | {"arena"}
    assert "arena.data" in folders and folders == listed


@pytest.mark.skipif(shutil.which("cc") is None or not Path(sysconfig.get_paths()["include"], "Python.h").is_file(),
                    reason="no C compiler or no Python headers")
@pytest.mark.backend_independent
def test_the_shim_compiles_after_python_h_without_a_warning(tmp_path):
    # cffi's generated module includes Python.h before the shim's own source, as here.
    source = tmp_path / "module.c"
    source.write_text('#include <Python.h>\n#include "shim.c"\n')
    done = subprocess.run(["cc", "-Wall", "-Werror", "-fsyntax-only", f"-I{sysconfig.get_paths()['include']}",
                           f"-I{ROOT / 'native'}", str(source)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- psutil is optional -------------------------------------------------------------------------


@pytest.mark.backend_independent
def test_psutil_is_an_extra_not_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("psutil")]
    assert any(d.startswith("psutil") for d in project["optional-dependencies"]["maps"])
    assert any(d.startswith("psutil") for d in project["optional-dependencies"]["test"])  # the suite uses it


@pytest.mark.backend_independent
def test_without_psutil_maps_pid_says_what_to_install_in_one_line():
    done = arena_cmd("maps", "--pid", str(os.getpid()), prelude=HIDE_PSUTIL)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "pip install 'mmap-arena[maps]'" in done.stderr, done.stderr
    assert arena_cmd("maps", "--pid", str(os.getpid())).returncode == 0  # with psutil (the test extra) it works


@pytest.mark.parametrize("argv", [["demo", "--json"], ["maps", "--json"]])
def test_without_psutil_everything_else_works_and_never_imports_it(argv):
    done = arena_cmd(*argv, prelude=HIDE_PSUTIL)
    assert done.returncode == 0, done.stderr
    unused = subprocess.run([sys.executable, "-c", "import sys, arena.interface.cli; sys.exit('psutil' in sys.modules)"])
    assert unused.returncode == 0, "importing the command line imported psutil"


# -- help points to documentation that is installed ------------------------------------------------


@pytest.mark.backend_independent
def test_help_points_to_installed_documentation_only():
    from arena.interface import cli

    texts = [arena_cmd("--help").stdout] + [arena_cmd(c, "--help").stdout for c in ("demo", "replay", "maps", "hunt")]
    assert all(texts)
    assert not [t for t in texts if "docs/" in t]
    pointers = {m for t in texts for m in re.findall(r"python3 -m pydoc (\w+(?:\.\w+)*)", " ".join(t.split()))}
    assert pointers == {"arena.harness.trace", "arena.policy.rules", "arena.harness.program_hunt"}
    for module in pointers:
        shown = subprocess.run([sys.executable, "-m", "pydoc", module], capture_output=True, text=True, timeout=60,
                               env={**os.environ, "PAGER": "cat"})
        assert shown.returncode == 0 and "problem in" not in shown.stdout, shown.stdout[:200]
    assert '"format": "arena-trace"' in cli.trace.__doc__  # what replay's help promises: the trace format
    assert "refusal(bounds, p, p_size, layout)" in sys.modules["arena.policy.rules"].__doc__
    assert "refused memory" in sys.modules["arena.harness.program_hunt"].__doc__  # hunt --program's help points there
