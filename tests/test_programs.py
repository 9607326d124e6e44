"""The real test programs: the C allocator stress program under each allocator, the Go program under each Go toolchain.

Builds are kept in the user's cache (``arena.tracer.toolchains.cache_dir()``), keyed
by their sources, so a second run builds nothing. The old Go toolchains come
from ``make go-toolchains``; without them those tests skip and say so.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.tracer import toolchains
from arena.tracer.toolchains import ToolchainMissing, build_program
from budget import budget

PROGRAMS = Path(__file__).parent / "programs"
# What each build's malloc must come from: proves the link picked the allocator.
ALLOCATORS = {"glibc": "libc.so", "jemalloc": "libjemalloc", "mimalloc": "libmimalloc", "glibc32": "libc.so"}
# What a library build needs, to tell "not installed here" (skip) from "broken" (fail).
NEEDS = {"jemalloc": (["-ljemalloc"], "libjemalloc-dev"), "mimalloc": (["-lmimalloc"], "libmimalloc-dev"),
         "mimalloc-strict": (["-lmimalloc"], "libmimalloc-dev"), "glibc32": (["-m32"], "gcc-multilib")}
OLD_GO = ("go1.8", "e5a5c03", "go1.9")
# Go 1.8's first 32-bit reservation holds a 512 MiB arena and each growth adds
# 256 MiB: a heap above 768 MiB took at least two growths.
TWO_GROWTHS = 768


# Building and running the test programs: no memory backend (conftest checks), one run of make test.
pytestmark = pytest.mark.backend_independent


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ | env)


def links(flags: list[str]) -> bool:
    cc = os.environ.get("CC", "cc")
    probe = subprocess.run([cc, "-x", "c", "-", "-o", os.devnull, *flags], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def stress() -> Callable[[str], Path]:
    """``stress(name)``: the alloc_stress build ``name`` (glibc, jemalloc, ...), built once per source."""
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("needs make and a C compiler")
    digest = hashlib.sha256()
    for name in ("alloc_stress.c", "Makefile"):
        digest.update((PROGRAMS / name).read_bytes())
    out = toolchains.cache_dir() / "programs" / f"alloc_stress-{digest.hexdigest()[:16]}"
    out.mkdir(parents=True, exist_ok=True)

    def build(name: str) -> Path:
        target = out / f"alloc_stress-{name}"
        if target.is_file():
            return target
        flags, package = NEEDS.get(name, ([], ""))
        if flags and not links(flags):
            pytest.skip(f"cannot link with {' '.join(flags)} here (Debian: apt-get install {package})")
        # Built aside, then renamed: a parallel worker never runs half a file.
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            made = run(["make", "-s", "-C", str(PROGRAMS), f"OUT={tmp}", f"{tmp}/{target.name}"])
            assert made.returncode == 0, made.stdout + made.stderr
            os.replace(Path(tmp) / target.name, target)
        return target

    return build


# -- the C allocator stress program ----------------------------------------------


@pytest.mark.parametrize("allocator", list(ALLOCATORS))
def test_stress_passes_with_each_allocator(stress, allocator):
    done = run([str(stress(allocator)), "4", "2000", "7"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("alloc_stress: ok: 4 threads x 2000 operations")
    assert f"malloc from {ALLOCATORS[allocator]}" in done.stdout


@settings(max_examples=budget(15), deadline=None)
@given(threads=st.integers(1, 4), ops=st.integers(1, 400), seed=st.integers(1, 2**64 - 1))
def test_stress_is_deterministic_per_seed(stress, threads, ops, seed):
    program = str(stress("glibc"))
    first, again = (run([program, str(threads), str(ops), str(seed)]) for _ in range(2))
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout == again.stdout


def test_stress_seeds_differ(stress):
    program = str(stress("glibc"))
    assert run([program, "2", "300", "1"]).stdout != run([program, "2", "300", "2"]).stdout


@pytest.mark.parametrize("allocator", ["glibc", "glibc32"])
def test_stress_finds_a_changed_byte(stress, allocator):
    done = run([str(stress(allocator)), "2", "200"], ALLOC_STRESS_CORRUPT="1")
    assert done.returncode == 1
    assert re.fullmatch(r"alloc_stress: CORRUPT: thread 0, operation \d+: before free: allocation \S+ "
                        r"\(\d+ bytes, tag \d+\) byte \d+ is 0x\w+, want 0x\w+\n", done.stdout), done.stdout


def test_mimalloc_alignment_bug_is_caught(stress):
    """mimalloc 2.0.9 answers aligned_alloc(256, 256) misaligned (its issue 700); the strict build must say so."""
    version = re.search(r"\(mimalloc (\d+)\)", run([str(stress("mimalloc")), "1", "10"]).stdout)
    assert version, "the mimalloc build does not report mimalloc"
    done = run([str(stress("mimalloc-strict"))])
    if version.group(1) == "209":
        assert done.returncode == 1
        assert re.search(r"MISALIGNED: .* is not aligned to (256|512|1024)\n", done.stdout), done.stdout
    else:
        assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("args", [["0"], ["65"], ["x"], ["1", "-5"], ["1", "1", "0"], ["1", "2", "3", "4"]])
def test_stress_bad_usage(stress, args):
    done = run([str(stress("glibc")), *args])
    assert done.returncode == 2
    assert "usage: alloc_stress [THREADS [OPS [SEED]]]" in done.stderr
    assert done.stdout == ""


# -- toolchains and the Go program -----------------------------------------------


def test_toolchains_finds_what_is_there():
    found = toolchains.toolchains()
    assert ("system" in found) == (shutil.which("go") is not None)
    for name in toolchains.BUILT:
        root = toolchains.cache_dir() / "go" / name
        built = (root / ".arena-stamp").is_file() and (root / "bin" / "go").is_file()
        assert (name in found) == built
    for name, root in found.items():
        assert toolchains.go_version(root).startswith("go version "), name


def test_toolchains_skips_a_half_built_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = tmp_path / "arena" / "go" / "go1.8"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "go").write_text("")
    assert "go1.8" not in toolchains.toolchains()
    (root / ".arena-stamp").write_text("7d8bfdde453445affb50fcaeacc050938ec98467\n")
    assert toolchains.toolchains()["go1.8"] == root


def test_go_version_of_no_toolchain(tmp_path):
    with pytest.raises(toolchains.BuildFailed, match="version failed"):
        toolchains.go_version(tmp_path)


def test_missing_toolchain_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ToolchainMissing, match="make go-toolchains"):
        build_program("go1.8", "386")


def test_no_go_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "system" not in toolchains.toolchains()
    with pytest.raises(ToolchainMissing, match="no `go` on PATH"):
        build_program("system", "amd64")


@pytest.mark.parametrize("name, arch, error, message", [
    ("go1.7", "386", ValueError, "unknown Go toolchain 'go1.7': one of go1.4, go1.8, e5a5c03, go1.9, system"),
    ("system", "arm64", ValueError, "unknown architecture 'arm64': one of 386, amd64"),
    ("system", "", ValueError, "unknown architecture ''"),
    (18, "386", TypeError, "a toolchain is named by a str, not int"),
    ("system", b"386", TypeError, "an architecture is a str, not bytes"),
    (None, "386", TypeError, "not NoneType"),
])
def test_build_program_bad_input(name, arch, error, message, tmp_path, monkeypatch):
    # Bad arguments are refused before any toolchain is looked for.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(error, match=re.escape(message)):
        build_program(name, arch)


def need(name: str) -> None:
    if name not in toolchains.toolchains():
        pytest.skip("no `go` on PATH" if name == "system" else
                    f"Go toolchain {name} is not built: run `make go-toolchains ARENA_GO_SRC=<git copy of Go>`")


def grow(program: Path, *args: str, **env: str) -> tuple[int, str]:
    done = run([str(program), *args], **env)
    assert done.stderr == "" or done.returncode == 2, done.stderr
    return done.returncode, done.stdout


@pytest.mark.parametrize("arch", toolchains.ARCHES)
def test_go_program_with_system_go(arch):
    need("system")
    code, out = grow(build_program("system", arch), "96")
    assert code == 0, out
    assert re.fullmatch(rf"grow: ok: 96 MiB live in \d+ chunks and \d+ nodes, \d+ full checks, \d+ collections, "
                        rf"heap \d+ MiB from the system; go\S+ linux/{arch}; [\d.]+ s\n", out), out


@pytest.mark.parametrize("arch", toolchains.ARCHES)
@pytest.mark.parametrize("name", OLD_GO)
def test_go_program_with_old_go(name, arch):
    need(name)
    code, out = grow(build_program(name, arch), "96")
    assert code == 0, out
    assert f" linux/{arch};" in out


def test_go18_default_grows_the_heap_twice_past_its_first_arena():
    need("go1.8")
    code, out = grow(build_program("go1.8", "386"))
    assert code == 0, out
    heap = int(re.search(r"heap (\d+) MiB from the system", out).group(1))
    assert heap > TWO_GROWTHS, out


def test_go_program_finds_a_changed_byte():
    need("system")
    code, out = grow(build_program("system", "386"), "8", GROW_CORRUPT="1")
    assert code == 1
    assert re.fullmatch(r"grow: CORRUPT: at the end: chunk \d+ \(\d+ bytes at 0x\w+\) word \d+ \(byte \d+\) "
                        r"is 0x\w+, want 0x\w+\n", out), out


@pytest.mark.parametrize("args", [["0"], ["1025"], ["-1"], ["x"], ["1", "2"]])
def test_go_program_bad_usage(args):
    need("system")
    code, out = grow(build_program("system", "amd64"), *args)
    assert code == 2
    assert out == ""


def test_go_program_size_from_environment():
    need("system")
    code, out = grow(build_program("system", "amd64"), GROW_MIB="3")
    assert code == 0 and out.startswith("grow: ok: 3 MiB live"), out


def test_build_program_is_cached_and_safe_in_parallel(tmp_path, monkeypatch):
    need("system")
    # A fresh program cache; Go's own build cache stays where it was (no recompiled library).
    gocache = subprocess.run(["go", "env", "GOCACHE"], capture_output=True, text=True).stdout.strip()
    monkeypatch.setenv("GOCACHE", gocache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    results: list[Path | BaseException] = []

    def build() -> None:
        try:
            results.append(build_program("system", "amd64"))
        except BaseException as e:  # reported below, in the test's thread
            results.append(e)

    workers = [threading.Thread(target=build) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(set(results)) == 1, results
    (path,) = set(results)
    assert isinstance(path, Path) and path.parent == tmp_path / "arena" / "programs"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    mtime = path.stat().st_mtime_ns
    assert build_program("system", "amd64") == path and path.stat().st_mtime_ns == mtime
    assert grow(path, "4")[0] == 0
