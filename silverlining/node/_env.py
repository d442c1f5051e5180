"""Instance environment files: what an app sees in ``os.environ``.

Written in systemd's ``EnvironmentFile=`` syntax (so the unit reads it
directly) and read back by the node for update_fetch scripts and ``silver
run``. ``root:sl-APP 0640`` in a root-owned directory: the app can read it,
other apps cannot, and nobody but root can change it.
"""

from __future__ import annotations

import re
from pathlib import Path

from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node._util import VERSION_RE
from silverlining.node.base import write_atomic

_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*\Z")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_ESCAPE = re.compile(r'([\\"$`])')


def _quote(value: str) -> str:
    if _SAFE.match(value):
        return value
    return '"' + _ESCAPE.sub(r"\\\1", value) + '"'


def format_env(env: dict[str, str]) -> str:
    lines = []
    for key in sorted(env):
        value = str(env[key])
        if not _KEY.match(key):
            raise NodeError(f"bad environment variable name {key!r}")
        if "\n" in value or "\r" in value or "\0" in value:
            raise NodeError(f"environment variable {key} holds a newline or NUL")
        lines.append(f"{key}={_quote(value)}")
    return "\n".join(lines) + "\n"


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, raw = line.partition("=")
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        env[key.strip()] = raw
    return env


def write_env(path: Path, env: dict[str, str], gid: int) -> None:
    """Write atomically as ``root:APP-group 0640``: the app reads its environment but
    cannot change what systemd and root-run scripts later trust."""
    write_atomic(path, format_env(env), mode=0o640, gid=gid)


def read_env(path: Path) -> dict[str, str]:
    try:
        return parse_env(path.read_text())
    except FileNotFoundError:
        raise NodeError(f"{path} is missing: redeploy the app") from None


def repoint_versions(app: str, marker: str, prefixes: tuple[str, ...], env: dict[str, str],
                     gid: int) -> list[str]:
    """Every kept version's environment that has ``marker`` gets ``env`` in place of
    its variables starting with ``prefixes`` (a service moved: a rollback finds it
    too); returns those versions, whose running units still have the old values.
    Versions' files only: ``run.env`` (a detached run's maintenance logins) is root's."""
    changed = []
    for path in sorted((paths.ENV / app).glob("*.env")):
        if not VERSION_RE.match(path.stem):
            continue
        old = read_env(path)
        if marker not in old:
            continue
        kept = {k: v for k, v in old.items() if not k.startswith(prefixes)}
        if {**kept, **env} != old:
            write_env(path, {**kept, **env}, gid)
            changed.append(path.name[:-len(".env")])
    return changed
