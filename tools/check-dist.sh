#!/usr/bin/env bash
# tools/check-dist.sh - build the sdist and the wheel, then install them the ways a user does.
#
#   tools/check-dist.sh          build both into dist/ and check them (make check-dist; CI)
#   tools/check-dist.sh build    only build both into dist/ (make dist)
#
# Every check installs into a fresh virtualenv and runs from outside the source
# tree, so that `import arena` can only find the installed package:
#   sdist     holds what a build needs (native/, the build script, docs/, tests/,
#             LICENSE, CHANGELOG.md, py.typed) and no compiled objects;
#   wheel     built from the sdist with ARENA_REQUIRE_SHIM=1, so it holds the
#             shim; on every supported Python: import, `arena --version`,
#             `arena demo --json` exit 0, the compiled backend in use;
#   types     mypy --strict on tools/typing_consumer.py against the installed
#             package (its py.typed), and the program run;
#   no-cc     the sdist with no C compiler reachable (CC=false, a PATH holding
#             only the venv): the install succeeds and says the shim was skipped,
#             default() is CtypesMemory, the test suite less the tests marked
#             needs_shim passes against the installed package; with
#             ARENA_REQUIRE_SHIM=1 the same build fails;
#   py3.10    if a Python 3.10 is found: pip refuses the sdist, naming the
#             Python it needs.
#
# Environment:
#   PYTHON               the interpreter that builds and checks (default python3)
#   ARENA_DIST_PYTHONS   the versions the wheel is tried on (default "3.11 3.12 3.13"),
#                        each found as pythonX.Y on PATH or in pyenv; a missing one
#                        is an error
#   KEEP_WORK=1          keep the work directory (venvs and logs) to look into a failure
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="$ROOT/dist"
PYTHON="${PYTHON:-python3}"
PYTHONS="${ARENA_DIST_PYTHONS:-3.11 3.12 3.13}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/arena-dist.XXXXXX")"
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
# The settings of the caller's own runs must not leak into a user's install.
unset ARENA_BACKEND ARENA_REQUIRE_SHIM

step() { printf '== %-6s %s (%ss)\n' "$1" "$2" "$SECONDS"; }
die() { printf 'check-dist: %s\n' "$*" >&2; exit 1; }
# Run a command with its output in $WORK/$1.log; on failure show the end of it.
logged() {
    local log="$WORK/$1.log"; shift
    "$@" >"$log" 2>&1 || { tail -n 40 "$log" >&2; die "failed: $* (log above)"; }
}
venv() { "$1" -m venv "$2" && "$2/bin/python" -m pip --version >/dev/null; }

find_python() {  # find_python 3.12: an interpreter of that version, or nothing
    local c
    for c in "$(command -v "python$1" || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
        if [ -x "$c" ] && "$c" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$1')" 2>/dev/null; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

build() {
    venv "$PYTHON" "$WORK/tools"
    logged tools-install "$WORK/tools/bin/python" -m pip install build "$@"
    rm -rf "$DIST"
    # The wheel is built from the sdist (build's default), which proves the
    # sdist carries what a build needs; strict, so a wheel never lacks the shim.
    ARENA_REQUIRE_SHIM=1 logged build "$WORK/tools/bin/python" -m build --outdir "$DIST" "$ROOT"
    SDIST="$(echo "$DIST"/*.tar.gz)" WHEEL="$(echo "$DIST"/*.whl)"
    [ -f "$SDIST" ] && [ -f "$WHEEL" ] || die "python -m build made no sdist or no wheel"
    step build "$(basename "$SDIST") $(basename "$WHEEL")"
}

if [ "${1:-check}" = build ]; then
    build
    exit 0
fi
[ "${1:-check}" = check ] || die "usage: tools/check-dist.sh [build]"

build mypy
VERSION="$("$WORK/tools/bin/python" -c "import sys; print(sys.argv[1].split('-')[-1][:-len('.tar.gz')])" "$SDIST")"
NAME="mmap_arena-$VERSION"

tar tzf "$SDIST" | sed "s|^$NAME/||" | sort >"$WORK/sdist.txt"
for f in native/shim.c native/shim.h native/build.py setup.py pyproject.toml MANIFEST.in README.md LICENSE \
         CHANGELOG.md docs/trace-format.md arena/py.typed tests/conftest.py tests/test_sysmem.py; do
    grep -qx "$f" "$WORK/sdist.txt" || die "the sdist lacks $f"
done
! grep -E '\.(so|o|pyc)$|_native\.c$|__pycache__' "$WORK/sdist.txt" || die "the sdist holds build products (above)"
"$WORK/tools/bin/python" -m zipfile -l "$WHEEL" | awk 'NR > 1 {print $1}' >"$WORK/wheel.txt"
for f in 'arena/_native\.abi3\.so' 'arena/py\.typed' "$NAME\.dist-info/licenses/LICENSE"; do
    grep -qx "$f" "$WORK/wheel.txt" || die "the wheel lacks $f"
done
step sdist "$(wc -l <"$WORK/sdist.txt") files, the wheel $(wc -l <"$WORK/wheel.txt"), both complete"

smoke() {  # smoke VENV BACKEND: the installed package imports, answers and runs the demo
    local v="$1"
    (cd "$WORK" && "$v/bin/python" -c "
import os, sys, arena
from arena import sysmem
assert arena.__file__.startswith(sys.prefix + os.sep), 'imported from ' + arena.__file__
assert type(sysmem.default()).__name__ == '$2', sysmem.default()") || die "$v: not the installed package, or not the $2 backend"
    [ "$("$v/bin/arena" --version)" = "arena $VERSION" ] || die "$v: arena --version says $("$v/bin/arena" --version)"
    (cd "$WORK" && "$v/bin/arena" demo --json >"$WORK/demo.json") || die "$v: arena demo --json failed"
    "$v/bin/python" -c "import json, sys; assert json.load(open(sys.argv[1]))['exit'] == 0" "$WORK/demo.json"
}

FIRST=""
for version in $PYTHONS; do
    py="$(find_python "$version")" || die "no Python $version (on PATH as python$version, or in pyenv); set ARENA_DIST_PYTHONS to the versions to try"
    v="$WORK/wheel-$version"
    venv "$py" "$v"
    logged "wheel-$version" "$v/bin/python" -m pip install "$WHEEL"
    smoke "$v" CffiMemory
    FIRST="${FIRST:-$v}"
    step wheel "Python $("$v/bin/python" -c 'import platform; print(platform.python_version())'): import, --version, demo --json, CffiMemory"
done

cp "$ROOT/tools/typing_consumer.py" "$WORK/"
(cd "$WORK" && logged mypy "$WORK/tools/bin/mypy" --strict --no-incremental --python-executable "$FIRST/bin/python" typing_consumer.py)
(cd "$WORK" && logged consumer "$FIRST/bin/python" typing_consumer.py)
step types "mypy --strict on a consumer of the installed package: $(tail -n 1 "$WORK/mypy.log")"

# No compiler: the venv is made first; then PATH holds only its bin directory.
v="$WORK/nocc"
venv "$PYTHON" "$v"
nocc=(env PATH="$v/bin" CC=false CXX=false)
if "${nocc[@]}" /bin/sh -c 'for c in gcc cc c89 c99 clang tcc; do command -v "$c" && exit 0; done; exit 1'; then
    die "a C compiler is still reachable (above)"
fi
logged nocc-install "${nocc[@]}" "$v/bin/python" -m pip install --no-cache-dir -v "mmap-arena[test] @ file://$SDIST"
grep -q "arena: compiled backend skipped" "$WORK/nocc-install.log" || die "the install did not say the shim was skipped"
! ls "$v"/lib/python*/site-packages/arena/_native* 2>/dev/null || die "a shim was built without a compiler"
smoke "$v" CtypesMemory
step no-cc "$(grep -o 'arena: compiled backend skipped.*' "$WORK/nocc-install.log" | head -n 1)"

# The suite against the installed package: the sdist's tests, its sources removed.
tar xzf "$SDIST" -C "$WORK"
rm -rf "${WORK:?}/$NAME/arena"
(cd "$WORK" && logged nocc-tests "$v/bin/python" -m pytest -p no:cacheprovider -m "not needs_shim" "$NAME/tests")
grep -q "arena backend: CtypesMemory .* from $v/lib/" "$WORK/nocc-tests.log" || die "the suite did not test the installed package with ctypes"
step no-cc "tests on the installed package: $(tail -n 1 "$WORK/nocc-tests.log" | tr -d '=')"

if "${nocc[@]}" ARENA_REQUIRE_SHIM=1 "$v/bin/python" -m pip wheel --no-cache-dir --no-deps -w "$WORK/strict" "$SDIST" >"$WORK/nocc-strict.log" 2>&1; then
    die "ARENA_REQUIRE_SHIM=1 built the sdist without a compiler"
fi
grep -q "arena: compiling the shim failed and ARENA_REQUIRE_SHIM is set" "$WORK/nocc-strict.log" || die "the strict build failed for another reason"
step strict "ARENA_REQUIRE_SHIM=1 without a compiler: the build fails, saying why"

if py="$(find_python 3.10)"; then
    venv "$py" "$WORK/py310"
    if "$WORK/py310/bin/python" -m pip install "$SDIST" >"$WORK/py310.log" 2>&1; then
        die "Python 3.10 installed the sdist"
    fi
    grep -q "requires a different Python" "$WORK/py310.log" || { tail "$WORK/py310.log" >&2; die "Python 3.10 failed for another reason"; }
    step py3.10 "$(grep -o "requires a different Python.*" "$WORK/py310.log" | head -n 1)"
fi
step done "the sdist and the wheel install and work as a user takes them"
