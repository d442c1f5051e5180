"""The node's audit log: one JSON line per deploy, activation, deactivation, cleanup.

``who`` is what the CLI says about the person (local user@host), ``login`` is
the account that ran sudo; both are kept because the first is only a claim.
"""

from __future__ import annotations

import json
import os
import time

from silverlining import protocol
from silverlining.node import paths
from silverlining.node.base import node_lock


def record(action: str, app: str | None, *, who: str | None = None, result: str = "ok",
           **details: object) -> None:
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "action": action,
             "app": app, "who": who, "login": os.environ.get("SUDO_USER") or "root",
             "result": result}
    entry.update({k: v for k, v in details.items() if v is not None})
    paths.LOGS.mkdir(parents=True, exist_ok=True)
    with node_lock("audit", 60, "the audit log"):
        fd = os.open(paths.AUDIT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)


def read(app: str | None = None, limit: int = 50) -> list[dict]:
    try:
        lines = paths.AUDIT_LOG.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if app is None or entry.get("app") == app:
            entries.append(entry)
    return entries[-limit:]


def listing(call: protocol.Audit) -> protocol.AuditResult:
    return {"entries": read(call.app, call.n)}
