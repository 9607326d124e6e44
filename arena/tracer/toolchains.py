"""Real Go toolchains and the Go test program built with each: where they are, and building it once.

``make go-toolchains`` (tools/go-toolchains.sh) builds Go 1.4 (the bootstrap),
Go 1.8, the e5a5c03 fix and Go 1.9 from a git copy of Go's history into
``$XDG_CACHE_HOME/arena/go/<name>`` (``~/.cache`` when unset). A ``go`` on
PATH is the ``system`` toolchain. ``build_program`` builds the test program
(``arena/data/programs/grow.go``: live data across heap growths, every byte
checked) for 386 or amd64 and keeps it in ``.../arena/programs``, one binary per
toolchain, source and architecture.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

__all__ = [
    "ARCHES",
    "BUILT",
    "BuildFailed",
    "ToolchainMissing",
    "build_program",
    "cache_dir",
    "go_version",
    "toolchains",
]

#: What ``make go-toolchains`` builds, in build order (go1.4 bootstraps the rest).
BUILT = ("go1.4", "go1.8", "e5a5c03", "go1.9")
#: The ``go`` found on PATH.
SYSTEM = "system"
#: The architectures a program is built for (Go's GOARCH names).
ARCHES = ("386", "amd64")
# Written last by tools/go-toolchains.sh: a toolchain without it is half-built.
STAMP = ".arena-stamp"
# A first 386 build with a newer Go compiles its standard library (~30 s);
# a build taking this long is stuck.
BUILD_TIMEOUT = 900.0


class ToolchainMissing(LookupError):
    """The Go toolchain asked for is not built (or no ``go`` is on PATH); the message says how to get it."""


class BuildFailed(RuntimeError):
    """``go build`` of the test program failed; the message holds the compiler's output."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/arena`` (``~/.cache/arena`` when unset): the toolchains and built programs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "arena"


def _system_goroot() -> Path | None:
    go = shutil.which("go")
    if go is None:
        return None
    try:
        out = subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True, env=_clean_env(), timeout=60)
    except (OSError, subprocess.SubprocessError):  # a go that does not run is no toolchain
        return None
    root = out.stdout.strip()
    return Path(root) if out.returncode == 0 and root else None


def toolchains() -> dict[str, Path]:
    """Every Go toolchain there is, name -> GOROOT: the built ones of ``BUILT``, and ``system`` for a ``go`` on PATH.

    A built toolchain counts once its build finished (its stamp is there);
    ``go_version`` says which Go each one is.
    """
    found: dict[str, Path] = {}
    for name in BUILT:
        root = cache_dir() / "go" / name
        if (root / STAMP).is_file() and (root / "bin" / "go").is_file():
            found[name] = root
    system = _system_goroot()
    if system is not None:
        found[SYSTEM] = system
    return found


def go_version(goroot: Path) -> str:
    """What ``go version`` says for the toolchain in ``goroot``, e.g. ``go version go1.19.8 linux/amd64``.

    Raises ``BuildFailed`` when that ``go`` does not run.
    """
    go = Path(goroot) / "bin" / "go"
    try:
        out = subprocess.run([str(go), "version"], capture_output=True, text=True, env=_clean_env(go.parent.parent),
                             timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildFailed(f"{go} version failed: {e}") from None
    if out.returncode != 0:
        raise BuildFailed(f"{go} version failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip()


def _clean_env(goroot: Path | None = None) -> dict[str, str]:
    # The user's Go settings must not change what is built: one GOROOT, no
    # modules (Go 1.8 has none), no config file, no toolchain download. Where
    # the build cache lives changes nothing built, so GOCACHE stays.
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("GO", "CGO_")) and k not in ("GOCACHE", "GOTMPDIR"))}
    env.update(CGO_ENABLED="0", GO111MODULE="off", GOENV="off", GOTOOLCHAIN="local", GOOS="linux")
    if goroot is not None:
        env["GOROOT"] = str(goroot)
    return env


def _goroot(name: str) -> Path:
    root = toolchains().get(name)
    if root is not None:
        return root
    if name == SYSTEM:
        raise ToolchainMissing("no `go` on PATH (on Debian: apt-get install golang-go)")
    raise ToolchainMissing(f"Go toolchain {name} is not built in {cache_dir() / 'go'}: run "
                           "`make go-toolchains ARENA_GO_SRC=<a git copy of Go's history>`")


def build_program(name: str, arch: str) -> Path:
    """The test program built with toolchain ``name`` (see ``toolchains``) for ``arch`` (``386`` or ``amd64``).

    Built once per toolchain, source and architecture into
    ``cache_dir()/programs`` and reused; a build lands under its final name
    only when complete, so parallel callers are safe. Raises ``TypeError``
    for non-str arguments, ``ValueError`` for an unknown name or
    architecture, ``ToolchainMissing`` for a toolchain not built (the message
    says ``make go-toolchains``), ``BuildFailed`` when the compiler fails.
    """
    if not isinstance(name, str):
        raise TypeError(f"a toolchain is named by a str, not {type(name).__name__}")
    if name not in (*BUILT, SYSTEM):
        raise ValueError(f"unknown Go toolchain {name!r}: one of {', '.join((*BUILT, SYSTEM))}")
    if not isinstance(arch, str):
        raise TypeError(f"an architecture is a str, not {type(arch).__name__}")
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}: one of {', '.join(ARCHES)}")
    root = _goroot(name)
    source = (resources.files("arena") / "data" / "programs" / "grow.go").read_bytes()
    # The key names what made the binary: the toolchain's source commit (or,
    # for the system go, its version and place), the program, the target.
    stamp = root / STAMP
    made_by = stamp.read_text().strip() if stamp.is_file() else f"{go_version(root)} {root}"
    key = hashlib.sha256(f"{name}\0{made_by}\0{arch}\0".encode() + source).hexdigest()[:16]
    out_dir = cache_dir() / "programs"
    target = out_dir / f"grow-{name}-{arch}-{key}"
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        (Path(tmp) / "grow.go").write_bytes(source)
        env = _clean_env(root) | {"GOARCH": arch, "GOPATH": str(Path(tmp) / "gopath")}
        try:
            done = subprocess.run([str(root / "bin" / "go"), "build", "-o", "grow", "grow.go"], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"go build with {name} for {arch} took over {BUILD_TIMEOUT:g} s") from None
        if done.returncode != 0:
            raise BuildFailed(f"go build with {name} for {arch} failed:\n{done.stdout}{done.stderr}".rstrip())
        os.replace(Path(tmp) / "grow", target)
    return target
