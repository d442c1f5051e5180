"""``silver-node`` run by the deploy user: hand the call to the node's command server.

The CLI runs every node command as the deploy user, through one SSH session of the
node's shared connection. Started directly, each would pay ``sudo`` and a new Python
importing the node code (most of a call's time). Instead this small process (no
imports of the node code, no ``sudo``) passes its stdin, stdout and stderr and its
arguments to ``silverlining-node.service`` (``node/server.py``), which runs the
command in a fork of itself, with those very pipes, and tells the exit status back:
the CLI sees the same stdout, stderr, stdin and status as from ``sudo silver-node``.

When the server cannot take the call (not running, refused, wedged, or its code is
older than the node's server files), this falls back to ``sudo -n silver-node``, the
path every call took before: the server is a shortcut, never a requirement. The
hand-over is a commitment made by this side alone, so a call runs once whatever the
server does:

1. this sends the arguments (nothing else);
2. the server's fork for the call answers ``ready``, within ``READY_TIMEOUT``;
3. this sends ``go`` with its stdin, stdout and stderr: from here the call is the
   server's, never run elsewhere (it may have had effects), and a server that ends
   without a status is an error. The fork runs nothing before it has ``go``.

A server that does not answer in time (stopped, stuck) is left with the arguments
only: this closes the connection and uses sudo, and a fork the server makes later
finds the connection closed and runs nothing. It holds none of the caller's pipes
either, which would keep the SSH session from ending.

Every call of every command starts this process, so it imports next to nothing
(Python's start is most of its time; the imports were as much again): ``_socket``
rather than ``socket`` (and its ``enum``), no ``json`` (and its ``re``: the request's
JSON is written here), no ``os``, and not ``paths.py`` (and its ``pathlib``): the
three paths it needs are plain strings here, which tests/unit/test_node_connect.py
compares with ``paths.py``.
"""

from __future__ import annotations

import sys
import time
from array import array
from posix import execv       # os.execv, without importing os
from _socket import AF_UNIX, SCM_RIGHTS, SOCK_STREAM, SOL_SOCKET, socket

NODE_SOCKET = "/run/silverlining/node.sock"     # paths.NODE_SOCKET
SUDO = "/usr/bin/sudo"                          # paths.SUDO
ENTRY = "/usr/local/sbin/silver-node"           # paths.ENTRY

READY, GO, STALE = b"ready\n", b"go\n", b"stale\n"
READY_TIMEOUT = 5.0      # seconds for the server to take a call, else sudo runs it
STATUS_MAX = 16          # bytes of "ready\n" plus the status line


def _read_line(sock: socket, buf: bytearray, deadline: float | None = None) -> bytes:
    """The next line the server sent (b"" when it closed the connection first);
    ``TimeoutError`` past ``deadline`` (``time.monotonic``)."""
    while b"\n" not in buf:
        if deadline is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(STATUS_MAX)
        if not chunk:
            return b""
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line + b"\n"


def _json_string(text: str) -> str:
    """``text`` as a JSON string that ``json.loads`` reads back as ``text``, in ASCII
    (other characters, and the lone surrogates undecodable argument bytes become, as
    ``\\uXXXX``), without importing json."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x80:
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:                           # a surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
    out.append('"')
    return "".join(out)


def request(argv: list[str]) -> bytes:
    """The request a server reads: a 4-byte length, then the arguments as a JSON list."""
    body = ("[" + ", ".join(_json_string(arg) for arg in argv) + "]").encode()
    return len(body).to_bytes(4, "big") + body


def through_server(argv: list[str]) -> int | None:
    """Run ``argv`` in the command server; its exit status, or None when the server
    did not take it within ``READY_TIMEOUT`` (run it some other way)."""
    deadline = time.monotonic() + READY_TIMEOUT
    sock = socket(AF_UNIX, SOCK_STREAM)
    try:
        buf = bytearray()
        try:
            sock.settimeout(READY_TIMEOUT)
            sock.connect(NODE_SOCKET)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(request(argv))
            if _read_line(sock, buf, deadline) != READY:
                return None           # stale, refused, or gone before running anything
            sock.settimeout(None)     # the call's own time from here
            # socket.send_fds: our stdin, stdout and stderr go with "go"
            sock.sendmsg([GO], [(SOL_SOCKET, SCM_RIGHTS, array("i", [0, 1, 2]).tobytes())])
        except OSError:               # TimeoutError included: nothing was handed over
            return None
        try:
            status = _read_line(sock, buf).strip()
        except OSError:
            status = b""
    finally:
        sock.close()
    if not status.isdigit():
        print('{"error": "the node\'s command server ended without an exit status '
              '(see journalctl -u silverlining-node)"}', flush=True)
        return 1
    return int(status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    status = through_server(argv)
    if status is None:
        execv(SUDO, ["sudo", "-n", ENTRY, *argv])
    return status
