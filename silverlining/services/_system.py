"""Node-side helpers the database services share: names, secrets, their server's lock.

Only the node (as root) calls these; commands, packages and waiting are the node's
base layer's (``silverlining.node.base``). Passwords travel in files, stdin or
pre-hashed verifiers, never in an argv: anything in an argv shows in ``ps``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import subprocess

from silverlining.node.base import node_lock, run

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


def server_lock(service: str):
    """One set-up of a server at a time: deploys of different apps (each under its
    own app lock) may install packages or edit a shared ACL file together."""
    return node_lock(f"service-{service}", 1800, f"the {service} server set-up")


def systemctl_start(unit: str) -> None:
    """``unit`` running, and started at boot. ``systemctl enable`` reads every unit
    file and reloads the manager even when the unit is enabled already (half a
    second of a new app's first deploy, on a node with a few dozen units), so it runs
    only for a unit not enabled yet; a ``start`` of a running unit does nothing."""
    enabled = subprocess.run(["systemctl", "is-enabled", "--quiet", unit],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run(["systemctl", "start", unit] if enabled.returncode == 0 else
        ["systemctl", "enable", "--now", "--quiet", unit], what=f"starting {unit}")
