"""``silver-node`` run by the deploy user: hand the call to the node's command server.

The CLI runs every node command as the deploy user, through one SSH session of the
node's shared connection. Started directly, each would pay ``sudo`` and a new Python
importing the node code (most of a call's time). Instead this small process (no
imports of the node code, no ``sudo``) passes its stdin, stdout and stderr and its
arguments to ``silverlining-node.service`` (``node/server.py``), which runs the
command in a fork of itself, with those very pipes, and tells the exit status back:
the CLI sees the same stdout, stderr, stdin and status as from ``sudo silver-node``.

When the server cannot take the call (not running, refused, or its code is older
than the node's server files), this falls back to ``sudo -n silver-node``, the path
every call took before: the server is a shortcut, never a requirement. Once the server
has said it runs the call, there is no fallback (the call may have had effects); a
server that then ends without a status is an error.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from silverlining.node import paths

RUN, STALE = b"run\n", b"stale\n"
STATUS_MAX = 16          # bytes of "run\n" plus the status line


def _read_line(sock: socket.socket, buf: bytearray) -> bytes:
    """The next line the server sent (b"" when it closed the connection first)."""
    while b"\n" not in buf:
        chunk = sock.recv(STATUS_MAX)
        if not chunk:
            return b""
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line + b"\n"


def request(argv: list[str]) -> bytes:
    """The request a server reads: a 4-byte length, then the arguments as JSON."""
    body = json.dumps(argv).encode()
    return len(body).to_bytes(4, "big") + body


def through_server(argv: list[str]) -> int | None:
    """Run ``argv`` in the command server; its exit status, or None when the server
    did not take it (run it some other way)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        buf = bytearray()
        try:
            sock.connect(str(paths.NODE_SOCKET))
            socket.send_fds(sock, [request(argv)], [0, 1, 2])
            if _read_line(sock, buf) != RUN:
                return None           # stale, refused, or gone before running anything
        except OSError:
            return None
        try:
            status = _read_line(sock, buf).strip()
        except OSError:
            status = b""
    if not status.isdigit():
        print(json.dumps({"error": "the node's command server ended without an exit "
                                   "status (see journalctl -u silverlining-node)"}),
              flush=True)
        return 1
    return int(status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    status = through_server(argv)
    if status is None:
        os.execv(paths.SUDO, ["sudo", "-n", str(paths.ENTRY), *argv])
    return status
