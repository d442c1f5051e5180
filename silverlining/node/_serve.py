"""``ExecStart`` of an instance unit: gunicorn or uvicorn on the instance's socket.

Their output (the app's prints and tracebacks included) goes both to the
journal (our stdout) and to the instance's log file in SILVER_LOGS, which is
what ``silver update`` shows when a new version fails. SIGTERM from systemd
is passed on, so the server shuts down gracefully and requests in flight
finish.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time

APP_OBJECT = "silverlining.node._app:application"
# hooks that start the first worker alone (node/_gunicorn.py)
GUNICORN_CONFIG = "python:silverlining.node._gunicorn"


def server_command(interface: str, socket: str, workers: int) -> list[str]:
    if interface == "asgi":
        return [sys.executable, "-m", "uvicorn", "--uds", socket, "--workers", str(workers),
                "--proxy-headers", "--forwarded-allow-ips", "*", "--no-access-log",
                APP_OBJECT]
    return [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG,
            "--bind", f"unix:{socket}", "--workers", str(workers), "--graceful-timeout", "20",
            "--timeout", "120", "--forwarded-allow-ips", "*", "--error-logfile", "-",
            APP_OBJECT]


def remove_stale_socket(path: str) -> None:
    """A socket left by a crash would stop the server from binding (we are the app
    user here, in the app's own socket directory)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def watch_memory(master: int, limit: int, emit, interval: float = 0.2) -> None:
    """Kill a worker whose memory passes app.ini's ``memory_max``; the server's master
    starts a fresh one. Works where the unit's ``MemoryMax=`` cannot be enforced
    (a node without a writable memory cgroup), and logs why the worker went."""
    while True:
        for pid in _children(master):
            used = _rss(pid)
            if used > limit:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                emit(f"silverlining: worker {pid} used {used >> 20} MB, over memory_max "
                     f"({limit >> 20} MB): killed, a new one starts\n".encode())
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="silverlining.node._serve")
    parser.add_argument("--interface", choices=("wsgi", "asgi"), default="wsgi")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-max", type=int, help="bytes a worker may use (app.ini)")
    args = parser.parse_args(argv)
    remove_stale_socket(args.socket)
    child = subprocess.Popen(server_command(args.interface, args.socket, args.workers),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)

    def forward(signum, frame):
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    out = sys.stdout.buffer
    assert child.stdout is not None
    lock = threading.Lock()
    with open(args.log, "ab", buffering=0) as log:
        def emit(line: bytes) -> None:
            with lock:
                out.write(line)
                out.flush()
                log.write(line)

        if args.memory_max:
            threading.Thread(target=watch_memory, args=(child.pid, args.memory_max, emit),
                             daemon=True).start()
        for line in child.stdout:
            emit(line)
    status = child.wait()
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main())
