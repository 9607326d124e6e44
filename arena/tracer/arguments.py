"""The arguments of ``run``, each checked and converted once: a bad one is a ``TypeError`` or ``ValueError`` naming it."""
from __future__ import annotations

import math
import operator
import os
from collections.abc import Mapping

from .record import MAX_ARGS, MAX_ARGV_BYTES


def argv(value: object) -> list[str]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"argv must be a list such as ['./prog', 'arg'], not a {type(value).__name__} ({value!r})")
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"argv must be a list such as ['./prog', 'arg'], not {type(value).__name__}") from None
    if not items:
        raise ValueError("argv is empty: give the program and its arguments, e.g. ['./prog', 'arg']")
    if len(items) > MAX_ARGS:
        raise ValueError(f"argv has {len(items):,} arguments, more than {MAX_ARGS:,}: pass fewer (or a file of them)")
    out = []
    for i, item in enumerate(items):
        try:
            text = os.fspath(item)
        except TypeError:
            raise TypeError(f"argv[{i}] must be a str, not {type(item).__name__} ({item!r})") from None
        if not isinstance(text, str):
            raise TypeError(f"argv[{i}] must be a str, not {type(text).__name__} ({text!r})")
        if "\0" in text:
            raise ValueError(f"argv[{i}] contains a NUL character, which no argument can hold")
        out.append(text)
    if sum(len(a.encode(errors="surrogateescape")) + 1 for a in out) > MAX_ARGV_BYTES:
        raise ValueError(f"argv is longer than {MAX_ARGV_BYTES >> 20} MiB in all: pass fewer or shorter arguments")
    return out


def env(value: object) -> dict[str, str]:
    if value is None:
        return dict(os.environ)
    if not isinstance(value, Mapping):
        raise TypeError(f"env must be a mapping of str to str (like os.environ), not {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"env must map str to str, got {k!r}: {v!r}")
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise ValueError(f"env: {k!r} is not a usable variable (a name without '=' or NUL, a value without NUL)")
        out[k] = v
    return out


def path(name: str, value: object) -> str:
    try:
        path = os.fspath(value)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{name} must be a path, not {type(value).__name__}") from None
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a str path, not {type(path).__name__}")
    return path


def cwd(value: object) -> str | None:
    if value is None:
        return None
    where = path("cwd", value)
    if not os.path.isdir(where):
        raise ValueError(f"cwd {where!r} is not a directory: give an existing directory")
    return os.path.abspath(where)


def seconds(name: str, value: object, allow_zero: bool) -> float | None:
    if value is None and name == "timeout":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__} ({value!r})")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        what = "a positive" if not allow_zero else "a non-negative"
        raise ValueError(f"{name} must be {what} number of seconds, got {value!r}" +
                         (" (use None for no timeout)" if name == "timeout" else ""))
    return seconds


def count(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not a bool")
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__} ({value!r})") from None
    if not low <= n <= high:
        raise ValueError(f"{name} must be between {low:,} and {high:,}, got {n:,}")
    return n
