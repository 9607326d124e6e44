"""Build the compiled shim if this machine can; everything else is in pyproject.toml.

The shim (``arena._native``) is a speedup, not a requirement: ``arena.sysmem``
falls back to libc through ctypes. So a failed compile (no C compiler, no
Python headers) skips the shim with one line saying why, and the install
succeeds. ``ARENA_REQUIRE_SHIM=1`` makes that failure an error instead, for CI
and packagers who must not ship a package without it.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

STRICT = "ARENA_REQUIRE_SHIM"


class build_shim_if_possible(build_ext):
    """build_ext that turns a failed compile into a skipped shim, unless $ARENA_REQUIRE_SHIM is set."""

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


setup(
    # cffi_modules is a setup() keyword only; cffi wraps this build_ext to
    # generate the C source before it compiles.
    cffi_modules=["native/build.py:ffibuilder"],
    cmdclass={"build_ext": build_shim_if_possible},
    # The shim uses the stable ABI (cffi's default), so one wheel serves every
    # supported CPython from 3.11 on.
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
