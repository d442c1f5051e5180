"""Node subcommands about the node's own set-up (what ``silver setup-node`` left).

``server-version``: the recorded server version and the last setup-node runs.
``check-version HASH``: fails unless the node was set up with exactly HASH,
so a command can check and act in one call (``silver-node check-version H``).
"""

from __future__ import annotations

import argparse

from silverlining.node import paths
from silverlining.node._errors import NodeError

LAST_RUNS = 5


def read_version() -> str | None:
    try:
        return paths.SERVER_VERSION.read_text().strip() or None
    except FileNotFoundError:
        return None


def last_runs(count: int = LAST_RUNS) -> list[str]:
    """The last lines of the setup log (when, by whom, version, changes, status)."""
    try:
        lines = paths.SETUP_LOG.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return []
    return lines[-count:]


def server_version(args: argparse.Namespace) -> dict:
    return {"version": read_version(), "setup_runs": last_runs()}


def check_version(args: argparse.Namespace) -> dict:
    found = read_version()
    if found is None:
        raise NodeError("this node is not set up: run silver setup-node")
    if found != args.expected:
        raise NodeError(f"this node was set up with other server files ({found}, "
                        f"expected {args.expected}): run silver setup-node")
    return {"version": found}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("server-version", help="the server files' version this node has")
    p.set_defaults(handler=server_version)
    p = subparsers.add_parser("check-version", help="fail unless the node has this version")
    p.add_argument("expected", metavar="HASH")
    p.set_defaults(handler=check_version)
