"""The C limit from Python: libclimit.so (built by benchmarks/Makefile) through ctypes.

Each function runs ``loops`` operations in C and returns the seconds they took,
timed inside C, which is what pyperf's ``bench_time_func`` expects.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
LIBRARY = BUILD / "libclimit.so"

_u64, _uptr, _size = ctypes.c_uint64, ctypes.c_size_t, ctypes.c_size_t
_lib = None


def build() -> Path:
    """``make -C benchmarks``: (re)build the C limit; returns the library's path."""
    subprocess.run(["make", "-s", "-C", str(HERE)], check=True, stdout=sys.stderr)
    return LIBRARY


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        if not LIBRARY.exists():
            raise FileNotFoundError(f"{LIBRARY} is missing: run `make -C {HERE}` first")
        lib = ctypes.CDLL(str(LIBRARY))
        lib.climit_pair.argtypes = [_uptr, _size, ctypes.c_int, _u64]
        lib.climit_growth.argtypes = [_uptr, _size, _size, ctypes.c_int, _u64, _u64]
        lib.climit_commit.argtypes = [_uptr, _size, _size, ctypes.c_int, _u64]
        for f in (lib.climit_pair, lib.climit_growth, lib.climit_commit):
            f.restype = ctypes.c_int64
        _lib = lib
    return _lib


def _seconds(name: str, ns: int) -> float:
    if ns < 0:
        raise OSError(-ns, f"climit_{name}: {os.strerror(-ns)}")
    return ns * 1e-9


def pair(loops: int, hint: int, size: int, exact: bool) -> float:
    """Reserve ``size`` bytes at ``hint`` and release them, ``loops`` times."""
    return _seconds("pair", _load().climit_pair(hint, size, int(exact), loops))


def growth(loops: int, base: int, step: int, commit: int, exact: bool, batch: int) -> float:
    """``loops`` contiguous ``step`` reservations at hint = end, each with its commit, in batches."""
    return _seconds("growth", _load().climit_growth(base, step, commit, int(exact), batch, loops))


def commit(loops: int, hint: int, span: int, size: int, exact: bool) -> float:
    """``loops`` commits of ``size`` bytes walking through reservations of ``span`` bytes."""
    return _seconds("commit", _load().climit_commit(hint, span, size, int(exact), loops))
