"""This process's mappings annotated with what a live arena uses them for; another process's mappings.

Roles: ``first (metadata)``, ``first (arena)``, ``reservation``, ``fallback``,
``committed`` (holds allocations, ``LOST`` if the arena no longer counts them
as heap) and ``rejected-and-released`` for regions the arena was answered and
gave back: those are listed from its events though no longer mapped.
"""
from __future__ import annotations

from .. import sysmem
from ..harness.run import arena_part
from ..managers import Arena, HeapArenas
from ..words import plural, size_text
from .report import columns

_RELEASED = ("rejected", "fallback-rejected", "missed")  # HeapArenas: a missed hint


def _roles(arena: Arena | HeapArenas, m: sysmem.Mapping, base: int) -> list[str]:
    roles = []
    for r in arena.regions:
        if r.start < m.end and m.start < r.end:
            if r.role == "first":
                part = "metadata" if m.end <= base else "arena" if m.start >= base else "metadata+arena"
                roles.append(f"first ({part})")
            else:
                roles.append(r.role)
    held = [(p, n) for p, n in arena.allocations if p < m.end and m.start < p + n]
    if held:
        lost = sum(not arena.contains(p) for p, _ in held)
        roles.append(f"committed ({plural(len(held), 'allocation')}" + (f", {lost} LOST)" if lost else ")"))
    return roles


def annotate(arena: Arena | HeapArenas, maps: list[sysmem.Mapping]) -> list[dict[str, object]]:
    """Rows for the mappings that meet the arena's regions, and for the regions it released, lowest first."""
    base = arena_part(arena.events)
    rows: list[dict[str, object]] = []
    for m in maps:
        roles = _roles(arena, m, base)
        if roles:
            rows.append({"start": m.start, "end": m.end, "perms": m.perms, "roles": roles, "name": m.name, "mapped": True})
    for e in arena.events:
        if e.verdict in _RELEASED and e.returned is not None:
            rows.append({
                "start": e.returned, "end": e.returned + e.size, "perms": "", "mapped": False, "name": "",
                "roles": [f"rejected-and-released ({e.step} {e.verdict}: released)"],
            })
    return sorted(rows, key=lambda row: (row["start"], not row["mapped"]))


def rows_text(rows: list[dict[str, object]]) -> str:
    """``annotate``'s rows as aligned columns with hex addresses."""
    table = [["start", "end", "size", "perms", "role", "name"]]
    for row in rows:
        table.append([
            f"{row['start']:#x}", f"{row['end']:#x}", size_text(row["end"] - row["start"]),
            row["perms"] or "(unmapped)", "; ".join(row["roles"]), row["name"],
        ])
    return columns(table)


def process_rows(pid: int) -> list[dict[str, object]]:
    """Process ``pid``'s mappings, lowest first, each with the bytes of it resident in memory.

    Reads ``/proc/PID/smaps`` through psutil (the ``maps`` extra). Raises
    ``ImportError`` if psutil is not installed, ``psutil.NoSuchProcess`` if
    there is no such running process, ``psutil.AccessDenied`` if this user may
    not read its mappings.
    """
    import psutil  # here, not at the top: it is optional, and this is its only use

    rows: list[dict[str, object]] = []
    for m in psutil.Process(pid).memory_maps(grouped=False):
        start, end = (int(x, 16) for x in m.addr.split("-"))
        rows.append({"start": start, "end": end, "perms": m.perms, "rss": m.rss, "name": m.path})
    return rows


def process_text(rows: list[dict[str, object]]) -> str:
    """``process_rows``'s rows as aligned columns with hex addresses."""
    table = [["start", "end", "size", "perms", "resident", "name"]]
    for row in rows:
        table.append([
            f"{row['start']:#x}", f"{row['end']:#x}", size_text(row["end"] - row["start"]), row["perms"],
            size_text(row["rss"]) if row["rss"] else "0", row["name"],
        ])
    return columns(table)
