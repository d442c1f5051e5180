"""Talking to the node side of one node: log in as the deploy user, run ``silver-node``.

Shared by the commands that manage apps on nodes (update, query, activate,
deactivate, clean-node, run, logs, diff, disable/enable). A node command is
sent as its definition (``send(protocol.Deploy(...))``, see
``silverlining.protocol``); ``call`` and ``raw`` are the wire below it. Node
progress (stderr) streams back as ``[node] ...`` lines; the result is the
node's JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import re
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from silverlining import nodes, protocol, serverfiles, topology
from silverlining.console import Console, human
from silverlining.errors import SilverError, UsageError
from silverlining.locations import Location
from silverlining.node import paths
from silverlining.transport import SSH, Progress

NODE_ERROR = "silver-node: error: "


def who() -> str:
    """Who is deploying, as recorded in the node's audit log and version history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _signed(command: protocol.Command) -> protocol.Command:
    if isinstance(command, protocol.Audited) and command.who is None:
        return dataclasses.replace(command, who=who())
    return command


@dataclass
class NodeSession:
    name: str
    address: str
    ssh: SSH
    console: Console
    verified: bool = False        # the node is known to run our server files

    def _entry(self) -> list[str]:
        """``silver-node`` as the deploy user, which hands the call to the node's
        command server (``node/connect.py``: no sudo, no new Python importing the
        node code; else ``sudo`` after all); until the node is verified, told to refuse
        to run unless its server version is ours (one round trip instead of two)."""
        expect = [] if self.verified else ["--expect-version", serverfiles.version()]
        return [str(paths.ENTRY), *expect]

    def _explain(self) -> None:
        """After a failed first call: say so if the node is not set up or runs other
        server files (else the caller re-raises the call's own error)."""
        if not self.verified:
            serverfiles.check_node_version(self.ssh, self.name)
            self.verified = True

    def call(self, sub: str, *args: str, quiet: bool = False,
             timeout: float | None = None, input: str | BinaryIO | None = None) -> dict:
        """Run ``silver-node SUB ARGS`` (as root, see ``_entry``); node progress is shown.
        ``input`` goes to its stdin (how secrets travel: never as arguments)."""
        def stream(_name: str, line: str) -> None:
            if line.strip():
                (self.console.detail if quiet else self.console.info)(f"[{self.name}] {line}")

        try:
            result = self.ssh.run_json([*self._entry(), sub, *args], stream=stream,
                                       timeout=timeout, input=input)
        except SilverError:
            self._explain()
            raise
        self.verified = True
        return result

    def send(self, command: protocol.Command, *, quiet: bool = False,
             timeout: float | None = None, input: str | BinaryIO | None = None) -> Any:
        """Run a node command (``silverlining.protocol``) and return its answer (the
        command's ``Result``); an ``Audited`` one is said to come from ``who()``.
        The options are ``call``'s."""
        return self.call(command.NAME, _signed(command).encode(), quiet=quiet,
                         timeout=timeout, input=input)

    def send_raw(self, command: protocol.Command, *, pty: bool = False,
                 terminal: bool = False, input: BinaryIO | None = None) -> int:
        """Run a raw node command (``RAW``: a script, a log tail); see ``raw``."""
        return self.raw(command.NAME, _signed(command).encode(), pty=pty, terminal=terminal,
                        input=input)

    def raw(self, sub: str, *args: str, pty: bool = False, terminal: bool = False,
            input: BinaryIO | None = None) -> int:
        """Run a raw ``silver-node`` subcommand (a script, a log tail) whose output is the
        user's: streamed to our stdout/stderr as it comes; returns its exit status.

        ``terminal`` wires it to this terminal (``run -i``); ``pty`` gives it one so it
        ends (SIGHUP) when we disconnect; ``input`` is fed to its stdin. The node's
        own errors become one line.
        """
        if not self.verified:
            serverfiles.check_node_version(self.ssh, self.name)
            self.verified = True
        argv = ["sudo", "-n", str(paths.ENTRY), sub, *args]
        if terminal:
            return self.ssh.interactive(argv)
        errors: list[str] = []

        def echo(name: str, line: str) -> None:
            if line.startswith(NODE_ERROR):
                errors.append(line[len(NODE_ERROR):])
                return
            out = sys.stdout if name == "stdout" else sys.stderr
            out.write(line + "\n")
            out.flush()

        status = self.ssh.run(argv, input=input, stream=echo, check=False, pty=pty).status
        if errors and status != 0:
            raise SilverError(f"[{self.name}] {errors[-1]}")
        return status

    @contextlib.contextmanager
    def upload_progress(self) -> Iterator[Progress | None]:
        """An rsync ``progress`` callback drawing bytes, percentage and rate on the
        status line (None when there is no terminal to draw on); cleared after."""
        if not self.console.live:
            yield None
            return

        def show(sent: int, percent: int, rate: str) -> None:
            rate = re.sub(r"(\d)([kMGT]?B/s)$", r"\1 \2", rate)
            self.console.status(self.name, f"uploading: {human(sent)}, {percent}%, {rate}")

        try:
            yield show
        finally:
            self.console.status_done(self.name)

    def close(self) -> None:
        self.ssh.close()


def open_node(console: Console, node: str, check: bool = True) -> NodeSession:
    """Connect as the deploy user and make sure the node runs our server files
    (``check=False``: its first ``call`` makes sure of that, in the same round trip)."""
    where = nodes.resolve(node)
    ssh = SSH(where.address, user=paths.DEPLOY_USER, label=where.name)
    try:
        if check:
            serverfiles.check_node_version(ssh, where.name)
    except BaseException:
        ssh.close()
        raise
    return NodeSession(where.name, where.address, ssh, console, verified=check)


def node_for(location: Location, node: str | None) -> str:
    """``--node`` if given, else a balanced location's first member, else the location's
    host (which must then be a hostname)."""
    if node:
        return node
    if (topo := topology.get(str(location))) is not None and topo.members:
        return topo.members[0]
    if not location.is_exact_host:
        raise UsageError(f"{location} is not a hostname a node can be reached at: give --node")
    return location.host
