"""Constants and policy as data: Go's address-space layouts (``layout``) and its placement rules (``rules``)."""
from __future__ import annotations

from .layout import LAYOUT_32, LAYOUT_64, Layout, native_layout
from .rules import RULES, Bounds, Rule

__all__ = ["LAYOUT_32", "LAYOUT_64", "RULES", "Bounds", "Layout", "Rule", "native_layout"]
