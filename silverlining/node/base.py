"""The node's base layer: what every node module needs, written once, with one set of guarantees.

- ``say``: a progress line for the user (the CLI streams stderr back).
- ``run``: one command runner; a failure is a ``NodeError`` with the end of its output.
- ``apt_install``: OS packages, one install at a time on the node.
- ``write_atomic``: a file replaced whole or not at all, never written through a link.
- ``flock``: a lock between node processes, given up after a bounded wait.
- ``wait_until``: polling with a deadline.
- ``make_dir``: a directory with an owner and mode, its last component never followed.

Standard library only, and nothing of the node but its paths and its error: every
other node module (and the services) builds on this one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from silverlining.node import paths
from silverlining.node._errors import NodeError

T = TypeVar("T")

_client = {"gone": False, "holds_stdin": False}


def say(message: str) -> None:
    """One progress line for the user (streamed back by the CLI)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:         # the CLI went away (SSH closed): carry on, clean up, record
        _client["gone"] = True


def client_gone() -> bool:
    """Whether the CLI that started us has disconnected (Ctrl-C, a dropped connection).

    Writing to a pipe nobody reads any more fails at once, so a progress line is
    the probe; and once ``watch_client_stdin`` was called, the end of our stdin
    says so too (an ``ssh`` of the shared connection that is killed leaves its
    channel's output read, but ends its input). A deploy asks just before its switch
    and stops if nobody is there.
    """
    say("checking that the client is still connected")
    if _client["holds_stdin"] and not _client["gone"]:
        with contextlib.suppress(OSError, ValueError):
            # the client sends nothing more: readable means it ended the input
            _client["gone"] = bool(select.select([sys.stdin.fileno()], [], [], 0)[0])
    return _client["gone"]


def watch_client_stdin() -> None:
    """The client keeps our stdin open, sending nothing more, until it has our answer:
    from now on ``client_gone`` takes its end for the client's."""
    _client["holds_stdin"] = True


def run(argv: list[str], *, what: str | None = None, timeout: float | None = 600,
        input: str | bytes | None = None, env: dict[str, str] | None = None,
        user: str | None = None, stdin: Any = None, stdout: Any = None) -> str:
    """Run a command and return its output; on failure raise ``NodeError`` with the end
    of its error output. ``user`` runs it as that user and group (from ``/``);
    ``stdin``/``stdout`` may be open files (dumps, restores)."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user, group=user, extra_groups=[], cwd="/")
    try:
        proc = subprocess.run(argv, input=input, stdin=stdin if input is None else None,
                              stdout=subprocess.PIPE if stdout is None else stdout,
                              stderr=subprocess.PIPE, env=env, timeout=timeout,
                              text=not isinstance(input, bytes), **kwargs)
    except FileNotFoundError:
        raise NodeError(f"{argv[0]} is not installed on this node") from None
    except subprocess.TimeoutExpired:
        raise NodeError(f"{what or argv[0]} timed out after {timeout:g}s") from None
    out = proc.stdout if stdout is None else ""
    if isinstance(out, bytes):
        out = out.decode(errors="replace")
    if proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else \
            proc.stderr.decode(errors="replace")
        tail = [ln for ln in (err + "\n" + out).splitlines() if ln.strip()][-5:]
        raise NodeError(f"{what or ' '.join(argv[:2])} failed (status {proc.returncode}): "
                        + (" | ".join(tail) or "no message"))
    return out


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644, uid: int | None = 0,
                 gid: int | None = 0) -> None:
    """Replace ``path`` with ``data``, owned ``uid:gid`` (None: the caller's) with
    ``mode`` from the first byte: readers see the old file or the new one, never half.

    The temporary file is created with ``O_EXCL|O_NOFOLLOW`` (a link planted in its
    place is removed, never written through), synced, and only then renamed.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)
        os.write(fd, data.encode() if isinstance(data, str) else data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def connect_unix(path: Path | str, timeout: float) -> socket.socket:
    """A connection to the unix socket at ``path``, never through a link there: an
    instance's socket lies in a directory its app writes, and a link it put there
    would send root's connection to a socket of its choosing. The socket is opened as
    a path (``O_PATH|O_NOFOLLOW``), checked, and connected to through /proc."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(errno.ENOTSOCK, f"{path} is not a socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


def listening(path: Path, timeout: float = 2.0) -> bool:
    """Whether something takes connections on the unix socket ``path`` (a connect and
    nothing more; ``timeout`` bounds it, as a full backlog would block it)."""
    try:
        connect_unix(path, timeout).close()
        return True
    except OSError:
        return False


def point_link(link: Path, target: Path | None) -> None:
    """Replace the symlink ``link`` atomically (a reader sees the old target or the new
    one, never none); ``None`` removes it."""
    if target is None:
        link.unlink(missing_ok=True)
        return
    tmp = link.with_name(f".{link.name}.new")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def wait_until(check: Callable[[], T], timeout: float, interval: float = 0.3, *,
               failed: str | Callable[[], Exception]) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something true, and
    return that; once ``timeout`` seconds have passed, raise ``failed()`` (a text:
    ``NodeError("TEXT within Ns")``). A ``check`` that knows the wait is hopeless (a
    crashed unit) raises itself."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() >= deadline:
            raise failed() if callable(failed) else NodeError(f"{failed} within {timeout:g}s")
        time.sleep(interval)


@contextlib.contextmanager
def flock(path: Path, wait: float | None, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created); wait for it up to ``wait`` seconds
    (None: as long as it takes), saying once that we wait, then fail clearly."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            told = []

            def taken() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if not told:
                    say(f"waiting for {what}: another deploy holds its lock")
                    told.append(True)
                return False

            wait_until(taken, wait, 0.2, failed=lambda: NodeError(
                f"{what} is busy (another deploy holds its lock); gave up after {wait:g}s"))
        yield
    finally:
        os.close(fd)


def node_lock(name: str, wait: float, what: str):
    """``flock`` on ``LOCKS/NAME.lock`` (the node's locks live in /run: none outlives a boot)."""
    return flock(paths.LOCKS / f"{name}.lock", wait, what)


def make_dir(path: Path, uid: int, gid: int, mode: int) -> Path:
    """``install -d``: create (with parents) and set owner and mode.

    The last component is never followed if it is a symlink (someone who can
    write the parent could plant one to make root chown any file): the owner
    and mode are set through a ``O_NOFOLLOW`` descriptor of the directory itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise NodeError(f"{path} is not a plain directory ({exc.strerror}): refusing to "
                        "use it") from None
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def apt_install(packages: tuple[str, ...] | list[str], why: str = "") -> None:
    """apt-get install what is missing, one install at a time on the node (two deploys
    installing at once wait for each other, and for dpkg's own lock, instead of
    failing); the package lists are refreshed when apt does not know a name."""
    missing = [pkg for pkg in packages if not _installed(pkg)]
    if not missing:
        return
    with node_lock("apt", 1800, "the node's package installs"):
        missing = [pkg for pkg in missing if not _installed(pkg)]
        if not missing:
            return
        say(f"installing packages: {' '.join(missing)}")
        if any(not _known(pkg) for pkg in missing):
            say("refreshing the package lists (apt-get update)")
            _apt("update")
        unknown = [pkg for pkg in missing if not _known(pkg)]
        if unknown:
            raise NodeError(f"no such package on this node's OS: {' '.join(unknown)}"
                            + (f" ({why})" if why else ""))
        _apt("install", "--no-install-recommends", "--", *missing)


def _installed(pkg: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "--", pkg],
                          capture_output=True, text=True)
    return "install ok installed" in proc.stdout


def _known(pkg: str) -> bool:
    """Whether apt has an installation candidate for ``pkg``."""
    proc = subprocess.run(["apt-cache", "policy", "--", pkg], capture_output=True, text=True)
    return any(line.strip().startswith("Candidate:") and "(none)" not in line
               for line in proc.stdout.splitlines())


def _apt(*args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *args], env=env,
        what=f"apt-get {args[0]}", timeout=1800)


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last lines of a log file ([] if it does not exist). An app owns its log
    directory, so a link planted there is not followed."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in data.splitlines() if ln.strip()][-lines:]


def empty_dir(path: Path) -> None:
    """Remove everything inside ``path`` (not the directory itself)."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
