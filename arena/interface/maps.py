"""This process's mappings annotated with what a live arena uses them for; another process's mappings.

Roles: ``first (metadata)``, ``first (arena)``, ``reservation``, ``fallback``,
``committed`` (holds allocations, ``LOST`` if the arena no longer counts them
as heap) and ``rejected-and-released`` for regions the arena was answered and
gave back: those are listed from its events though no longer mapped.
"""
from __future__ import annotations

import bisect
import itertools
import os
from typing import NamedTuple, TypedDict

from .. import sysmem
from ..harness.run import arena_part
from ..managers import Arena, HeapArenas, Region
from ..words import plural, size_text
from .report import fit

_RELEASED = ("rejected", "fallback-rejected", "missed")  # HeapArenas: a missed hint


class MapRow(TypedDict):
    """A row of ``annotate``: a mapping of this process (``mapped``), or a region the arena released, and its roles."""

    start: int
    end: int
    perms: str  # "" for a released region
    roles: list[str]
    name: str
    mapped: bool


class ProcessRow(TypedDict):
    """A row of ``process_rows``: a mapping of another process and the bytes of it resident (``rss``)."""

    start: int
    end: int
    perms: str
    rss: int
    name: str


class _Meeting:
    """Ranges ``(start, end)`` sorted once, so that those meeting a mapping are found by binary search,
    in their original order (a trace's arena has thousands, and a mapping per one of them)."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.order = sorted(range(len(ranges)), key=lambda i: ranges[i])
        self.starts = [ranges[i][0] for i in self.order]
        self.ends = [ranges[i][1] for i in self.order]
        # The highest end so far: ranges need not be disjoint (a broken manager's overlap).
        self.reach = list(itertools.accumulate(self.ends, max))

    def meeting(self, start: int, end: int) -> list[int]:
        """Indexes of the ranges that meet ``[start, end)``, in their original order."""
        lo, hi = bisect.bisect_right(self.reach, start), bisect.bisect_left(self.starts, end)
        return sorted(self.order[k] for k in range(lo, hi) if self.ends[k] > start)


def _roles(arena: Arena | HeapArenas, m: sysmem.Mapping, base: int, regions: list[Region], regions_at: _Meeting,
           allocations: list[tuple[int, int]], allocations_at: _Meeting) -> list[str]:
    roles: list[str] = []
    for i in regions_at.meeting(m.start, m.end):
        r = regions[i]
        if r.role == "first":
            part = "metadata" if m.end <= base else "arena" if m.start >= base else "metadata+arena"
            roles.append(f"first ({part})")
        else:
            roles.append(r.role)
    held = [allocations[i] for i in allocations_at.meeting(m.start, m.end)]
    if held:
        lost = sum(not arena.contains(p) for p, _ in held)
        roles.append(f"committed ({plural(len(held), 'allocation')}" + (f", {lost} LOST)" if lost else ")"))
    return roles


def annotate(arena: Arena | HeapArenas, maps: list[sysmem.Mapping]) -> list[MapRow]:
    """Rows for the mappings that meet the arena's regions, and for the regions it released, lowest first."""
    # Read once: each is a list built anew on every read, and there is a mapping per region.
    events, regions, allocations = arena.events, arena.regions, arena.allocations
    base = arena_part(events)
    regions_at = _Meeting([(r.start, r.end) for r in regions])
    allocations_at = _Meeting([(p, p + n) for p, n in allocations])
    rows: list[MapRow] = []
    for m in maps:
        roles = _roles(arena, m, base, regions, regions_at, allocations, allocations_at)
        if roles:
            rows.append({"start": m.start, "end": m.end, "perms": m.perms, "roles": roles, "name": m.name, "mapped": True})
    for e in events:
        if e.verdict in _RELEASED and e.returned is not None:
            rows.append({
                "start": e.returned, "end": e.returned + e.size, "perms": "", "mapped": False, "name": "",
                "roles": [f"rejected-and-released ({e.step} {e.verdict}: released)"],
            })
    return sorted(rows, key=lambda row: (row["start"], not row["mapped"]))


def rows_text(rows: list[MapRow], width: int | None = None) -> str:
    """``annotate``'s rows as aligned columns with hex addresses, in lines of at most ``width`` (``report.fit``)."""
    table = [["start", "end", "size", "perms", "role", "name"]]
    for row in rows:
        table.append([
            f"{row['start']:#x}", f"{row['end']:#x}", size_text(row["end"] - row["start"]),
            row["perms"] or "(unmapped)", "; ".join(row["roles"]), row["name"],
        ])
    return fit(table, width, prose=[4], paths=[5])


def process_rows(pid: int) -> list[ProcessRow]:
    """Process ``pid``'s mappings, lowest first, each with the bytes of it resident in memory.

    Reads ``/proc/PID/smaps`` through psutil (the ``maps`` extra). Raises
    ``ImportError`` if psutil is not installed, ``psutil.NoSuchProcess`` if
    there is no such running process, ``psutil.AccessDenied`` if this user may
    not read its mappings.
    """
    import psutil  # here, not at the top: it is optional, and this is its only use

    rows: list[ProcessRow] = []
    for m in psutil.Process(pid).memory_maps(grouped=False):
        start, end = (int(x, 16) for x in m.addr.split("-"))
        rows.append({"start": start, "end": end, "perms": m.perms, "rss": m.rss, "name": m.path})
    return rows


def process_text(rows: list[ProcessRow], width: int | None = None) -> str:
    """``process_rows``'s rows as aligned columns with hex addresses, in lines of at most ``width`` (``report.fit``)."""
    table = [["start", "end", "size", "perms", "resident", "name"]]
    for row in rows:
        table.append([
            f"{row['start']:#x}", f"{row['end']:#x}", size_text(row["end"] - row["start"]), row["perms"],
            size_text(row["rss"]) if row["rss"] else "0", row["name"],
        ])
    return fit(table, width, paths=[5])


# CAP_SYS_PTRACE's bit in /proc/self/status's CapEff: what lets root read another user's /proc/PID files.
_CAP_SYS_PTRACE = 19


class Access(NamedTuple):
    """What decides whether this process may read another's ``/proc/PID/smaps`` (``access``)."""

    euid: int
    can_trace: bool  # CAP_SYS_PTRACE in effect
    owner: int | None  # the process's user, if /proc shows it
    hidepid: str | None  # /proc mounted with hidepid=, if it is


def access(pid: int) -> Access:
    """This process's and process ``pid``'s facts for ``denied``, read from /proc (what cannot be read is None)."""
    caps = 0
    hidepid = None
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            caps = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 3 and fields[1] == "/proc":
                    hidepid = next((o.split("=", 1)[1] for o in fields[3].split(",") if o.startswith("hidepid=")), None)
    except (OSError, ValueError, IndexError):
        pass
    try:
        owner: int | None = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        owner = None
    return Access(os.geteuid(), bool(caps >> _CAP_SYS_PTRACE & 1), owner, hidepid)


def denied(pid: int, facts: Access) -> str:
    """Why reading ``/proc/PID/smaps`` was refused, and what may help: the advice depends on who asked."""
    head = f"pid {pid}: permission denied reading /proc/{pid}/smaps"
    hidden = f"; /proc is mounted with hidepid={facts.hidepid}" if facts.hidepid not in (None, "0", "off") else ""
    if facts.euid == 0 and facts.can_trace:
        # Root with CAP_SYS_PTRACE passes the kernel's own checks (ptrace_may_access): something else said no.
        return (f"{head} even as root: a security module (SELinux, AppArmor), a sandbox or the container this "
                "runs in forbids it")
    if facts.owner == facts.euid:
        # The same user is refused a process that changed its credentials (set-user-ID) or made itself
        # undumpable: only CAP_SYS_PTRACE reads those; or a security module said no.
        who, fix = (("root's", "this root lacks CAP_SYS_PTRACE (a container drops it: docker run --cap-add SYS_PTRACE)")
                    if facts.euid == 0 else ("yours", "run as root"))
        return (f"{head}: it is {who}, but it changed its credentials (a set-user-ID program) or made itself "
                f"unreadable (undumpable), or a security module forbids it: {fix}{hidden}")
    if facts.euid == 0:
        return (f"{head}: this root lacks the CAP_SYS_PTRACE capability (a container drops it): run with it "
                f"(docker run --cap-add SYS_PTRACE), or as its owner (uid {facts.owner})")
    whose = f" (it belongs to uid {facts.owner})" if facts.owner is not None else ""
    return f"{head}{whose}: run as its owner or root{hidden}"
