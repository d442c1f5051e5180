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
import runpy
import signal
import stat
import sys
import threading
import time
import traceback

APP_OBJECT = "silverlining.node._app:application"
# hooks that start the first worker alone (node/_gunicorn.py)
GUNICORN_CONFIG = "python:silverlining.node._gunicorn"


def server_argv(interface: str, socket: str, workers: int) -> tuple[str, list[str]]:
    """The server's module and its command line (``python -m MODULE ARGV...``)."""
    if interface == "asgi":
        return "uvicorn", ["--uds", socket, "--workers", str(workers), "--proxy-headers",
                           "--forwarded-allow-ips", "*", "--no-access-log", APP_OBJECT]
    return "gunicorn", ["--config", GUNICORN_CONFIG, "--bind", f"unix:{socket}",
                        "--workers", str(workers), "--graceful-timeout", "20",
                        "--timeout", "120", "--forwarded-allow-ips", "*",
                        "--error-logfile", "-", APP_OBJECT]


def start_server(module: str, argv: list[str]) -> tuple[int, int]:
    """Fork the server, its output on a pipe; its pid and the pipe's read end.

    The child runs it in this very interpreter (``python -m MODULE``), not in a new
    one: a Python start and the standard library's imports less before the app
    answers, on every deploy. Called before any thread exists (a fork copies only
    the calling thread)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    try:
        os.close(read)
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        os.dup2(write, 1)
        os.dup2(write, 2)
        for handle in (fd, write):
            os.close(handle)
        sys.argv = [module, *argv]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    pid, output = start_server(*server_argv(args.interface, args.socket, args.workers))

    def forward(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    out = sys.stdout.buffer
    lock = threading.Lock()
    with open(args.log, "ab", buffering=0) as log, open(output, "rb") as lines:
        def emit(line: bytes) -> None:
            with lock:
                out.write(line)
                out.flush()
                log.write(line)

        if args.memory_max:
            threading.Thread(target=watch_memory, args=(pid, args.memory_max, emit),
                             daemon=True).start()
        for line in lines:
            emit(line)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main())
