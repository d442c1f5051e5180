"""The one interface every service implements, in development and on a node.

A service turns ``service.NAME =`` in app.ini into something the app can use
and tells the app about it through ``CONFIG_*`` environment variables.

* ``dev_env`` (developer's machine, ``silver serve`` and ``bin/python``):
  nothing is installed; values come from the user config's ``[devel]`` and
  ``[devel:APP]`` sections (keys ``NAME.KEY``), with sensible defaults.
* ``env`` (node): the variables for a deployed app, computed from
  ``silverlining.node.paths`` (``DATA/APP/NAME`` for file-like services) or
  read from the credentials file ``install`` wrote.
* ``install`` / ``clear`` / ``backup`` / ``restore`` (node, as root): the
  node-side implementer fills these in for each service; the base class only
  documents the contract and refuses to pretend.

``app`` is always an ``AppConfig``; ``node_paths`` is the
``silverlining.node.paths`` module or any object with the same attributes
(tests pass one rooted in a temporary directory). Stdlib only.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from silverlining.errors import SilverError
from silverlining.node.base import write_atomic


class Service:
    """Base class: one instance per service module, exported as ``SERVICE``."""

    name: str = ""
    #: keys accepted in ``[devel]`` as ``NAME.KEY`` (anything else is an error)
    dev_keys: tuple[str, ...] = ()

    # --- development ----------------------------------------------------------

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        """``CONFIG_*`` for ``silver serve``. ``settings`` is ``[devel]`` overlaid
        with ``[devel:APP]`` (``APP_NAME`` already substituted); ``state_dir`` is
        the app's development data directory (``SILVER_HOME/devel/APP``), under
        which a service may keep files in ``state_dir/NAME``."""
        raise NotImplementedError(f"service {self.name}: dev_env")

    def setting(self, settings: dict[str, str], key: str, default: str = "") -> str:
        """``NAME.KEY`` from the devel settings, else ``default``."""
        return settings.get(f"{self.name}.{key}", default)

    # --- node -----------------------------------------------------------------

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        """``CONFIG_*`` for the deployed app on a node."""
        raise NotImplementedError(f"service {self.name}: env")

    def run_env(self, app: Any, node_paths: Any) -> dict[str, str]:
        """What ``silver run`` gets instead of ``env``'s values: a maintenance login
        that still connects when the app holds all its own connections. Empty: the
        same as ``env``."""
        return {}

    def install(self, app: Any, node_paths: Any) -> None:
        """Make the service ready for ``app`` on this node, idempotently: install
        the server package if needed, create the app's database/directory and
        its credentials (written with ``write_credentials``, mode 0640), so
        ``env`` can answer. Runs as root on every ``silver update``."""
        raise NotImplementedError(f"service {self.name}: install is implemented node-side")

    def clear(self, app: Any, node_paths: Any) -> None:
        """Drop all of the app's data for this service and re-create it empty
        (``silver update --clear``, ``silver clear``)."""
        raise NotImplementedError(f"service {self.name}: clear is implemented node-side")

    def backup(self, app: Any, node_paths: Any, dest_dir: Path) -> None:
        """Write a complete dump of the app's data into ``dest_dir`` (an empty
        directory the caller owns and later archives)."""
        raise NotImplementedError(f"service {self.name}: backup is implemented node-side")

    def restore(self, app: Any, node_paths: Any, src_dir: Path) -> None:
        """Replace the app's data with the dump ``backup`` wrote in ``src_dir``."""
        raise NotImplementedError(f"service {self.name}: restore is implemented node-side")

    # --- on a services node (docs/services-node.md) ----------------------------

    #: served from a services node to a location's members (``silver update --services-node``)
    hostable: bool = False
    #: the server a hostable service's data is on (postgis's is PostgreSQL's): the key of
    #: its values in services-host's answer and services-use's input
    family: str = ""
    #: on a member, a kept version's environment with ``env_marker`` has its variables
    #: starting with ``env_prefixes`` replaced when the service moves (``services-use``)
    env_marker: str = ""
    env_prefixes: tuple[str, ...] = ()

    def host(self, app: Any, node_paths: Any, passwords: dict[str, str], tls: Any) -> dict[str, str]:
        """On the services node: ``install`` with these passwords, reachable over the
        nodes' network with TLS (``tls``: the server's certificate and key). Returns what
        members are told besides the passwords (no secret)."""
        raise NotImplementedError(f"service {self.name}: not on a services node yet")

    def admit(self, peers: dict[str, list[str]],
              replicas: list[str]) -> set[tuple[str, int]]:
        """On the services node: only ``peers`` (app -> member addresses) get in, each to
        its own app's data, and ``replicas`` to replication (where the server has it);
        returns the (address, port) pairs the firewall opens."""
        raise NotImplementedError(f"service {self.name}: not on a services node yet")

    def disconnect_others(self, node_paths: Any, peers: dict[str, list[str]]) -> None:
        """On the services node, once the firewall admits ``peers`` alone: end the
        connections other addresses still hold. By default they are left to end by
        themselves (PostgreSQL's and MariaDB's: docs/services-node.md)."""

    @staticmethod
    def everyone(peers: dict[str, list[str]], replicas: list[str],
                 port: int) -> set[tuple[str, int]]:
        """``admit``'s pairs of a server on one port for all apps: every member and
        replica address to ``port``."""
        return {(a, port) for addresses in [*peers.values(), replicas] for a in addresses}

    def remote_node(self, app: Any, node_paths: Any) -> str | None:
        """On a member: the services node that holds this service's data for the app
        (None: it is on this node)."""
        path = self.credentials_path(app, node_paths)
        if not path.is_file():
            return None
        return parse_credentials(path.read_text(encoding="utf-8")).get("remote") or None

    # --- helpers shared by the implementations ---------------------------------

    def data_dir(self, app: Any, node_paths: Any) -> Path:
        """``DATA/APP/NAME``: this service's persistent directory for the app."""
        return Path(node_paths.DATA) / app.app_name / self.name

    def credentials_path(self, app: Any, node_paths: Any) -> Path:
        """Where ``install`` records what ``env`` reports (``DATA/APP/NAME.credentials``)."""
        return Path(node_paths.DATA) / app.app_name / f"{self.name}.credentials"

    def read_credentials(self, app: Any, node_paths: Any) -> dict[str, str]:
        path = self.credentials_path(app, node_paths)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SilverError(f"service {self.name} is not installed for {app.app_name} "
                              f"({path} missing)") from None
        return parse_credentials(text)

    def write_credentials(self, app: Any, node_paths: Any, values: dict[str, str]) -> Path:
        """Write ``key=value`` lines, mode 0640, owned by root with the app's group
        (``sl-APP``): the app reads its secrets, no other app does. Written
        atomically, never through a link (``write_atomic``).
        Without ``APP_USER_PREFIX`` in ``node_paths`` (tests): the caller's group."""
        data = format_credentials(values)
        path = self.credentials_path(app, node_paths)
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = getattr(node_paths, "APP_USER_PREFIX", None)
        gid = grp.getgrnam(prefix + app.app_name).gr_gid if prefix else os.getgid()
        write_atomic(path, data, mode=0o640, gid=gid)
        return path

    def run_credentials_path(self, app: Any, node_paths: Any) -> Path:
        """The maintenance login's credentials (``run_env``), next to the app's."""
        path = self.credentials_path(app, node_paths)
        return path.with_name(path.name.replace(".credentials", ".run-credentials"))

    def read_run_credentials(self, app: Any, node_paths: Any) -> dict[str, str]:
        return parse_credentials(self.run_credentials_path(app, node_paths).read_text())

    def write_run_credentials(self, app: Any, node_paths: Any, values: dict[str, str]) -> None:
        """Root's alone (0600): the app's running processes never see this login, so
        they cannot use up its connections too."""
        write_atomic(self.run_credentials_path(app, node_paths), format_credentials(values),
                     mode=0o600)


def parse_credentials(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def format_credentials(values: dict[str, str]) -> bytes:
    for key, value in values.items():
        if "\n" in key or "\n" in value or "=" in key:
            raise ValueError(f"bad credential {key!r}")
    return "".join(f"{k}={v}\n" for k, v in values.items()).encode()


def sqlalchemy_url(scheme: str, user: str, password: str, host: str, port: str,
                   dbname: str) -> str:
    """A database URL; empty host means the local socket, empty port the default."""
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    netloc = (auth + "@" if auth else "") + host + (f":{port}" if port else "")
    return f"{scheme}://{netloc}/{quote(dbname, safe='')}"
