"""Node-side helpers the database services share: packages, commands, names, secrets.

Only the node (as root) calls these. Passwords travel in files, stdin or
pre-hashed verifiers, never in an argv: anything in an argv shows in ``ps``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import subprocess
import time
from typing import Any

from silverlining.errors import SilverError
from silverlining.node._util import say

NAME_LIMIT = 63        # PostgreSQL identifiers (MariaDB allows 64 for databases, 80 for users)


def db_name(app: str) -> str:
    """The app's database/role name: ``sl_APP``, never a name the server uses itself.

    A long app name is cut and given a hash of the whole name, so two apps never
    share a database.
    """
    name = "sl_" + app.replace("-", "_")
    if name != "sl_" + app or len(name) > NAME_LIMIT:
        digest = hashlib.sha256(app.encode()).hexdigest()[:8]
        name = f"{name[:NAME_LIMIT - 9]}_{digest}"
    return name


def new_password() -> str:
    """A random password that needs no quoting in a URL or a config line."""
    return secrets.token_hex(24)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores, computed here so the server
    (and its logs) never see the plain password."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def mysql_native_hash(password: str) -> str:
    """The ``mysql_native_password`` hash, for ``IDENTIFIED BY PASSWORD '...'``."""
    inner = hashlib.sha1(password.encode()).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


def installed(packages: tuple[str, ...]) -> bool:
    """Whether dpkg has every package installed (one cheap dpkg-query)."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}\n", *packages],
                          capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    return len(lines) == len(packages) and all(ln.endswith("install ok installed")
                                               for ln in lines)


def apt_install(packages: tuple[str, ...]) -> None:
    """Install server packages from the OS archive (refreshing the index once on failure)."""
    if installed(packages):
        return
    say(f"installing {' '.join(packages)} (first use on this node)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
            "-o", "DPkg::Lock::Timeout=600", *packages]
    try:
        command(argv, env=env, what="apt-get install", timeout=1800)
    except SilverError:
        command(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=600"], env=env,
                what="apt-get update", timeout=600)
        command(argv, env=env, what="apt-get install", timeout=1800)


def command(argv: list[str], *, input: str | bytes | None = None, user: str | None = None,
            env: dict[str, str] | None = None, what: str | None = None,
            timeout: float = 600, stdout: Any = None, stdin: Any = None) -> str:
    """Run a command (as ``user`` if given); a failure is a ``SilverError`` with the
    end of its error output. ``stdout``/``stdin`` may be open files (dumps)."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user, group=user, extra_groups=[], cwd="/")
    text = not isinstance(input, bytes)
    try:
        proc = subprocess.run(argv, input=input, stdin=stdin if input is None else None,
                              stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=timeout,
                              text=text, **kwargs)
    except FileNotFoundError:
        raise SilverError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SilverError(f"{what or argv[0]} timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        tail = [ln for ln in err.splitlines() if ln.strip()][-3:]
        raise SilverError(f"{what or argv[0]} failed (status {proc.returncode}): "
                          + (" | ".join(tail) or "no message"))
    out = proc.stdout if stdout is None else ""
    return out if isinstance(out, str) else out.decode(errors="replace")


def server_lock(service: str):
    """One set-up of a server at a time: deploys of different apps (each under its
    own app lock) may install packages or edit a shared ACL file together."""
    from silverlining.node._state import flock
    return flock(f"service-{service}", 1800, f"the {service} server set-up")


def systemctl_start(unit: str) -> None:
    command(["systemctl", "enable", "--now", "--quiet", unit], what=f"starting {unit}")


def wait_until(check: Any, what: str, timeout: float = 60) -> None:
    """Poll ``check()`` until it is true; a server that never comes up is an error."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SilverError(f"{what} did not come up within {timeout:g}s")
        time.sleep(0.3)
