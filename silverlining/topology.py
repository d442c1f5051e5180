"""A balanced location's topology on this machine, and the rolling order over its members.

``SILVER_HOME/balanced.json`` maps a location to its balancer, its members and
its batch size (docs/balancer.md); the balancer node keeps the same record,
from which ``silver query BALANCER`` (or ``update --balancer``) fills this one
on another developer's machine. ``SILVER_HOME/services-nodes.json`` maps a
location (balanced or not) to the services node that holds its databases
(docs/services-node.md); a balancer records it too. ``batches`` is pure: which
members go together in each step of a rolling deploy.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from silverlining.errors import SilverError, UsageError
from silverlining.state import locked, state_dir, write_json_atomic

DEFAULT_BATCH = "1"
_BATCH_RE = re.compile(r"^([1-9][0-9]{0,5})(%?)\Z")


@dataclass
class Topology:
    location: str
    balancer: str
    members: list[str]
    batch: str = DEFAULT_BATCH
    app: str = ""

    def as_json(self) -> dict:
        return {"balancer": self.balancer, "members": self.members, "batch": self.batch,
                "app": self.app}


def check_batch(text: str) -> str:
    """``N`` (members at a time) or ``P%`` (of the members, rounded up, at least one)."""
    m = _BATCH_RE.match(text.strip())
    if not m or (m.group(2) and int(m.group(1)) > 100):
        raise UsageError(f"bad --batch {text!r}: give N (members at a time) or P% "
                         "(1% to 100%)")
    return text.strip()


def batch_size(batch: str, count: int) -> int:
    """How many of ``count`` members one batch holds."""
    m = _BATCH_RE.match(batch)
    if m is None:
        raise UsageError(f"bad batch {batch!r}")
    n = int(m.group(1))
    size = math.ceil(count * n / 100) if m.group(2) else n
    return max(1, min(count, size))


def batches(members: list[str], batch: str) -> list[list[str]]:
    """The members in rolling order, ``batch`` at a time (the order given is kept)."""
    if not members:
        return []
    size = batch_size(batch, len(members))
    return [members[i:i + size] for i in range(0, len(members), size)]


def _path() -> Path:
    return state_dir() / "balanced.json"


def _services_path() -> Path:
    return state_dir() / "services-nodes.json"


def _all(path: Path | None = None) -> dict[str, dict]:
    path = path or _path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise SilverError(f"{path} is corrupt ({exc}): fix it or move it away (it records "
                          "your balanced locations and services nodes; 'silver query "
                          "BALANCER' fills it again)") from None
    return data if isinstance(data, dict) else {}


def get(location: str) -> Topology | None:
    entry = _all().get(location)
    if not entry:
        return None
    return Topology(location, entry["balancer"], list(entry.get("members", [])),
                    entry.get("batch") or DEFAULT_BATCH, entry.get("app", ""))


def put(topology: Topology) -> None:
    path = _path()
    with locked(path.with_suffix(".lock")):
        data = _all()
        data[topology.location] = topology.as_json()
        write_json_atomic(path, data)


def remove(location: str) -> None:
    path = _path()
    with locked(path.with_suffix(".lock")):
        data = _all()
        if data.pop(location, None) is not None:
            write_json_atomic(path, data)


def services_node(location: str) -> str | None:
    """The services node holding ``location``'s databases, if it has one."""
    entry = _all(_services_path()).get(location)
    return entry["node"] if entry else None


def services_locations(node: str) -> dict[str, str]:
    """The locations whose databases ``node`` holds, and their apps."""
    return {loc: e.get("app", "") for loc, e in _all(_services_path()).items()
            if e.get("node") == node}


def put_services_node(location: str, node: str, app: str) -> None:
    path = _services_path()
    with locked(path.with_suffix(".lock")):
        data = _all(path)
        if data.get(location) != {"node": node, "app": app}:
            data[location] = {"node": node, "app": app}
            write_json_atomic(path, data)


def forget_node(name: str) -> list[str]:
    """Drop a destroyed node from every location: a location whose balancer it was is
    forgotten whole, otherwise it stops being a member; a location whose services node
    it was forgets it. Returns what changed, to say so."""
    changed: list[str] = []
    services = _services_path()
    with locked(services.with_suffix(".lock")):
        data = _all(services)
        gone = [loc for loc, entry in data.items() if entry.get("node") == name]
        for location in gone:
            del data[location]
            changed.append(f"no longer the services node of {location}")
        if gone:
            write_json_atomic(services, data)
    path = _path()
    with locked(path.with_suffix(".lock")):
        data = _all()
        for location, entry in list(data.items()):
            members = list(entry.get("members", []))
            if entry.get("balancer") == name or members == [name]:
                del data[location]
                changed.append(f"forgot balanced location {location}")
            elif name in members:
                entry["members"] = [m for m in members if m != name]
                changed.append(f"no longer a member of {location}")
        if changed:
            write_json_atomic(path, data)
    return changed
