"""Build the compiled shim if this machine can, and the package index's description; the rest is in pyproject.toml.

The shim (``arena._native``) is a speedup, not a requirement: ``arena.sysmem``
falls back to libc through ctypes. So a failed compile (no C compiler, no
Python headers) skips the shim with one line saying why, and the install
succeeds. ``ARENA_REQUIRE_SHIM=1`` makes that failure an error instead, for CI
and packagers who must not ship a package without it.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

STRICT = "ARENA_REQUIRE_SHIM"
HERE = Path(__file__).resolve().parent
# A Markdown link or picture: [text](target), ![alt](target).
LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^)\s]+)\)")
# The linker options that write a run-time search path into the shim.
RUNPATH_OPTIONS = ("-Wl,-rpath", "-Wl,--rpath", "-Wl,-R")


def without_runpath(args: list[str]) -> list[str]:
    """A link command less its run-time search paths: ``-Wl,-rpath,DIR``, ``-Wl,-rpath=DIR``, ``-Wl,-rpath -Wl,DIR``."""
    kept: list[str] = []
    joined = tuple(option + sep for option in RUNPATH_OPTIONS for sep in ",=")
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg in RUNPATH_OPTIONS:
            skip_next = True  # the directory is the next argument
        elif not arg.startswith(joined):
            kept.append(arg)
    return kept


class build_shim_if_possible(build_ext):
    """build_ext that links the shim with no run-time search path, and turns a failed compile into a skipped
    shim, unless $ARENA_REQUIRE_SHIM is set."""

    def build_extensions(self) -> None:
        # The shim needs libc only, but the link command comes from the
        # building Python's sysconfig (and $LDFLAGS): a Python built with a
        # runpath (pyenv's --enable-shared is) would write its own library
        # directory, a path on the build machine, into every wheel.
        self.compiler.linker_so = without_runpath(self.compiler.linker_so)
        super().build_extensions()

    def run(self) -> None:
        try:
            super().run()
        except (CCompilerError, ExecError, PlatformError, OSError) as exc:
            if os.environ.get(STRICT, "") not in ("", "0"):
                print(f"arena: compiling the shim failed and {STRICT} is set: {exc}", file=sys.stderr)
                raise
            print(f"arena: compiled backend skipped ({exc}); arena will use its ctypes backend "
                  f"(set {STRICT}=1 to make this an error)", file=sys.stderr)
            # Nothing was built: list no outputs, so that installing copies none.
            self.extensions = []


INDEX_NOTE = ("*A path such as `docs/rules.md` names a file of the source distribution (the release's `.tar.gz`), "
              "where `make demo` and `make test` work as in a checkout.*")


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: ``## How faithful to Go it is`` -> ``how-faithful-to-go-it-is``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def long_description(readme: str) -> str:
    """The README as the package index shows it, where a relative link leads nowhere.

    The repository has no public address to make the links absolute, so a
    link to a file becomes its path as text, which names a file of the source
    distribution (a note under the title says so); a link to a heading of the
    README becomes its text, saying whether the heading is above or below.
    Absolute links and everything else are kept as they are.
    """
    headings = {_slug(m.group(1)): m.start() for m in re.finditer(r"^#+ (.+)$", readme, re.M)}

    def plain(m: re.Match[str]) -> str:
        picture, text, target = m.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: works anywhere
            return m.group(0)
        if target.startswith("#"):
            if target[1:] not in headings:
                raise ValueError(f"README.md links to #{target[1:]}, which is no heading of it")
            return f"{text}, {'below' if headings[target[1:]] > m.start() else 'above'}"
        if picture:
            return f"{text} (a picture): `{target}`"
        return f"`{target}`" if text.strip("`") == target else f"{text}: `{target}`"

    title, _, rest = readme.partition("\n")
    return f"{title}\n\n{INDEX_NOTE}\n{LINK.sub(plain, rest)}"


# setuptools runs this file as __main__; a test imports it for long_description.
if __name__ == "__main__":
    setup(
        # cffi_modules is a setup() keyword only; cffi wraps this build_ext to
        # generate the C source before it compiles.
        cffi_modules=["native/build.py:ffibuilder"],
        cmdclass={"build_ext": build_shim_if_possible},
        # The shim uses the stable ABI (cffi's default), so one wheel serves every
        # supported CPython from 3.11 on.
        options={"bdist_wheel": {"py_limited_api": "cp311"}},
        long_description=long_description((HERE / "README.md").read_text(encoding="utf-8")),
        long_description_content_type="text/markdown",
    )
