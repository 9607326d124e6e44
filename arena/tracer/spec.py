"""Adversary specs: the text that names an adversary and its parameters, for the command line and for records.

``NAME`` or ``NAME,key=value,...``, sizes as bytes, hex (``0x3000``) or with a unit
(``12K``, ``256M``, ``1G``: powers of 1024)::

    observe                      keep every call
    below[,at=N][,calls=N|all][,min=SIZE][,align=SIZE]
    gap[,min=SIZE][,at=N]
    displace,by=SIZE[,at=N][,calls=N|all][,min=SIZE]
    enomem[,at=N][,calls=N|all][,min=SIZE]
    scripted,file=PATH           (PATH is the rest of the spec, commas included)
    module:attr                  your Adversary subclass (made with no arguments) or instance

``at=N`` is the first matching call acted on, counting from 1 (default 1);
``calls=N`` how many matching calls from there (default all; enomem: 1);
``min=SIZE`` matches only calls of at least that size. See each class for
what it matches and does (``arena.tracer.adversaries``).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable

from . import record
from .adversaries import Adversary, Below, Displace, Enomem, Gap, Observe, Scripted
from .errors import AdversarySpecError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(-?)(0x[0-9a-f]+|[0-9]+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``12K``, ``256M``, ``1G``, ``0x3000`` or ``4096`` (units are powers of 1024; ``-`` for negative).

    ``AdversarySpecError`` for anything else.
    """
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise AdversarySpecError(f"{text!r} is not a size: write bytes (4096), hex (0x1000) or with a unit (4K, 256M, 1G)")
    sign, digits, unit = m.groups()
    n = int(digits, 0) * _UNITS[unit.lower()]
    return -n if sign else n


def _count_or_all(text: str) -> int | None:
    return None if text.strip().lower() == "all" else _int(text)


def _int(text: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise AdversarySpecError(f"{text!r} is not a whole number") from None


def _scripted(file: str) -> Scripted:
    if not file:
        raise AdversarySpecError("file= is empty: give the path of a saved run")
    try:
        return Scripted(record.load(file), file=file)
    except OSError as exc:
        raise AdversarySpecError(f"cannot read {file} ({exc.strerror}): give the path of a saved run") from None
    except record.TraceFileError as exc:
        raise AdversarySpecError(f"{file} is not a saved run: {exc}") from None


# name -> (factory, its parameters and how to read each from text, the required ones, an example)
_COUNTED: dict[str, Callable[[str], object]] = {"at": _int, "calls": _count_or_all, "min": parse_size}
BUILTIN: dict[str, tuple[Callable[..., Adversary], dict[str, Callable[[str], object]], tuple[str, ...], str]] = {
    "observe": (Observe, {}, (), "observe"),
    "below": (Below, {**_COUNTED, "align": parse_size}, (), "below,calls=1"),
    "gap": (Gap, {"min": parse_size, "at": _int}, (), "gap,min=64M"),
    "displace": (Displace, {"by": parse_size, **_COUNTED}, ("by",), "displace,by=12K"),
    "enomem": (Enomem, _COUNTED, (), "enomem,at=3"),
    "scripted": (_scripted, {"file": str}, ("file",), "scripted,file=run.json"),
}
NAMES = tuple(BUILTIN)


def resolve(spec: object) -> Adversary:
    """The adversary ``spec`` names: ``None`` (observe), an ``Adversary``, a built-in spec or ``"module:attr"``.

    ``AdversarySpecError`` (a ValueError) for an unknown name, a bad or
    missing parameter, a module that does not import, or an attribute that is
    not an Adversary, and for a ``scripted`` file that cannot be read or is not a saved run.
    ``module:attr`` is imported with the current directory first on
    ``sys.path``, as ``python -m`` does; a class is made with no arguments,
    and only if it subclasses ``Adversary``.
    """
    if spec is None:
        return Observe()
    if isinstance(spec, Adversary):
        return spec
    if not isinstance(spec, str):
        raise AdversarySpecError(f"adversary must be a spec such as 'displace,by=12K', module:attr or an Adversary, "
                                 f"not {type(spec).__name__}")
    text = spec.strip()
    head, _, rest = text.partition(",")
    if ":" in head:
        if rest:
            raise AdversarySpecError(f"{text!r}: module:attr takes no parameters; give them in your class's defaults")
        return _load(head)
    key = head.strip().lower()
    if key not in BUILTIN:
        raise AdversarySpecError(f"{head!r} is not an adversary: use one of {', '.join(NAMES)}, or module:attr of your own")
    factory, params, required, example = BUILTIN[key]
    kwargs: dict[str, object] = {}
    while rest:
        item, _, after = rest.partition(",")
        k, eq, v = item.partition("=")
        k = k.strip().lower()
        if k == "file" and "file" in params:
            # A path may hold commas: it is the rest of the spec.
            item, after, v = rest, "", rest.partition("=")[2]
        if not eq or k not in params:
            takes = f"it takes {', '.join(params)}" if params else "it takes none"
            raise AdversarySpecError(f"{key}: {item.strip()!r} is not a parameter ({takes}, written key=value)")
        if k in kwargs:
            raise AdversarySpecError(f"{key}: {k} given twice")
        try:
            kwargs[k] = params[k](v)
        except AdversarySpecError as exc:
            raise AdversarySpecError(f"{key}: {k}: {exc}") from None
        rest = after
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise AdversarySpecError(f"{key} needs {', '.join(missing)}, e.g. {example}")
    try:
        return factory(**kwargs)
    except AdversarySpecError as exc:
        raise AdversarySpecError(f"{key}: {exc}") from None


def _load(spec: str) -> Adversary:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise AdversarySpecError(f"{spec!r}: write module:attr, e.g. myadversaries:Sneaky")
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        found: object = importlib.import_module(module)
    except Exception as exc:  # the user's module failed to import, however it failed
        raise AdversarySpecError(f"{spec}: cannot import {module} ({type(exc).__name__}: {exc})") from exc
    finally:
        if added:
            sys.path.remove(here)
    try:
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise AdversarySpecError(f"{spec}: {module} has no {attr}") from None
    if isinstance(found, type):
        if not issubclass(found, Adversary):
            raise AdversarySpecError(f"{spec}: {found.__qualname__} is not an Adversary: subclass arena.tracer.Adversary")
        try:
            found = found()
        except Exception as exc:
            raise AdversarySpecError(f"{spec}: {attr}() failed ({type(exc).__name__}: {exc})") from exc
    if not isinstance(found, Adversary):
        raise AdversarySpecError(f"{spec}: {type(found).__name__} is not an Adversary: subclass arena.tracer.Adversary")
    return found
