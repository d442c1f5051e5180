"""Talking to the node side of one node: log in as the deploy user, ``sudo silver-node``.

Shared by the commands that manage apps on nodes (update, query, activate,
deactivate, clean-node, and later run/logs/...). Node progress (stderr)
streams back as ``[node] ...`` lines; the result is the node's JSON.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass

from silverlining import nodes
from silverlining.console import Console
from silverlining.errors import UsageError
from silverlining.locations import Location
from silverlining.node import paths
from silverlining.serverfiles import check_node_version
from silverlining.transport import SSH


def who() -> str:
    """Who is deploying, as recorded in the node's audit log and version history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class NodeSession:
    name: str
    address: str
    ssh: SSH
    console: Console

    def call(self, sub: str, *args: str, quiet: bool = False,
             timeout: float | None = None) -> dict:
        """Run ``silver-node SUB ARGS`` as root through sudo; node progress is shown."""
        def stream(_name: str, line: str) -> None:
            if line.strip():
                (self.console.detail if quiet else self.console.info)(f"[{self.name}] {line}")

        return self.ssh.run_json(["sudo", "-n", str(paths.ENTRY), sub, *args],
                                 stream=stream, timeout=timeout)

    def close(self) -> None:
        self.ssh.close()


def open_node(console: Console, node: str) -> NodeSession:
    """Connect as the deploy user and make sure the node runs our server files."""
    where = nodes.resolve(node)
    ssh = SSH(where.address, user=paths.DEPLOY_USER, label=where.name)
    try:
        check_node_version(ssh, where.name)
    except BaseException:
        ssh.close()
        raise
    return NodeSession(where.name, where.address, ssh, console)


def node_for(location: Location, node: str | None) -> str:
    """``--node`` if given, else the location's host (which must then be a hostname)."""
    if node:
        return node
    if not location.is_exact_host:
        raise UsageError(f"{location} is not a hostname a node can be reached at: give --node")
    return location.host
