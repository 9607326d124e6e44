"""Old module names, kept for one release after the package took its layered layout (CHANGELOG.md, 0.2.0)."""
from __future__ import annotations

import warnings


def moved(old: str, new: str) -> None:
    """Warn, once per import of ``old``, that it is now ``new`` (a ``DeprecationWarning``)."""
    warnings.warn(f"{old} is now {new}; the old name will be removed in the next release", DeprecationWarning, stacklevel=3)
