"""Entries in /etc/hosts for node names that have no DNS yet.

Our lines end with ``# silverlining`` so we only ever replace or remove what
we wrote; a line the user wrote by hand is left alone. ``SILVER_ETC_HOSTS``
points elsewhere (tests). The file is rewritten in place, not renamed over,
because /etc/hosts is often a bind mount (containers).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from silverlining.errors import SilverError

MARK = "# silverlining"


def hosts_path() -> Path:
    return Path(os.environ.get("SILVER_ETC_HOSTS") or "/etc/hosts")


@dataclass(frozen=True)
class Entry:
    address: str
    names: tuple[str, ...]
    ours: bool


def _parse(line: str) -> Entry | None:
    body, _, comment = line.partition("#")
    fields = body.split()
    if len(fields) < 2:
        return None
    return Entry(fields[0], tuple(fields[1:]), comment.strip() == MARK[1:].strip())


def entries(path: Path | None = None) -> list[Entry]:
    path = path or hosts_path()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [e for e in map(_parse, lines) if e]


def lookup(name: str, path: Path | None = None) -> str | None:
    """The address /etc/hosts gives ``name`` (ours or not), if any."""
    for entry in entries(path):
        if name in entry.names:
            return entry.address
    return None


def _rewrite(name: str, address: str | None) -> str:
    """Drop our lines for ``name`` and, given an address, append a new one.

    Returns "added", "unchanged", "removed", "absent", or "foreign" (a line
    we did not write already names it: left alone).
    """
    path = hosts_path()
    if address is None and not path.exists():
        return "absent"
    try:
        fh = open(path, "r+" if path.exists() else "w+")
    except OSError as exc:
        todo = f"add this line yourself: {address} {name}" if address else \
            f"remove the line for {name} yourself"
        raise SilverError(f"cannot write {path} ({exc.strerror}); {todo}") from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        lines = fh.read().splitlines()
        kept, ours = [], []
        for line in lines:
            entry = _parse(line)
            if entry and entry.ours and name in entry.names:
                ours.append(entry)
            else:
                kept.append(line)
        foreign = [e for e in map(_parse, kept) if e and name in e.names]
        if address is not None:
            if foreign:
                status = "foreign"
            elif [(e.address, e.names) for e in ours] == [(address, (name,))]:
                return "unchanged"
            else:
                kept.append(f"{address} {name} {MARK}")
                status = "added"
        else:
            if not ours:
                return "absent"
            status = "removed"
        fh.seek(0)
        fh.write("".join(line + "\n" for line in kept))
        fh.truncate()
    return status


def add(name: str, address: str) -> str:
    """Map ``name`` to ``address`` with a line of ours (replacing an old one of ours)."""
    return _rewrite(name, address)


def remove(name: str) -> str:
    """Remove our line for ``name``; lines we did not write stay."""
    return _rewrite(name, None)
