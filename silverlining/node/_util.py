"""Small helpers shared by the node-side modules: progress, commands, app users.

Progress goes to stderr line by line (the CLI streams it back with a
``[node]`` prefix); the JSON result is printed by ``__main__``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from silverlining.node import paths
from silverlining.node._errors import NodeError

APP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
VERSION_RE = re.compile(r"^v([1-9][0-9]*)\Z")


_client = {"gone": False}


def say(message: str) -> None:
    """One progress line for the user (streamed back by the CLI)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:         # the CLI went away (SSH closed): carry on, clean up, record
        _client["gone"] = True


def client_gone() -> bool:
    """Whether the CLI that started us has disconnected (Ctrl-C, a dropped connection).

    Writing to a pipe nobody reads any more fails at once, so a progress line is
    the probe; a deploy asks just before its switch and stops if nobody is there.
    """
    say("checking that the client is still connected")
    return _client["gone"]


def check_app(name: str) -> str:
    if not APP_RE.match(name):
        raise NodeError(f"bad app name {name!r}")
    return name


def version_number(version: str) -> int:
    m = VERSION_RE.match(version)
    if not m:
        raise NodeError(f"bad version {version!r}: expected vN")
    return int(m.group(1))


def run(argv: list[str], *, env: dict[str, str] | None = None, what: str | None = None,
        timeout: float | None = 600) -> str:
    """Run a command; on failure raise ``NodeError`` with the end of its output."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except FileNotFoundError:
        raise NodeError(f"{argv[0]} is not installed on this node") from None
    except subprocess.TimeoutExpired:
        raise NodeError(f"{what or argv[0]} timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()][-5:]
        raise NodeError(f"{what or ' '.join(argv[:2])} failed (status {proc.returncode}): "
                        + " | ".join(tail))
    return proc.stdout


def app_user(app: str) -> str:
    return paths.APP_USER_PREFIX + app


def ensure_app_user(app: str) -> tuple[int, int]:
    """The app's own system user and group. Nobody else is in the group: nginx reaches
    static files as "other" and the socket through its own group, so it cannot read
    any app's code, logs or environment. Returns (uid, gid)."""
    user = app_user(app)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        say(f"creating system user {user}")
        run(["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", str(paths.APPS / app), "--shell", "/usr/sbin/nologin", user],
            what=f"useradd {user}")
        entry = pwd.getpwnam(user)
    if paths.NGINX_USER in grp.getgrgid(entry.pw_gid).gr_mem:     # nodes set up before
        run(["gpasswd", "-d", paths.NGINX_USER, user],
            what=f"removing {paths.NGINX_USER} from {user}")
    return entry.pw_uid, entry.pw_gid


def app_ids(app: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(app_user(app))
    except KeyError:
        raise NodeError(f"app {app!r} has never been deployed on this node") from None
    return entry.pw_uid, entry.pw_gid


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


def write_private(path: Path, data: bytes, gid: int, mode: int = 0o640) -> None:
    """Write ``path`` atomically as ``root:gid`` with ``mode`` from the first byte.

    The temporary file is created with ``O_EXCL|O_NOFOLLOW``, so a planted
    link is never written through, and only then renamed into place.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def empty_dir(path: Path) -> None:
    """Remove everything inside ``path`` (not the directory itself)."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last lines of a log file ([] if it does not exist). The app owns its log
    directory, so a link planted there is not followed."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in data.splitlines() if ln.strip()][-lines:]
