"""Reading JSON a user gave us: an integer too long to be one of our numbers is an error naming where it is."""
from __future__ import annotations

import json

# An address or a size has at most 20 digits (2**64); Python itself refuses
# past 4,300 with advice for programmers (sys.set_int_max_str_digits).
MAX_DIGITS = 100


class NumberTooLong(ValueError):
    """An integer of more than ``MAX_DIGITS`` digits; the message starts with its path (``requests[3]: ...``)."""


class _Long:
    """Where an integer too long to convert stood: its digit count, until its path is known."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _path_to(data: object, target: object) -> str:
    """The path of ``target`` in ``data``, as the readers' errors name fields: ``calls[3].hint``."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if value is target:
            return path or "(top level)"
        if isinstance(value, dict):
            stack += [(f"{path}.{key}" if path else str(key), item) for key, item in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value)))]
    return "(top level)"  # never: the marker came from data


def loads(text: str) -> object:
    """``json.loads(text)``; ``NumberTooLong`` for an integer of more than ``MAX_DIGITS`` digits, naming
    where it is, and ``json.JSONDecodeError`` (a ``ValueError``) for text that is not JSON."""
    long: list[_Long] = []

    def integer(digits: str) -> object:
        if len(digits) - digits.startswith("-") > MAX_DIGITS:
            long.append(_Long(len(digits) - digits.startswith("-")))
            return long[-1]
        return int(digits)

    data = json.loads(text, parse_int=integer)
    if long:
        raise NumberTooLong(f"{_path_to(data, long[0])}: an integer of {long[0].digits:,} digits; a number here "
                            f"has at most {MAX_DIGITS} (an address or a size at most 20)")
    return data
