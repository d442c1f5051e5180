"""Node commands about the node's own set-up (what ``silver setup-node`` left).

``server-version``: the recorded server version and the last setup-node runs.
``check-version``: fails unless the node was set up with exactly the expected
server files.
"""

from __future__ import annotations

from silverlining import protocol
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


def server_version(call: protocol.ServerVersion) -> protocol.ServerVersionResult:
    return {"version": read_version(), "setup_runs": last_runs()}


def check_version(call: protocol.CheckVersion) -> protocol.CheckVersionResult:
    found = read_version()
    if found is None:
        raise NodeError("this node is not set up: run silver setup-node")
    if found != call.expected:
        raise NodeError(f"this node was set up with other server files ({found}, "
                        f"expected {call.expected}): run silver setup-node")
    return {"version": found}
