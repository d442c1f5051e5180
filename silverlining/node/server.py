"""The node's command server: ``silver-node`` calls without a new Python each.

A call run as ``sudo silver-node`` spends most of its time before the command starts:
``sudo``, the interpreter, ``protocol.py`` and the handler's modules. This server
(``silverlining-node.service``, started by systemd on the first connection to
``silverlining-node.socket``) imports them once and runs each call in a fork of
itself: the call gets the caller's own stdin, stdout and stderr (passed over the
socket by ``node/connect.py``) and a fresh process of its own, as from ``sudo``, and
``main`` of ``node/__main__.py`` runs it, the same code as without the server.

- Only the deploy user and root reach it: the socket is the deploy user's, mode
  0600, and each caller's credentials are checked (``SO_PEERCRED``); its name is the
  call's ``SUDO_USER``, as sudo would set it (the audit log records it).
- It never runs code other than the node's server files of its start: when the
  recorded server version changes (``setup-node``), it answers ``stale`` (the caller
  falls back to ``sudo silver-node``) and ends once its calls have.
- It ends after ``IDLE`` seconds without calls (the CLI's connection to the node
  stays up as long), never while a call runs; systemd starts it again on the next.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pwd
import select
import signal
import socket
import struct
import sys
import time
import traceback

from silverlining.node import paths
from silverlining.node.__main__ import main, server_version
from silverlining.node.connect import GO, READY, STALE
from silverlining.protocol import COMMANDS

IDLE = 60.0                 # seconds without calls before the server ends
REQUEST_TIMEOUT = 5.0       # to send a request once connected, and "go" once told "ready"
REQUEST_MAX = 1 << 20       # bytes of arguments (the kernel allows 128 kB per argument)


def _listener() -> socket.socket:
    """The listening socket systemd passes (socket activation: fd 3)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        sys.exit("silver-node server: start it through silverlining-node.socket")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):   # not the calls' business
        os.environ.pop(name, None)
    listener = socket.socket(fileno=3)
    listener.set_inheritable(False)
    listener.setblocking(False)
    return listener


def _caller(conn: socket.socket) -> str | None:
    """The caller's user name if it may run node commands (root or the deploy user)."""
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
    return name if uid == 0 or name == paths.DEPLOY_USER else None


def _read_request(conn: socket.socket) -> list[str]:
    """The caller's arguments (``connect.request``); no descriptors yet (``_take_over``)."""
    data = bytearray()
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        if len(data) >= 4 and int.from_bytes(data[:4], "big") > REQUEST_MAX:
            raise ValueError("request too large")
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("request cut short")
        data += chunk
    argv = json.loads(bytes(data[4:4 + int.from_bytes(data[:4], "big")]))
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("malformed request")
    return argv


def _take_over(conn: socket.socket) -> list[int] | None:
    """In the fork: say ``ready`` and wait for the caller's ``go`` with its stdin,
    stdout and stderr; None when it gave up (it runs the call through sudo, or not at
    all): then this fork must run nothing."""
    try:
        conn.sendall(READY)
        data, fds, _flags, _addr = socket.recv_fds(conn, len(GO), 3)
    except OSError:
        return None
    if data == GO and len(fds) == 3:
        return fds
    for fd in fds:
        os.close(fd)
    return None


def _command_module(argv: list[str]) -> str | None:
    """The handler module a call will import, so the server imports it before forking."""
    if argv[:1] == ["--expect-version"]:
        argv = argv[2:]
    cls = COMMANDS.get(argv[0]) if argv else None
    return f"silverlining.node.{cls.HANDLER.split(':')[0]}" if cls else None


def _import(module: str | None) -> None:
    """Import a handler module now; one that fails is left to the call to report."""
    if module is not None and module not in sys.modules:
        with contextlib.suppress(Exception):
            importlib.import_module(module)


def _run_call(listener: socket.socket, conn: socket.socket, argv: list[str],
              user: str) -> None:
    """In the fork: take the call over from the caller (after that it never runs it
    elsewhere), become the call (its pipes, its session, its user), run it, tell the
    caller its status, and end."""
    fds = _take_over(conn)
    if fds is None:         # the caller gave up or is gone: nothing ran, nothing to tell
        os._exit(1)
    status = 1
    try:
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in set(fds) - {0, 1, 2}:
            os.close(fd)
        if user == "root":
            os.environ.pop("SUDO_USER", None)
        else:
            os.environ["SUDO_USER"] = user
        status = main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        with contextlib.suppress(OSError):
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(f"{status & 0xff}\n".encode())
        os._exit(status & 0xff)


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)


def serve() -> None:
    """Accept calls until idle (or stale) with none running; import the remaining
    handler modules in the pauses between calls."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = _listener()
    version = server_version()
    pending = sorted({f"silverlining.node.{c.HANDLER.split(':')[0]}" for c in COMMANDS.values()})
    children: set[int] = set()
    stale = False
    last = time.monotonic()
    while True:
        _reap(children)
        if not children and (stale or time.monotonic() - last >= IDLE):
            return
        if pending and not stale:
            wait = 0.0
        elif children:
            wait = 1.0
        else:
            wait = max(0.0, last + IDLE - time.monotonic())
        if not select.select([listener], [], [], wait)[0]:
            if pending and not stale:
                _import(pending.pop())
            continue
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue
        last = time.monotonic()
        with conn:
            stale = _take(listener, conn, version, children) or stale


def _take(listener: socket.socket, conn: socket.socket, version: str,
          children: set[int]) -> bool:
    """Read one call and fork it off; True when the server's code is stale."""
    conn.settimeout(REQUEST_TIMEOUT)
    try:
        user = _caller(conn)
        if user is None:
            return False
        argv = _read_request(conn)
    except (OSError, ValueError):
        return False
    if server_version() != version:
        with contextlib.suppress(OSError):
            conn.sendall(STALE)
        return True
    _import(_command_module(argv))
    try:
        pid = os.fork()
    except OSError:         # no process to be had: the caller, told nothing, uses sudo
        return False
    if pid == 0:
        _run_call(listener, conn, argv, user)
    children.add(pid)
    return False
