"""Test programs for the tracer (tests/programs/tracee), built once per session, their runs shared by the runs
of make test, and the check that no traced process outlives a test."""
from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arena import sysmem, tracer

SOURCES = Path(__file__).parent / "programs" / "tracee"
# The process names (comm) of every test program: none may be left running, stopped or unreaped.
NAMES = {"mapper", "linear_arena", "ignore_term", "forker", "self_tracer", "churn", "alloc", "mapper32",
         "linear_arena32", "ignore_term32", "forker32", "self_tracer32", "churn32", "alloc32", "alloc64",
         "setuid_mapper", "old_mmap32", "go_linear32", "placement", "placement32"}
WIDTHS = [64, 32] if sysmem.NATIVE_BITS == 64 else [32]


def setuid_copy(program: Path, folder: Path) -> Path:
    """A set-user-ID copy of ``program`` in ``folder``, owned by nobody (65534): one the tracer must refuse.
    Skips the test where making it needs root and this is not root."""
    if os.geteuid() != 0:
        pytest.skip("making a set-user-ID copy owned by someone else needs root")
    other = folder / "setuid_mapper"
    shutil.copy(program, other)
    os.chown(other, 65534, 65534)
    other.chmod(0o4755)
    return other


class Builder:
    """Compiles the C test programs into one directory, each once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[tuple[str, int], Path] = {}

    def __call__(self, name: str, bits: int = sysmem.NATIVE_BITS) -> Path:
        key = (name, bits)
        if key not in self.cache:
            if shutil.which("gcc") is None:
                pytest.skip("no C compiler (gcc) to build the test programs")
            out = self.root / (name if bits == 64 else name + "32")
            flags = ["-m32"] if bits == 32 and sysmem.NATIVE_BITS == 64 else []
            r = subprocess.run(["gcc", "-O1", "-pthread", *flags, "-o", str(out), str(SOURCES / f"{name}.c")],
                               capture_output=True, text=True)
            if r.returncode:
                if bits == 32:
                    pytest.skip(f"gcc -m32 cannot build here (apt-get install gcc-multilib): {r.stderr.strip()[:200]}")
                raise AssertionError(f"building {name}: {r.stderr}")
            self.cache[key] = out
        return self.cache[key]


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    return Builder(tmp_path_factory.mktemp("tracees"))


@pytest.fixture(scope="session")
def go_alloc(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``go_alloc(bits)``: tests/programs/tracee/alloc.go built with Debian's Go for amd64 or 386 (CGO off)."""
    root = tmp_path_factory.mktemp("go")
    built: dict[int, Path] = {}

    def get(bits: int) -> Path:
        if bits not in built:
            if shutil.which("go") is None:
                pytest.skip("no Go toolchain (apt-get install golang-go)")
            if bits == 64 and sysmem.NATIVE_BITS == 32:
                pytest.skip("a 64-bit Go program cannot be traced from a 32-bit Python")
            out = root / f"alloc{bits}"
            env = {**os.environ, "CGO_ENABLED": "0", "GOARCH": "amd64" if bits == 64 else "386", "GO111MODULE": "off"}
            if not any(k in env for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
                env["GOCACHE"] = str(root / "cache")
            r = subprocess.run(["go", "build", "-o", str(out), str(SOURCES / "alloc.go")], env=env,
                               capture_output=True, text=True, timeout=600)
            if r.returncode:
                raise AssertionError(f"go build ({bits}-bit): {r.stderr}")
            built[bits] = out
        return built[bits]

    return get


# A folder the runs of one make test share (tools/test-backends.sh sets it): a real program's run made by one
# is read by the others.
SHARED_RUNS = "ARENA_TEST_RUNS"
_runs: dict[str, tracer.Outcome] = {}


def run_once(key: str, run: Callable[[], tracer.Outcome]) -> tracer.Outcome:
    """``run()``'s outcome, made once for ``key`` (the program, its arguments, its adversary) in this process and,
    where $ARENA_TEST_RUNS names a folder, once for every run of the suite that shares it.

    For a test whose model part runs once per memory backend: the program under the tracer does not depend on
    the backend (its tests are backend_independent), so each backend's run reads the same run, made by the
    first to need it, while the other waits (a pickle: exactly the Outcome that run returned).
    """
    if key not in _runs:
        folder = os.environ.get(SHARED_RUNS)
        if not folder:
            _runs[key] = run()
            return _runs[key]
        path = Path(folder) / hashlib.sha256(key.encode()).hexdigest()[:20]
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                _runs[key] = pickle.loads(path.read_bytes())
            else:
                _runs[key] = run()
                path.with_suffix(".part").write_bytes(pickle.dumps(_runs[key]))
                path.with_suffix(".part").rename(path)
    return _runs[key]


@pytest.fixture(scope="session")
def shared_run() -> Callable[[str, Callable[[], tracer.Outcome]], tracer.Outcome]:
    """``run_once``, for the test modules that load this one as a plugin."""
    return run_once


def _processes() -> dict[int, tuple[str, str, int]]:
    """pid -> (name, state, parent pid) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (name, fields[0], int(fields[1]))
    return out


def descendants(root: int, procs: dict[int, tuple[str, str, int]] | None = None) -> set[int]:
    procs = _processes() if procs is None else procs
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (_, _, ppid) in procs.items() if ppid in frontier} - found
        found |= frontier
    return found


def leftovers(before: set[int]) -> list[str]:
    """New processes that are ours (descendants of this one) or orphaned test programs (their parent gone, adopted
    by init), in any state (zombies too). A test program whose parent lives and is not ours belongs to another
    test run on the same machine."""
    procs = _processes()
    mine = descendants(os.getpid(), procs)
    return [f"{pid} {name} state {state} parent {ppid}" for pid, (name, state, ppid) in sorted(procs.items())
            if pid not in before and (pid in mine or (name in NAMES and (ppid == 1 or ppid not in procs)))]


@pytest.fixture(scope="session")
def ptrace_allowed() -> None:
    """Skip, saying why and what allows it, where this process may not trace its children (a container's
    seccomp profile, Yama): every test of a traced run needs it."""
    from arena import tracer

    try:
        tracer.run(["true"], timeout=60)
    except tracer.PtraceRefused as exc:
        pytest.skip(f"ptrace is refused here: {exc}")


@pytest.fixture(autouse=False)
def no_leftover_processes(ptrace_allowed: None) -> Iterator[None]:
    """No process the test started may remain: not running, not stopped, not a zombie (and ptrace is allowed)."""
    before = set(_processes())
    yield
    deadline = time.monotonic() + 3
    while (left := leftovers(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, "processes left behind: " + "; ".join(left)
