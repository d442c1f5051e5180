"""Per-node supervisor: runs one node's systemd-nspawn and its apt proxy forwarder.

Run as a script (stdlib only) by the local provider:

    python3 local_supervise.py NODE_DIR LISTEN_HOST LISTEN_PORT \
        UPSTREAM_HOST UPSTREAM_PORT -- NSPAWN_ARGV...

It detaches (fork + setsid, stdin /dev/null, output to NODE_DIR/console.log)
so the node outlives the command that started it, then reports ``ok PID``
(the nspawn pid) or one error line to the caller and exits. The detached part
relays TCP from LISTEN (10.213.N.1:3142, reachable from the node) to the
host's private apt-cacher-ng on 127.0.0.1, and exits when nspawn exits, so a
forwarder never outlives its node.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; pass an end-of-file on (half-close) so the other one goes on."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _serve(sock: socket.socket | None, upstream: tuple[str, int],
                 proc: subprocess.Popen) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (up_writer, writer):
                w.close()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, proc.terminate)
    if sock is None:
        await loop.run_in_executor(None, proc.wait)
        return
    server = await asyncio.start_server(relay, sock=sock)
    async with server:
        await loop.run_in_executor(None, proc.wait)


def _listen(addr: tuple[str, int]) -> socket.socket | None:
    """The forwarder's socket; None when a proxy already listens on all host addresses
    at that port (a system apt-cacher-ng on a developer's machine): nodes use it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        with socket.create_connection(addr, timeout=2):
            return None
    sock.listen(64)
    return sock


def _detached(node_dir: str, listen: tuple[str, int], upstream: tuple[str, int],
              argv: list[str], report: int) -> int:
    os.setsid()
    log = os.open(os.path.join(node_dir, "console.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        sock: socket.socket | None = _listen(listen)
    except OSError as exc:
        os.write(report, f"cannot listen on {listen[0]}:{listen[1]} for the node's apt "
                         f"proxy: {exc.strerror}\n".encode())
        return 1
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=1, stderr=2)
    except OSError as exc:
        os.write(report, f"cannot start {argv[0]}: {exc.strerror}\n".encode())
        return 1
    os.write(report, f"ok {proc.pid}\n".encode())
    os.close(report)
    asyncio.run(_serve(sock, upstream, proc))
    return 0


def main(args: list[str]) -> int:
    sep = args.index("--")
    node_dir, lhost, lport, uhost, uport = args[:sep]
    argv = args[sep + 1:]
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.close(read_end)
        code = 1
        try:
            code = _detached(node_dir, (lhost, int(lport)), (uhost, int(uport)), argv,
                             write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        message = fh.read().strip()
    if message.startswith("ok "):
        print(message)
        return 0
    print(message or "node supervisor exited without starting the node", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
