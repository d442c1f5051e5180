"""App names, version names and app users: what every node module checks an app by.

Generic operations (commands, files, locks, progress) are the base layer's
(``silverlining.node.base``).
"""

from __future__ import annotations

import grp
import pwd
import re

from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node.base import run, say

APP_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
VERSION_RE = re.compile(r"^v([1-9][0-9]*)\Z")


def check_app(name: str) -> str:
    if not APP_RE.match(name):
        raise NodeError(f"bad app name {name!r}")
    return name


def version_number(version: str) -> int:
    m = VERSION_RE.match(version)
    if not m:
        raise NodeError(f"bad version {version!r}: expected vN")
    return int(m.group(1))


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
